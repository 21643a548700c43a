// The chat-analytics staff dashboard: a client of the service's own documented JSON API.
// No framework and no build step: DOM built with textContent only (no HTML from data), charts drawn
// by the vendored Chart.js, state in the URL's fragment so that a view can be shared.
"use strict";

(() => {
  const API = "/api/anonymous-chat-interactions/";
  const TOKEN_KEY = "chat-analytics.token";
  const ROLE_KEY = "chat-analytics.role";
  const REFRESH_KEY = "chat-analytics.refresh";
  const FILTERS = ["created_from", "created_to", "severity", "is_flagged", "has_feedback", "has_negative_feedback", "query"];
  // Conversation-level filters: they keep or drop whole conversations (conversations/ and kpi/ only).
  const CONVERSATION_FILTERS = ["max_severity", "is_reviewed"];
  const SEVERITIES = ["none", "low", "medium", "high", "critical"];
  const SEVERITY_SERIES = ["NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL"];
  const SEVERITY_COLORS = { NONE: "#9aa5b1", LOW: "#3b82f6", MEDIUM: "#f59e0b", HIGH: "#ea580c", CRITICAL: "#b91c1c" };
  const ACCENT = "#1f4e79";
  const PAGE_SIZE = 25;
  const numbers = new Intl.NumberFormat("en-US");

  // -- small helpers ------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const count = (n) => (n === null || n === undefined ? "—" : numbers.format(n));
  const percent = (r) => (r === null || r === undefined ? "—" : `${(r * 100).toFixed(1)}%`);
  const decimal = (x, digits) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
  // Every time the API sends is UTC, and "today" is the server's UTC date: shown as UTC throughout.
  const when = (iso) => (iso ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}` : "—");
  const short = (hash) => (hash && hash.length > 12 ? `${hash.slice(0, 10)}…` : hash || "");

  function severityBadge(severity) {
    const s = severity || "none";
    return h("span", { class: `badge sev-${s}`, text: s });
  }

  function setStatus(message, bad) {
    const el = document.getElementById("status");
    el.textContent = message;
    el.classList.toggle("bad", Boolean(bad));
  }

  // -- the token and the API ----------------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const role = () => sessionStorage.getItem(ROLE_KEY) || "";

  class ApiError extends Error {
    constructor(status, body) {
      const detail = body && typeof body === "object" ? (body.detail || JSON.stringify(body)) : "";
      super(`The server answered ${status}${detail ? `: ${detail}` : ""}`);
      this.status = status;
    }
  }

  function url(path, params) {
    const query = params ? params.toString() : "";
    return query ? `${path}?${query}` : path;
  }

  // Behind a load balancer, replicas fold the topic at their own pace: every call asks for at least
  // the read-model position of the last answer (docs/scaling.md), so the screen never goes back in time.
  let lastPosition = null;

  async function call(path, params, accept) {
    const headers = { Authorization: `Token ${token()}`, Accept: accept || "application/json" };
    if (lastPosition) headers["X-Min-Read-Model-Position"] = lastPosition;
    const response = await fetch(url(path, params), { headers, cache: "no-store" });
    const position = response.headers.get("X-Read-Model-Position");
    if (response.ok && position && path.startsWith("/api/anonymous-chat-")) lastPosition = position;
    if (response.status === 401) {
      signOut("The server no longer accepts this token (401): sign in again.");
      throw new ApiError(401, null);
    }
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    return response;
  }

  async function getJson(path, params) {
    const response = await call(path, params);
    return { data: await response.json(), headers: response.headers };
  }

  function download(blob, name) {
    const href = URL.createObjectURL(blob);
    const a = h("a", { href, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60000);
  }

  // Every matching row, not just the page on screen: the API streams CSV for the same filters.
  async function exportCsv(path, params, name) {
    const query = new URLSearchParams(params);
    query.delete("page");
    query.delete("page_size");
    query.set("format", "csv");
    setStatus("Exporting…");
    try {
      const response = await call(path, query, "text/csv");
      const rows = response.headers.get("X-Result-Count");
      download(await response.blob(), name);
      setStatus(`Exported ${count(Number(rows))} rows to ${name}.`);
    } catch (error) {
      setStatus(`Export failed: ${error.message}`, true);
    }
  }

  function copyButton(value) {
    return h("button", {
      type: "button",
      title: "Copy the full visitor hash",
      "aria-label": `Copy visitor hash ${value}`,
      text: "copy",
      onclick: async (event) => {
        event.stopPropagation();
        try {
          await navigator.clipboard.writeText(value);
          setStatus("Visitor hash copied.");
        } catch {
          setStatus(`Copy here: ${value}`);
        }
      },
    });
  }

  function visitorCell(slug, link) {
    if (!slug) return h("span", { class: "muted", text: "(none)" });
    const label = h("code", { title: slug, "data-full": slug, text: short(slug) });
    return h("span", { class: "hash" }, link ? h("a", { href: hrefFor("visitor", slug) }, label) : label, copyButton(slug));
  }

  // -- routes: #/<page>[/<argument>]?<query> --------------------------------------------------------

  function parseRoute() {
    const raw = location.hash.replace(/^#/, "") || "/overview";
    const cut = raw.indexOf("?");
    const path = cut < 0 ? raw : raw.slice(0, cut);
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { page: parts[0] || "overview", arg: parts[1] ?? null, params: new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1)) };
  }

  function hrefFor(page, arg, params) {
    const path = arg === null || arg === undefined ? `#/${page}` : `#/${page}/${encodeURIComponent(arg)}`;
    const query = params ? params.toString() : "";
    return query ? `${path}?${query}` : path;
  }

  function filtersOf(params, conversationLevel) {
    const out = new URLSearchParams();
    for (const name of conversationLevel ? [...FILTERS, ...CONVERSATION_FILTERS] : FILTERS) if (params.get(name)) out.set(name, params.get(name));
    return out;
  }

  // -- the filter bar --------------------------------------------------------------------------------

  function choice(name, label, options, value) {
    return h(
      "label",
      {},
      label,
      h("select", { name }, options.map(([v, text]) => h("option", { value: v, selected: v === (value || "") }, text))),
    );
  }

  const YES_NO = [["", "any"], ["true", "yes"], ["false", "no"]];

  function filterBar(route, options) {
    const p = route.params;
    const form = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filters" },
      h("label", {}, "From (UTC)", h("input", { type: "date", name: "created_from", value: p.get("created_from") || "" })),
      h("label", {}, "To (UTC)", h("input", { type: "date", name: "created_to", value: p.get("created_to") || "" })),
      h("label", {}, "Search", h("input", { type: "search", name: "query", value: p.get("query") || "", placeholder: "words in questions or answers" })),
      choice("severity", "Severity", [["", "any"], ...SEVERITIES.map((s) => [s, s])], p.get("severity")),
      options.flagged === false ? null : choice("is_flagged", "Flagged", YES_NO, p.get("is_flagged")),
      choice("has_feedback", "Has feedback", YES_NO, p.get("has_feedback")),
      choice("has_negative_feedback", "Negative feedback", YES_NO, p.get("has_negative_feedback")),
      options.conversations ? choice("max_severity", "Conversation max severity", [["", "any"], ...SEVERITIES.map((s) => [s, s])], p.get("max_severity")) : null,
      options.conversations ? choice("is_reviewed", "Reviewed", YES_NO, p.get("is_reviewed")) : null,
      options.window
        ? h("label", {}, "Days in charts", h("input", { type: "number", name: "window_days", min: 1, max: 365, value: p.get("window_days") || "30" }))
        : null,
      h(
        "div",
        { class: "buttons" },
        h("button", { type: "submit", class: "primary", text: "Apply" }),
        h("button", { type: "button", text: "Reset", onclick: () => (location.hash = hrefFor(route.page, route.arg)) }),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const next = new URLSearchParams(route.params);
      next.delete("page");
      for (const [name, value] of new FormData(form)) {
        if (value) next.set(name, value);
        else next.delete(name);
      }
      location.hash = hrefFor(route.page, route.arg, next);
    });
    return form;
  }

  // -- charts ----------------------------------------------------------------------------------------

  function chartCanvas(label, small) {
    const canvas = h("canvas", { role: "img", "aria-label": label });
    return { canvas, box: h("div", { class: small ? "chart small" : "chart" }, canvas) };
  }

  function makeChart(canvas, config) {
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options);
    return new window.Chart(canvas, config);
  }

  // -- views: each builds its page once, then `refresh()` fills it in place (no flashing to zero) ------

  function overview(route) {
    const params = route.params;
    const tiles = [
      ["interactions_total", "Turns", count],
      ["sessions_total", "Sessions", count],
      ["unique_users", "Visitors", count],
      ["satisfaction_rate", "Satisfaction", percent, (k) => `${count(k.feedback_positive)} up · ${count(k.feedback_negative)} down`],
      ["click_through_rate", "Click-through", percent, (k) => `${count(k.clicks_total)} clicks`],
      ["flagged_total", "Flagged", count],
      ["tokens_total", "Tokens", count, (k) => `${count(k.input_tokens_total)} in · ${count(k.output_tokens_total)} out`],
      ["review_coverage", "Review coverage", percent, (k) => `${count(k.reviewed_total)} reviewed`],
      ["avg_llm_resolution_score", "Avg resolution", (x) => (x === null ? "—" : `${decimal(x, 2)} / 5`)],
      ["hallucination_rate", "Hallucination rate", percent],
      ["clarification_rate", "Clarification rate", percent, (k) => `${count(k.clarification_requests_total)} requests`],
    ].map(([key, label, format, detail]) => {
      const value = h("span", { class: "value", text: "…" });
      const more = h("span", { class: "detail" });
      return { key, format, detail, value, more, el: h("li", { class: "tile", "data-kpi": key }, h("span", { class: "label", text: label }), value, more) };
    });
    const volume = chartCanvas("Turns per day");
    const severity = chartCanvas("Turns per day by severity");
    const intents = chartCanvas("Reviewed turns by intent");
    const gauge = chartCanvas("Today's token budget", true);
    const gaugeText = h("p", { class: "gauge-text", id: "budget-text", text: "…" });
    const windowDays = Number(params.get("window_days")) || 30;
    const view = h(
      "section",
      { "aria-labelledby": "page-title" },
      h("h1", { id: "page-title", text: "Overview" }),
      filterBar(route, { window: true, conversations: true }),
      h("ul", { class: "tiles", "aria-label": "Key figures" }, tiles.map((t) => t.el)),
      h(
        "div",
        { class: "charts quad" },
        h("div", { class: "card", id: "budget" }, h("h2", { text: "Today's token budget" }), gauge.box, gaugeText, h("p", { class: "muted small", text: "Global to the service: the filters do not apply to it." })),
        h("div", { class: "card", id: "volume" }, h("h2", { id: "volume-title", text: `Turns per day, last ${windowDays} days` }), volume.box),
        h("div", { class: "card", id: "severity" }, h("h2", { text: "Severity by day, last 14 days" }), severity.box, h("p", { class: "muted small", text: "Click a legend entry to show or hide it; \"none\" (unflagged turns) starts hidden." })),
        h("div", { class: "card", id: "intents" }, h("h2", { text: "Intents (reviewed turns)" }), intents.box),
      ),
    );
    const charts = {};
    const kpiParams = filtersOf(params, true);
    if (params.get("window_days")) kpiParams.set("window_days", params.get("window_days"));

    async function refresh() {
      const [{ data: kpi }, { data: budget }] = await Promise.all([getJson(`${API}kpi/`, kpiParams), getJson(`${API}budget/`)]);
      kpi.tokens_total = kpi.input_tokens_total + kpi.output_tokens_total;
      for (const t of tiles) {
        const raw = kpi[t.key];
        t.value.textContent = t.format(raw);
        t.el.dataset.value = JSON.stringify(raw);
        t.more.textContent = t.detail ? t.detail(kpi) : "";
      }
      const days = kpi.daily_volume.map((d) => d.date.slice(5));
      const perDay = kpi.daily_volume.map((d) => d.count);
      if (!charts.volume) {
        charts.volume = makeChart(volume.canvas, {
          type: "bar",
          data: { labels: days, datasets: [{ label: "Turns", data: perDay, backgroundColor: ACCENT }] },
          options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
        });
      } else {
        charts.volume.data.labels = days;
        charts.volume.data.datasets[0].data = perDay;
        charts.volume.update("none");
      }
      const peak = kpi.daily_volume.reduce((a, b) => (b.count > a.count ? b : a), { count: -1, date: "" });
      volume.canvas.setAttribute("aria-label", `Turns per day: ${count(perDay.reduce((a, b) => a + b, 0))} in ${perDay.length} days, most on ${peak.date} (${count(peak.count)})`);
      const sevLabels = kpi.severity_by_day.labels.map((d) => d.slice(5));
      // Unflagged turns ("none") would dwarf the rest: hidden until its legend entry is clicked.
      const sevSets = SEVERITY_SERIES.map((s) => ({ label: s.toLowerCase(), data: kpi.severity_by_day.series[s] || [], backgroundColor: SEVERITY_COLORS[s], stack: "severity", hidden: s === "NONE" }));
      if (!charts.severity) {
        charts.severity = makeChart(severity.canvas, {
          type: "bar",
          data: { labels: sevLabels, datasets: sevSets },
          options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
        });
      } else {
        charts.severity.data.labels = sevLabels;
        sevSets.forEach((set, i) => (charts.severity.data.datasets[i].data = set.data));
        charts.severity.update("none");
      }
      const intentPairs = Object.entries(kpi.llm_intent_distribution || {}).sort((a, b) => b[1] - a[1]);
      const intentLabels = intentPairs.map(([k]) => k);
      const intentCounts = intentPairs.map(([, v]) => v);
      const flaggedBySeverity = SEVERITY_SERIES.slice(1).map((s) => `${s.toLowerCase()} ${count((kpi.severity_by_day.series[s] || []).reduce((a, b) => a + b, 0))}`);
      severity.canvas.setAttribute("aria-label", `Turns by severity over the last 14 days: ${flaggedBySeverity.join(", ")}`);
      if (!charts.intents) {
        charts.intents = makeChart(intents.canvas, {
          type: "bar",
          data: { labels: intentLabels, datasets: [{ label: "Reviewed turns", data: intentCounts, backgroundColor: "#0e7490" }] },
          options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
        });
      } else {
        charts.intents.data.labels = intentLabels;
        charts.intents.data.datasets[0].data = intentCounts;
        charts.intents.update("none");
      }
      intents.canvas.setAttribute("aria-label", `Reviewed turns by intent: ${intentPairs.map(([k, v]) => `${k} ${v}`).join(", ") || "none"}`);

      const limit = budget.tokens_limit;
      const used = budget.tokens_today;
      const gaugeData = limit > 0 ? [Math.min(used, limit), Math.max(limit - used, 0)] : [used, 0];
      if (!charts.gauge) {
        charts.gauge = makeChart(gauge.canvas, {
          type: "doughnut",
          data: { labels: ["used", "left"], datasets: [{ data: gaugeData, backgroundColor: [used > limit && limit > 0 ? "#b91c1c" : ACCENT, "#e5e7eb"], borderWidth: 0 }] },
          options: { rotation: -90, circumference: 180, cutout: "68%", plugins: { legend: { display: false } } },
        });
      } else {
        charts.gauge.data.datasets[0].data = gaugeData;
        charts.gauge.update("none");
      }
      const resets = new Date(budget.resets_at);
      const minutes = Math.max(0, Math.round((resets - Date.now()) / 60000));
      const share = limit > 0 ? ` (${((used / limit) * 100).toFixed(1)}%)` : "";
      gaugeText.textContent =
        `${count(used)} of ${limit > 0 ? count(limit) : "unlimited"} tokens${share} · ${count(budget.requests_today)} requests · ` +
        `resets ${budget.resets_at.slice(0, 16).replace("T", " ")} UTC (in ${Math.floor(minutes / 60)} h ${minutes % 60} min)`;
      gauge.canvas.setAttribute("aria-label", `Today's token budget: ${gaugeText.textContent}`);
    }

    return { el: view, refresh, destroy: () => Object.values(charts).forEach((c) => c.destroy()) };
  }

  // A paged, sorted, filtered table over one list endpoint, with its CSV export.
  function tableView(route, spec) {
    const params = route.params;
    const query = filtersOf(params, spec.conversationFilters);
    for (const [name, value] of Object.entries(spec.fixed || {})) query.set(name, value);
    const order = params.get("o") || spec.defaultOrder || "";
    if (order) query.set("o", order);
    const page = Math.max(1, Number(params.get("page")) || 1);
    query.set("page", String(page));
    query.set("page_size", String(PAGE_SIZE));

    const headRow = h(
      "tr",
      {},
      spec.columns.map((c) => {
        const th = h("th", { scope: "col", class: c.num ? "num" : null });
        if (!c.sort) {
          th.textContent = c.label;
          return th;
        }
        const current = order.replace(/^-/, "") === c.sort ? (order.startsWith("-") ? "descending" : "ascending") : null;
        if (current) th.setAttribute("aria-sort", current);
        const next = new URLSearchParams(params);
        next.delete("page");
        next.set("o", current === "descending" ? c.sort : `-${c.sort}`);
        th.append(
          h("button", {
            type: "button",
            text: `${c.label}${current === "ascending" ? " ▲" : current === "descending" ? " ▼" : ""}`,
            "aria-label": `Sort by ${c.label}`,
            onclick: () => (location.hash = hrefFor(route.page, route.arg, next)),
          }),
        );
        return th;
      }),
    );
    const body = h("tbody", {}, h("tr", {}, h("td", { colspan: spec.columns.length, class: "muted", text: "Loading…" })));
    const caption = h("caption", { text: spec.caption });
    const summary = h("span", { class: "grow muted", id: "result-count" });
    const prev = h("button", { type: "button", text: "← Previous", disabled: page <= 1 });
    const next = h("button", { type: "button", text: "Next →", disabled: true });
    const pageOf = h("span", { class: "muted" });
    function goPage(n) {
      const p = new URLSearchParams(params);
      p.set("page", String(n));
      location.hash = hrefFor(route.page, route.arg, p);
    }
    prev.addEventListener("click", () => goPage(page - 1));
    next.addEventListener("click", () => goPage(page + 1));

    const view = h(
      "section",
      { "aria-labelledby": "page-title" },
      spec.back ? h("p", {}, spec.back) : null,
      h("h1", { id: "page-title", text: spec.title }),
      spec.intro ? h("p", { class: "muted", text: spec.intro }) : null,
      spec.before || null,
      filterBar(route, { flagged: !("is_flagged" in (spec.fixed || {})), conversations: spec.conversationFilters }),
      h(
        "div",
        { class: "toolbar" },
        summary,
        h("button", { type: "button", text: "Export CSV", id: "export", onclick: () => exportCsv(spec.endpoint, query, spec.csvName) }),
      ),
      h("div", { class: "scroll" }, h("table", {}, caption, h("thead", {}, headRow), body)),
      h("div", { class: "pager" }, prev, pageOf, next),
    );

    async function refresh() {
      let result;
      try {
        result = await getJson(spec.endpoint, query);
      } catch (error) {
        if (error.status === 404 && page > 1) return goPage(1); // the page no longer exists: filters changed
        throw error;
      }
      const total = Number(result.headers.get("X-Result-Count"));
      const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
      summary.textContent = `${count(total)} ${spec.noun}`;
      summary.dataset.count = String(total);
      pageOf.textContent = `Page ${page} of ${pages}`;
      next.disabled = page >= pages;
      const rows = result.data.map((row) => {
        const target = spec.link ? spec.link(row) : null;
        const tr = h("tr", { class: target ? "clickable" : null }, spec.columns.map((c) => h("td", { class: [c.num ? "num" : "", c.text ? "text" : "", c.nowrap ? "nowrap" : ""].join(" ").trim() || null }, c.cell(row))));
        if (target) tr.addEventListener("click", (event) => {
          if (!event.target.closest("a, button")) location.hash = target;
        });
        return tr;
      });
      if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: spec.columns.length, class: "muted", text: "Nothing matches these filters." })));
      body.replaceChildren(...rows);
    }
    return { el: view, refresh };
  }

  function feedbackCell(row) {
    const score = row.feedback && row.feedback.score;
    if (score === 1) return h("span", { class: "good", title: "thumbs up", text: "up" });
    if (score === -1) return h("span", { class: "bad", title: "thumbs down", text: `down${row.feedback.category ? `: ${row.feedback.category}` : ""}` });
    return h("span", { class: "muted", text: "—" });
  }

  const sessionLink = (row) => h("a", { href: hrefFor("conversation", row.session_id), class: "mono", title: row.session_id, text: short(row.session_id) });

  // The columns of a turn, shared by every table of turns.
  const TURN = {
    time: { label: "Time (UTC)", sort: "created", nowrap: true, cell: (r) => h("a", { href: hrefFor("conversation", r.session_id), text: when(r.created) }) },
    visitor: { label: "Visitor", cell: (r) => visitorCell(r.user_slug, true) },
    session: { label: "Session", cell: sessionLink },
    question: { label: "Question", text: true, cell: (r) => h("span", { title: r.user_input, text: r.user_input }) },
    severity: { label: "Severity", cell: (r) => severityBadge(r.severity) },
    flagged: { label: "Flagged", cell: (r) => (r.is_flagged ? h("span", { class: "bad", text: "yes" }) : "no") },
    feedback: { label: "Feedback", cell: feedbackCell },
    offerings: { label: "Offerings", sort: "result_count", num: true, cell: (r) => count(r.result_count) },
  };

  const yesNo = (value) => (value ? "yes" : "no");

  function conversations(route) {
    return tableView(route, {
      title: "Conversations",
      intro: "One row per session, built from its turns that pass the filters; open one for its transcript.",
      caption: "Conversations matching the filters",
      noun: "conversations",
      endpoint: `${API}conversations/`,
      defaultOrder: "-last_active",
      csvName: "conversations.csv",
      conversationFilters: true,
      link: (row) => hrefFor("conversation", row.session_id),
      columns: [
        { label: "Last active (UTC)", sort: "last_active", nowrap: true, cell: (r) => h("a", { href: hrefFor("conversation", r.session_id), text: when(r.last_active) }) },
        TURN.visitor,
        TURN.session,
        { label: "Turns", sort: "message_count", num: true, cell: (r) => count(r.message_count) },
        { label: "Max severity", sort: "max_severity_rank", cell: (r) => severityBadge(r.max_severity) },
        TURN.flagged,
        { label: "Feedback", cell: (r) => yesNo(r.has_feedback) },
        { label: "Reviewed", cell: (r) => yesNo(r.is_reviewed) },
        { label: "Offerings (clicked)", num: true, cell: (r) => `${count(r.offerings_shown)} (${count(r.offerings_clicked)})` },
        { label: "Tokens", sort: "total_tokens", num: true, cell: (r) => count(r.total_tokens) },
        { label: "Started (UTC)", sort: "started", nowrap: true, cell: (r) => when(r.started) },
      ],
    });
  }

  function turns(route) {
    return tableView(route, {
      title: "Turns",
      intro: "Every turn, newest first; open one to read its whole conversation.",
      caption: "Turns matching the filters",
      noun: "turns",
      endpoint: API,
      defaultOrder: "-created",
      csvName: "turns.csv",
      link: (row) => hrefFor("conversation", row.session_id),
      columns: [
        TURN.time,
        TURN.visitor,
        TURN.session,
        TURN.question,
        TURN.severity,
        TURN.flagged,
        TURN.feedback,
        TURN.offerings,
      ],
    });
  }

  function flagged(route) {
    return tableView(route, {
      title: "Flagged queue",
      intro: "Turns the injection and PII guard flagged, newest first.",
      caption: "Flagged turns",
      noun: "flagged turns",
      endpoint: API,
      fixed: { is_flagged: "true" },
      defaultOrder: "-created",
      csvName: "flagged.csv",
      link: (row) => hrefFor("conversation", row.session_id),
      columns: [
        TURN.time,
        TURN.severity,
        { label: "Categories", cell: (r) => [...r.injection_categories, ...r.pii_categories].join(", ") || "—" },
        { label: "Action", cell: (r) => r.action_taken || "—" },
        TURN.question,
        TURN.visitor,
        TURN.session,
      ],
    });
  }

  function visitors(route) {
    return tableView(route, {
      title: "Visitors",
      intro: "One row per pseudonymous visitor, most turns first.",
      caption: "Visitors matching the filters",
      noun: "visitors",
      endpoint: `${API}by-user/`,
      csvName: "visitors.csv",
      link: (row) => hrefFor("visitor", row.user_slug),
      columns: [
        TURN.visitor,
        { label: "Last turn (UTC)", cell: (r) => when(r.last_seen) },
        { label: "Turns", num: true, cell: (r) => count(r.total_interactions) },
        { label: "Sessions", num: true, cell: (r) => count(r.session_count) },
        { label: "Up", num: true, cell: (r) => count(r.positive_feedback) },
        { label: "Down", num: true, cell: (r) => count(r.negative_feedback) },
        { label: "Unrated", num: true, cell: (r) => count(r.no_feedback) },
        { label: "Blocked or redacted", num: true, cell: (r) => count(r.injection_strikes) },
      ],
    });
  }

  // -- a conversation, turn by turn --------------------------------------------------------------

  const URL_IN_TEXT = /https?:\/\/[^\s<>"')\]]+/g;

  function textWithLinks(text) {
    const out = [];
    let last = 0;
    for (const match of text.matchAll(URL_IN_TEXT)) {
      out.push(text.slice(last, match.index));
      out.push(h("a", { href: match[0], rel: "noopener noreferrer", target: "_blank", text: match[0] }));
      last = match.index + match[0].length;
    }
    out.push(text.slice(last));
    return out;
  }

  function safeLink(href, label) {
    return /^(https?:\/\/|\/)/.test(href || "") ? h("a", { href, rel: "noopener noreferrer", target: "_blank", text: label || href }) : h("span", { text: label || href || "" });
  }

  // The assistant's blocks, readably: text and markdown as text (never as HTML), links, offerings,
  // questions back to the visitor; anything else as its JSON.
  function block(b) {
    if (!b || typeof b !== "object") return h("p", { class: "said", text: String(b) });
    const text = typeof b.text === "string" ? b.text : typeof b.content === "string" ? b.content : null;
    if ((b.type === "text" || b.key === "markdown" || b.type === "markdown") && text !== null) return h("p", { class: "said" }, textWithLinks(text));
    if (b.type === "offerings" || Array.isArray(b.offering_uuids)) {
      return h("div", {}, h("p", { class: "who", text: "Offerings suggested" }), h("ul", {}, (b.offering_uuids || []).map((u) => h("li", { class: "mono", text: u }))));
    }
    if (b.type === "ask_user" || b.key === "ask_user_form") {
      return h("div", {}, h("p", { class: "said", text: `Asks: ${b.question || text || ""}` }), Array.isArray(b.options) ? h("ul", {}, b.options.map((o) => h("li", { text: typeof o === "string" ? o : JSON.stringify(o) }))) : null);
    }
    if (b.type === "link" || b.url || b.href || b.path) return h("p", {}, "Link: ", safeLink(b.url || b.href || b.path, b.label || b.title || b.text));
    if (b.key === "code" && text !== null) return h("pre", { class: "said mono", text });
    if (text !== null) return h("p", { class: "said" }, textWithLinks(text));
    return h("pre", { class: "said mono", text: JSON.stringify(b, null, 2) });
  }

  function facts(pairs) {
    return h("dl", {}, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
  }

  function turnArticle(row, index) {
    const fb = row.feedback;
    const categories = [...row.injection_categories, ...row.pii_categories];
    const human = fb && fb.score !== null
      ? facts([
          ["Score", fb.score === 1 ? "up (+1)" : "down (-1)"],
          ["Category", fb.category],
          ["Comment", fb.comment],
          ["Submitted", fb.submitted_at ? `${when(fb.submitted_at)} UTC` : null],
        ])
      : h("p", { class: "muted", text: "No feedback from the visitor." });
    const review = fb && fb.llm_reviewed_at
      ? facts([
          ["Resolution", fb.llm_resolution_score === null ? null : `${fb.llm_resolution_score} / 5`],
          ["Intent", fb.llm_intent_category],
          ["Hallucination", fb.llm_hallucination_detected ? `yes${fb.llm_hallucination_details ? `: ${fb.llm_hallucination_details}` : ""}` : "no"],
          ["Summary", fb.llm_summary],
          ["Judge", fb.llm_judge_model],
          ["Reviewed", `${when(fb.llm_reviewed_at)} UTC`],
        ])
      : h("p", { class: "muted", text: "Not reviewed by the judge." });
    return h(
      "article",
      { class: "turn", "aria-label": `Turn ${index + 1}`, "data-uuid": row.uuid },
      h(
        "header",
        {},
        h("strong", { text: `Turn ${index + 1}` }),
        h("span", { text: `${when(row.created)} UTC` }),
        severityBadge(row.severity),
        row.is_flagged ? h("span", { class: "badge sev-high", text: "flagged" }) : null,
        categories.length ? h("span", { text: `categories: ${categories.join(", ")}` }) : null,
        row.action_taken ? h("span", { text: `action: ${row.action_taken}` }) : null,
        row.click_count ? h("span", { text: `${row.click_count} clicks` }) : null,
        h("span", { text: `${count(row.input_tokens)} / ${count(row.output_tokens)} tokens` }),
      ),
      h("p", { class: "who", text: "Visitor" }),
      h("p", { class: "said user", text: row.user_input }),
      h("p", { class: "who", text: "Assistant" }),
      row.assistant_blocks.length ? row.assistant_blocks.map(block) : h("p", { class: "muted", text: "(no answer)" }),
      row.warning ? h("p", { class: "bad", text: `Warning shown: ${row.warning}` }) : null,
      h("p", { class: "who", text: "Human feedback" }),
      human,
      h("div", { class: "review" }, h("p", { class: "who", text: "Judge's review" }), review),
    );
  }

  function conversation(route) {
    const sessionId = route.arg || "";
    const path = `${API}by-session/${encodeURIComponent(sessionId)}/`;
    const head = h("dl", { class: "facts" });
    const turns = h("div", { id: "turns" }, h("p", { class: "muted", text: "Loading…" }));
    const view = h(
      "section",
      { "aria-labelledby": "page-title" },
      h("p", {}, h("a", { href: "#/conversations", text: "← Conversations" })),
      h("h1", { id: "page-title", text: "Conversation" }),
      h("div", { class: "card" }, head, h("p", {}, h("button", { type: "button", text: "Export CSV", id: "export", onclick: () => exportCsv(path, new URLSearchParams(), "conversation.csv") }))),
      turns,
    );
    async function refresh() {
      const { data } = await getJson(path);
      const slug = data.length ? data[0].user_slug : "";
      head.replaceChildren(
        h("dt", { text: "Session" }), h("dd", { class: "mono", text: sessionId }),
        h("dt", { text: "Visitor" }), h("dd", {}, visitorCell(slug, true)),
        h("dt", { text: "Turns" }), h("dd", { text: count(data.length) }),
        h("dt", { text: "Started" }), h("dd", { text: data.length ? `${when(data[0].created)} UTC` : "—" }),
        h("dt", { text: "Last turn" }), h("dd", { text: data.length ? `${when(data[data.length - 1].created)} UTC` : "—" }),
      );
      turns.replaceChildren(...(data.length ? data.map(turnArticle) : [h("p", { class: "muted", text: "No turns in this session." })]));
    }
    return { el: view, refresh };
  }

  function visitor(route) {
    const slug = route.arg || "";
    const path = `${API}by-user/${encodeURIComponent(slug)}/`;
    const head = h("dl", { class: "facts" });
    const view = tableView(route, {
      title: "Visitor",
      back: h("a", { href: "#/visitors", text: "← Visitors" }),
      before: h("div", { class: "card", id: "visitor-facts" }, head),
      caption: "This visitor's turns across sessions",
      noun: "turns",
      endpoint: path,
      defaultOrder: "-created",
      csvName: "visitor.csv",
      link: (row) => hrefFor("conversation", row.session_id),
      columns: [
        TURN.time,
        TURN.session,
        TURN.question,
        TURN.severity,
        TURN.flagged,
        TURN.feedback,
        TURN.offerings,
      ],
    });
    const refreshTable = view.refresh;
    view.refresh = async () => {
      const [{ data: rows }] = await Promise.all([getJson(`${API}by-user/`, new URLSearchParams({ user_slug: slug })), refreshTable()]);
      const row = rows[0] || {};
      head.replaceChildren(
        h("dt", { text: "Visitor hash" }), h("dd", {}, h("code", { text: slug }), " ", copyButton(slug)),
        h("dt", { text: "Turns" }), h("dd", { text: count(row.total_interactions) }),
        h("dt", { text: "Sessions" }), h("dd", { text: count(row.session_count) }),
        h("dt", { text: "Feedback" }), h("dd", { text: `${count(row.positive_feedback)} up · ${count(row.negative_feedback)} down · ${count(row.no_feedback)} unrated` }),
        h("dt", { text: "Blocked or redacted" }), h("dd", { text: count(row.injection_strikes) }),
        h("dt", { text: "Last turn" }), h("dd", { text: row.last_seen ? `${when(row.last_seen)} UTC` : "—" }),
      );
    };
    return view;
  }

  // -- operations (staff only) ------------------------------------------------------------------------

  // How long the file has lacked records the projector knew of (`lag_s` of /readyz and status).
  const behindFor = (seconds) => (seconds === null || seconds === undefined ? "—" : seconds > 0 ? `${decimal(seconds, 1)} s` : "0 s (holds every record known)");

  function operations() {
    const ready = h("dl", { class: "facts" });
    const lag = h("tbody");
    const dead = h("tbody");
    const rebuild = h("dl", { class: "facts" });
    const file = h("dl", { class: "facts" });
    const view = h(
      "section",
      { "aria-labelledby": "page-title" },
      h("h1", { id: "page-title", text: "Operations" }),
      h(
        "div",
        { class: "charts" },
        h("div", { class: "card", id: "freshness" }, h("h2", { text: "Projector and freshness" }), ready),
        h("div", { class: "card", id: "rebuild" }, h("h2", { text: "Last rebuild" }), rebuild),
        h("div", { class: "card", id: "file" }, h("h2", { text: "Read-model file" }), file),
      ),
      h(
        "div",
        { class: "card" },
        h("h2", { text: "Lag per partition" }),
        h("div", { class: "scroll" }, h("table", { id: "lag" }, h("caption", { text: "Records between the topic's end and what the file has folded" }), h("thead", {}, h("tr", {}, ["Partition", "End offset", "Stored offset", "Lag"].map((t, i) => h("th", { scope: "col", class: i ? "num" : null, text: t })))), lag)),
      ),
      h(
        "div",
        { class: "card" },
        h("h2", { text: "Dead letters" }),
        h("div", { class: "scroll" }, h("table", { id: "dead-letters" }, h("caption", { text: "Events set aside, by reason" }), h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Reason" }), h("th", { scope: "col", class: "num", text: "Events" }), h("th", { scope: "col", text: "Export" }))), dead)),
      ),
    );

    async function exportDeadLetters(reason) {
      try {
        const { data } = await getJson("/api/admin/dead-letters/", new URLSearchParams({ reason, limit: "100000" }));
        download(new Blob(data.map((d) => `${JSON.stringify(d)}\n`), { type: "application/x-ndjson" }), `dead-letters-${reason}.jsonl`);
        setStatus(`Exported ${count(data.length)} dead letters (${reason}).`);
      } catch (error) {
        setStatus(`Export failed: ${error.message}`, true);
      }
    }

    async function refresh() {
      const [{ data: status }, { data: progress }] = await Promise.all([getJson("/api/admin/status/"), getJson("/api/admin/rebuild/")]);
      const live = status.live || {};
      const last = live.last_batch_at;
      const age = last ? Math.max(0, Math.round((Date.now() - new Date(last)) / 1000)) : null;
      ready.replaceChildren(
        h("dt", { text: "Caught up" }), h("dd", { class: live.caught_up ? "good" : "bad", text: live.caught_up ? "yes" : "no" }),
        h("dt", { text: "Last batch folded" }), h("dd", { id: "last-batch", text: last ? `${when(last)} UTC (${age} s ago)` : "none yet" }),
        h("dt", { text: "Lag total" }), h("dd", { text: count(status.lag_total) }),
        h("dt", { text: "Behind for" }), h("dd", { id: "lag-seconds", class: live.lag_s > 0 ? "bad" : null, text: behindFor(live.lag_s) }),
        h("dt", { text: "Waiting events" }), h("dd", { text: count(status.pending_events) }),
        h("dt", { text: "Error" }), h("dd", { class: live.error ? "bad" : null, text: live.error || "none" }),
      );
      lag.replaceChildren(...status.partitions.map((p) => h("tr", {}, h("td", { text: p.partition }), h("td", { class: "num", text: count(p.end_offset) }), h("td", { class: "num", text: count(p.stored_offset) }), h("td", { class: "num", text: count(p.lag) }))));
      const reasons = Object.entries(status.dead_letters || {});
      dead.replaceChildren(
        ...(reasons.length
          ? reasons.map(([reason, n]) => h("tr", {}, h("td", { text: reason }), h("td", { class: "num", text: count(n) }), h("td", {}, h("button", { type: "button", text: `Export ${reason}.jsonl`, onclick: () => exportDeadLetters(reason) }))))
          : [h("tr", {}, h("td", { colspan: 3, class: "muted", text: "No dead letters." }))]),
      );
      rebuild.replaceChildren(
        h("dt", { text: "State" }), h("dd", { text: progress.state }),
        h("dt", { text: "Phase" }), h("dd", { text: progress.phase || "—" }),
        h("dt", { text: "Started" }), h("dd", { text: progress.started_at ? `${when(progress.started_at)} UTC` : "—" }),
        h("dt", { text: "Finished" }), h("dd", { text: progress.finished_at ? `${when(progress.finished_at)} UTC` : "—" }),
        h("dt", { text: "Events" }), h("dd", { text: `${count(progress.events_done)} of ${count(progress.events_total)}` }),
        h("dt", { text: "Error" }), h("dd", { text: progress.error || "none" }),
      );
      file.replaceChildren(
        h("dt", { text: "File" }), h("dd", { class: "mono", text: status.file || "—" }),
        h("dt", { text: "Size" }), h("dd", { text: status.file_size_bytes === null ? "—" : `${(status.file_size_bytes / 1048576).toFixed(1)} MiB` }),
        h("dt", { text: "Read-model version" }), h("dd", { text: `${status.readmodel_version} (this release writes ${status.code_readmodel_version})` }),
        h("dt", { text: "Topic" }), h("dd", { class: "mono", text: status.topic }),
        h("dt", { text: "Turns" }), h("dd", { text: count(status.interactions) }),
      );
    }
    return { el: view, refresh };
  }

  function staffOnly() {
    return { el: h("section", {}, h("h1", { text: "Operations" }), h("p", { text: "Operations are for staff tokens only (this one's role is support)." })), refresh: async () => {} };
  }

  // -- the shell: sign-in, navigation, refresh ---------------------------------------------------------

  const VIEWS = { overview, conversations, turns, flagged, visitors, conversation, visitor, operations };
  let current = null;
  let timer = null;

  // One load at a time per view (a slow answer is not asked for again by the refresh timer); a view
  // left meanwhile drops its answer's status.
  async function load() {
    const view = current;
    if (!view || view.loading) return;
    view.loading = true;
    try {
      await view.refresh();
      if (view === current) {
        setStatus(`Updated ${new Date().toISOString().slice(11, 19)} UTC`);
        // Which page the line speaks of: an "Updated" left by the page before is not this one's.
        document.getElementById("status").dataset.route = location.hash;
      }
    } catch (error) {
      if (view === current && error.status !== 401) setStatus(error.message, true);
    } finally {
      view.loading = false;
    }
  }

  function render() {
    if (!token()) return showSignIn();
    const route = parseRoute();
    const make = route.page === "operations" && role() === "support" ? staffOnly : VIEWS[route.page] || overview;
    if (current && current.destroy) current.destroy();
    current = make(route);
    document.getElementById("view").replaceChildren(current.el);
    const keep = filtersOf(route.params).toString();
    for (const a of document.querySelectorAll("#nav a[data-page]")) {
      const page = a.dataset.page;
      a.href = page === "operations" || !keep ? `#/${page}` : `#/${page}?${keep}`;
      const active = page === route.page || (route.page === "conversation" && page === "conversations") || (route.page === "visitor" && page === "visitors");
      if (active) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = `${document.getElementById("page-title")?.textContent || "Dashboard"} · chat-analytics`;
    setStatus("Loading…");
    load();
  }

  function setRefresh(seconds) {
    clearInterval(timer);
    // A hidden tab is not refreshed; it catches up at the next tick after it is shown again.
    timer = seconds > 0 ? setInterval(() => document.hidden || load(), seconds * 1000) : null;
    sessionStorage.setItem(REFRESH_KEY, String(seconds));
  }

  function showSignIn(message) {
    document.getElementById("signin").hidden = false;
    document.getElementById("nav").hidden = true;
    document.getElementById("session").hidden = true;
    document.getElementById("view").replaceChildren();
    document.getElementById("signin-error").textContent = message || "";
    if (current && current.destroy) current.destroy();
    current = null;
    setStatus("");
    document.getElementById("token").focus();
  }

  function showApp() {
    document.getElementById("signin").hidden = true;
    document.getElementById("nav").hidden = false;
    document.getElementById("session").hidden = false;
    document.getElementById("nav-operations").hidden = role() !== "staff";
    document.getElementById("role").textContent = role() ? `signed in (${role()})` : "signed in";
    render();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
    setRefresh(0);
    document.getElementById("refresh").value = "0";
    showSignIn(message);
  }

  async function signIn(candidate) {
    const error = document.getElementById("signin-error");
    error.textContent = "";
    let response;
    try {
      response = await fetch(`${API}budget/`, { headers: { Authorization: `Token ${candidate}` }, cache: "no-store" });
    } catch {
      error.textContent = "The server cannot be reached.";
      return;
    }
    if (response.status === 401) {
      error.textContent = "This token is not known to the server (401). Check it and try again.";
      return;
    }
    if (response.status === 403) {
      error.textContent = "This token's role may not read analytics (403): sign in with a staff or support token.";
      return;
    }
    if (!response.ok) {
      error.textContent = `The server answered ${response.status}.`;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, candidate);
    // Staff may see the operations page; support gets 403 there (and a server without a projector 404).
    const admin = await fetch("/api/admin/rebuild/", { headers: { Authorization: `Token ${candidate}` }, cache: "no-store" }).catch(() => null);
    sessionStorage.setItem(ROLE_KEY, admin && admin.ok ? "staff" : admin && admin.status === 403 ? "support" : "");
    document.getElementById("token").value = "";
    showApp();
    document.getElementById("main").focus({ preventScroll: true });
  }

  function start() {
    document.getElementById("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = document.getElementById("token").value.trim();
      if (value) signIn(value);
    });
    document.getElementById("signout").addEventListener("click", () => signOut("Signed out."));
    const refresh = document.getElementById("refresh");
    refresh.value = sessionStorage.getItem(REFRESH_KEY) || "0";
    refresh.addEventListener("change", () => setRefresh(Number(refresh.value)));
    window.addEventListener("hashchange", () => {
      if (token()) render();
    });
    if (token()) {
      setRefresh(Number(refresh.value));
      showApp();
    } else {
      showSignIn();
    }
  }

  start();
})();
