"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright; never a
downloaded browser), against `chat-analytics serve` on a real socket whose projector folded demo
traffic from a real Kafka topic. What a reviewer would check by hand: sign-in, the tiles equal the
API's KPI figures, the charts are drawn, filters change the URL and the numbers, a transcript opens,
the CSV export holds every matching row, a `user` token is refused, and the console stays clean.

Screenshots of every page go to this module's temporary folder (printed with `-s`); with
CHAT_ANALYTICS_DOCS_SCREENSHOT=1 the overview is also written to docs/dashboard.png, the README's screenshot.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from broker.selection import SelectedBroker
from broker.topics import TOPIC_CONFIG
from loopback.ports import free_port
from tests.support import REPO
from tests.support.events import turn
from tests.support.kafka import publish

PREFIX = "/api/anonymous-chat-interactions"
STAFF, SUPPORT, USER = "dash-staff-token", "dash-support-token", "dash-user-token"
CHROMIUM = os.environ.get("CHAT_ANALYTICS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
EVENTS = 3000
WAIT_S = 180.0  # a failure guard for start-up on a busy machine, not a timing assertion
UI_WAIT_MS = 60_000
# The figures the tiles show, as the KPI endpoint names them ("tokens_total" is input + output).
TILE_KEYS = (
    "interactions_total",
    "sessions_total",
    "unique_users",
    "satisfaction_rate",
    "click_through_rate",
    "flagged_total",
    "tokens_total",
    "review_coverage",
    "avg_llm_resolution_score",
    "hallucination_rate",
    "clarification_rate",
)


CLI = [sys.executable, "-m", "cli.main"]


@pytest.fixture(scope="module")
def topic_name() -> str:
    return f"test-dashboard-{os.getpid()}-{int(time.time())}"


@pytest.fixture(scope="module")
def served(
    kafka_broker: SelectedBroker, kafka_admin: Any, tmp_path_factory: pytest.TempPathFactory, topic_name: str
) -> Iterator[str]:
    """`serve` on a loopback port, its projector caught up with EVENTS demo events on a fresh topic."""
    tmp = tmp_path_factory.mktemp("dashboard-serve")
    topic = topic_name
    kafka_admin.create_topics({topic: {"num_partitions": 3, "configs": dict(TOPIC_CONFIG)}}, wait_for_metadata=True)
    bootstrap = kafka_broker.bootstrap_servers
    env = {
        **os.environ,
        "CHAT_ANALYTICS_API_TOKENS": f"{STAFF}:staff,{SUPPORT}:support,{USER}:user",
        "CHAT_ANALYTICS_TOKENS_FILE": str(tmp / "tokens.json"),
        "CHAT_ANALYTICS_USER_SLUG_SALT": "dashboard-test-salt",
    }
    publish = [*CLI, "publish-demo", "--events", str(EVENTS), "--seed", "11", "--bad-share", "0.02"]
    subprocess.run([*publish, "--topic", topic, "--bootstrap-servers", bootstrap], env=env, cwd=REPO, check=True)
    port = free_port()
    command = [
        *CLI,
        "serve",
        *("--host", "127.0.0.1", "--port", str(port), "--bootstrap-servers", bootstrap, "--topic", topic),
        *("--db", str(tmp / "rm.duckdb"), "--group-id", f"dashboard-{topic}"),
    ]
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            assert proc.poll() is None, f"serve exited with {proc.returncode}; see {tmp / 'serve.log'}"
            assert time.monotonic() < deadline, "serve did not become ready"
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if not kafka_broker.started_here:
            kafka_admin.delete_topics([topic])


@pytest.fixture(scope="module")
def api(served: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served, headers={"Authorization": f"Token {STAFF}"}, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Debian's build, as installed by .ci/run; Playwright's own browser download is never used.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {folder}")
    return folder


class Tab:
    """A fresh browser context (its own session storage) and page, with every console error kept."""

    def __init__(self, browser: Browser, base: str, width: int = 1280) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(UI_WAIT_MS)
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} at {message.location}")

    def sign_in(self, token: str) -> None:
        self.page.goto(f"{self.base}/")
        self.page.fill("#token", token)
        self.page.click("#signin-form button[type=submit]")

    def settle(self) -> None:
        """Waits for the view's data: the status line says when it was updated, and for which page (a click's
        hashchange runs after the click returns: until then the line is still the page before's)."""
        self.page.wait_for_function(
            "() => { const s = document.getElementById('status');"
            " return s.textContent.startsWith('Updated') && s.dataset.route === location.hash; }"
        )

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Browser, served: str) -> Iterator[Tab]:
    opened = Tab(browser, served)
    try:
        yield opened
    finally:
        opened.close()


def tile_values(page: Page) -> dict[str, Any]:
    raw = page.eval_on_selector_all(".tile", "els => els.map(e => [e.dataset.kpi, e.dataset.value])")
    return {key: json.loads(value) for key, value in raw}


def expected_tiles(kpi: dict[str, Any]) -> dict[str, Any]:
    figures = {**kpi, "tokens_total": kpi["input_tokens_total"] + kpi["output_tokens_total"]}
    return {key: figures[key] for key in TILE_KEYS}


def wait_for_tiles(page: Page, expected: dict[str, Any]) -> None:
    page.wait_for_function(
        "n => document.querySelector('.tile[data-kpi=interactions_total]')?.dataset.value === String(n)",
        arg=expected["interactions_total"],
    )


def painted_pixels(page: Page, selector: str) -> int:
    """Non-transparent pixels on a canvas: more than zero once Chart.js has drawn on it."""
    return page.eval_on_selector(
        selector,
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""",
    )


def test_sign_in_shows_the_kpi_figures_and_draws_the_charts(tab: Tab, api: httpx.Client, shots: Path) -> None:
    page = tab.page
    tab.sign_in(STAFF)
    kpi = api.get(f"{PREFIX}/kpi/").json()
    assert kpi["interactions_total"] > 0
    wait_for_tiles(page, expected_tiles(kpi))
    tab.settle()
    assert tile_values(page) == expected_tiles(kpi)
    # What a person reads: the counts as the API gives them, with thousands separators.
    turns = page.inner_text(".tile[data-kpi=interactions_total] .value")
    assert turns == f"{kpi['interactions_total']:,}"
    assert page.inner_text(".tile[data-kpi=satisfaction_rate] .value") == f"{kpi['satisfaction_rate'] * 100:.1f}%"

    for chart in ("#budget", "#volume", "#severity", "#intents"):
        assert painted_pixels(page, f"{chart} canvas") > 500, f"{chart} is not drawn"
    budget = api.get(f"{PREFIX}/budget/").json()
    text = page.inner_text("#budget-text")
    assert f"{budget['tokens_today']:,} of {budget['tokens_limit']:,} tokens" in text
    assert f"resets {budget['resets_at'][:10]} 00:00 UTC" in text
    assert page.is_visible("#nav-operations")  # a staff token
    page.screenshot(path=str(shots / "overview.png"), full_page=True)
    if os.environ.get("CHAT_ANALYTICS_DOCS_SCREENSHOT") == "1":
        page.screenshot(path=str(REPO / "docs" / "dashboard.png"), full_page=True)
    assert tab.errors == []


def test_filters_change_the_url_and_every_number(tab: Tab, api: httpx.Client, shots: Path) -> None:
    page = tab.page
    tab.sign_in(STAFF)
    tab.settle()
    everything = api.get(f"{PREFIX}/kpi/").json()
    day = everything["daily_volume"][-10]["date"]  # ten days ago: a range that leaves turns out
    page.fill("input[name=created_from]", day)
    page.select_option("select[name=has_feedback]", "true")
    page.click(".filters button[type=submit]")
    page.wait_for_url(f"**created_from={day}**")
    assert "has_feedback=true" in page.url
    narrowed = api.get(f"{PREFIX}/kpi/", params={"created_from": day, "has_feedback": "true"}).json()
    assert 0 < narrowed["interactions_total"] < everything["interactions_total"]
    wait_for_tiles(page, expected_tiles(narrowed))
    tab.settle()
    assert tile_values(page) == expected_tiles(narrowed)

    # The URL is the view: opened afresh in the same tab, it shows the same numbers, and the
    # filters travel with the navigation to the other pages.
    page.reload()
    wait_for_tiles(page, expected_tiles(narrowed))
    page.click("#nav a[data-page=flagged]")
    page.wait_for_url(f"**#/flagged?*created_from={day}*")
    tab.settle()
    flagged = api.get(f"{PREFIX}/", params={"created_from": day, "has_feedback": "true", "is_flagged": "true"})
    assert page.get_attribute("#result-count", "data-count") == flagged.headers["x-result-count"]
    assert tab.errors == []


def test_a_row_opens_its_transcript_with_every_turn(tab: Tab, api: httpx.Client, shots: Path) -> None:
    page = tab.page
    tab.sign_in(STAFF)
    page.click("#nav a[data-page=turns]")
    tab.settle()
    page.screenshot(path=str(shots / "turns.png"), full_page=True)
    page.click("#nav a[data-page=conversations]")
    tab.settle()
    page.screenshot(path=str(shots / "conversations.png"), full_page=True)
    first = page.locator("tbody tr.clickable").first
    expected_turns = int(first.locator("td.num").first.inner_text())
    # With the keyboard: each row's first link takes the focus, Enter opens the transcript.
    first.locator("a").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**#/conversation/**")
    page.go_back()
    tab.settle()
    page.locator("tbody tr.clickable").first.locator("td.num").first.click()  # a click on the row itself
    page.wait_for_url("**#/conversation/**")
    page.wait_for_selector("article.turn")
    tab.settle()
    session_id = page.inner_text("dl.facts dd.mono")
    turns = api.get(f"{PREFIX}/by-session/{session_id}/").json()
    articles = page.locator("article.turn")
    assert articles.count() == len(turns) == expected_turns
    for i, row in enumerate(turns):
        article = articles.nth(i)
        assert article.get_attribute("data-uuid") == row["uuid"]
        assert article.locator(".said.user").inner_text() == row["user_input"]
    page.screenshot(path=str(shots / "transcript.png"), full_page=True)

    # A transcript with a judge's review shows it, and one with a negative rating shows the category.
    reviewed = api.get(f"{PREFIX}/", params={"has_negative_feedback": "true", "page_size": "300"}).json()
    row = next(r for r in reviewed if r["feedback"]["llm_reviewed_at"] and r["feedback"]["category"])
    page.goto(f"{tab.base}/#/conversation/{row['session_id']}")
    article = page.locator(f"article.turn[data-uuid='{row['uuid']}']")
    article.wait_for()
    text = article.inner_text()
    assert "down (-1)" in text and row["feedback"]["category"] in text
    assert f"{row['feedback']['llm_resolution_score']} / 5" in text and row["feedback"]["llm_summary"] in text
    assert tab.errors == []


def test_csv_export_downloads_every_matching_row(tab: Tab, api: httpx.Client, shots: Path) -> None:
    page = tab.page
    tab.sign_in(STAFF)
    for view, params, rows_of in (
        ("conversations", {"has_feedback": "false"}, "conversations/"),
        ("turns", {"is_flagged": "false"}, ""),
    ):
        page.goto(f"{tab.base}/#/{view}?{'&'.join(f'{k}={v}' for k, v in params.items())}")
        tab.settle()
        shown = page.locator("tbody tr").count()
        with page.expect_response(lambda r: "format=csv" in r.url) as answer, page.expect_download() as download:
            page.click("#export")
        response = answer.value
        assert response.status == 200
        header_count = int(response.headers["x-result-count"])
        body = Path(download.value.path()).read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(body)))
        assert len(rows) == header_count
        assert header_count > shown  # every matching row, not the page on screen
        listed = api.get(f"{PREFIX}/{rows_of}", params={**params, "page_size": "1"})
        assert header_count == int(listed.headers["x-result-count"])
        assert download.value.suggested_filename == f"{view}.csv"
        page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Exported')")
    assert tab.errors == []


def test_every_page_renders_and_is_saved(tab: Tab, api: httpx.Client, shots: Path, browser: Browser) -> None:
    page = tab.page
    tab.sign_in(STAFF)
    tab.settle()
    for name in ("flagged", "visitors", "operations"):
        page.click(f"#nav a[data-page={name}]")
        page.wait_for_url(f"**#/{name}*")
        tab.settle()
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    status = api.get("/api/admin/status/").json()
    assert page.locator("#lag tbody tr").count() == len(status["partitions"]) == 3
    assert page.inner_text("#freshness dd").strip() == "yes"  # caught up
    assert status["live"]["lag_s"] == 0 and page.inner_text("#lag-seconds") == "0 s (holds every record known)"
    reasons = page.locator("#dead-letters tbody td:first-child").all_inner_texts()
    assert sorted(reasons) == sorted(status["dead_letters"])  # 2% bad events: several reasons

    page.click("#nav a[data-page=visitors]")
    tab.settle()
    users = api.get(f"{PREFIX}/by-user/", params={"page_size": "25"})
    assert page.get_attribute("#result-count", "data-count") == users.headers["x-result-count"]
    slug = users.json()[0]["user_slug"]
    assert page.locator("tbody tr code").first.get_attribute("data-full") == slug
    page.locator("tbody tr.clickable").first.locator("td.num").first.click()
    page.wait_for_url(f"**#/visitor/{slug}*")
    tab.settle()
    turns = api.get(f"{PREFIX}/by-user/{slug}/", params={"page_size": "1"})
    assert page.get_attribute("#result-count", "data-count") == turns.headers["x-result-count"]
    page.screenshot(path=str(shots / "visitor.png"), full_page=True)
    assert tab.errors == []

    narrow = Tab(browser, tab.base, width=390)
    try:
        narrow.sign_in(STAFF)
        narrow.settle()
        # Readable on a phone-sized window: nothing wider than the viewport but the tables' own scroll boxes.
        assert narrow.page.evaluate("document.documentElement.scrollWidth") <= 390
        narrow.page.screenshot(path=str(shots / "overview-narrow.png"), full_page=True)
        assert narrow.errors == []
    finally:
        narrow.close()


def test_a_user_token_and_an_unknown_token_are_refused_with_a_clear_message(tab: Tab, shots: Path) -> None:
    page = tab.page
    tab.sign_in(USER)
    page.wait_for_function("() => document.getElementById('signin-error').textContent !== ''")
    page.screenshot(path=str(shots / "sign-in-refused.png"), full_page=True)
    assert "403" in page.inner_text("#signin-error") and "staff or support" in page.inner_text("#signin-error")
    assert page.is_hidden("#nav")
    assert page.evaluate("sessionStorage.getItem('chat-analytics.token')") is None

    page.fill("#token", "not-a-token")
    page.click("#signin-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('signin-error').textContent.includes('401')")

    # Support reads analytics but not operations; signing out forgets the token.
    page.fill("#token", SUPPORT)
    page.click("#signin-form button[type=submit]")
    tab.settle()
    assert page.is_hidden("#nav-operations")
    page.click("#signout")
    assert page.is_visible("#signin") and page.evaluate("sessionStorage.getItem('chat-analytics.token')") is None


def test_every_api_call_asks_for_at_least_the_last_read_model_position_it_saw(tab: Tab) -> None:
    # Behind replicas (docs/scaling.md) the dashboard must never show an older state than it showed.
    sent: list[str | None] = []
    answered: list[str] = []

    def on_request(request: Any) -> None:
        if "/api/anonymous-chat-" in request.url:
            sent.append(request.headers.get("x-min-read-model-position"))

    def on_response(response: Any) -> None:
        if "/api/anonymous-chat-" in response.url and response.ok:
            answered.append(response.headers["x-read-model-position"])

    page = tab.page
    page.on("request", on_request)
    page.on("response", on_response)
    tab.sign_in(STAFF)
    tab.settle()
    first_view = len(sent)
    page.click("#nav a[data-page=flagged]")
    page.wait_for_url("**#/flagged*")
    tab.settle()
    later = sent[first_view:]
    assert answered and later, "the second view made no API call"
    # Once an answer has been seen, every call carries a position some earlier answer had.
    assert all(position is not None and position in answered for position in later), (later, answered)
    assert tab.errors == []


# Last in the module: it adds a turn to the topic the other tests read.
def test_live_refresh_shows_new_turns_without_a_reload_or_a_flash_to_zero(
    tab: Tab, api: httpx.Client, kafka_broker: SelectedBroker, topic_name: str
) -> None:
    page = tab.page
    tab.sign_in(STAFF)
    before = api.get(f"{PREFIX}/kpi/").json()["interactions_total"]
    wait_for_tiles(page, {"interactions_total": before})
    tab.settle()
    # Every text the Turns tile shows from now on, and the chart's canvas element itself.
    page.evaluate(
        """() => {
            const value = document.querySelector('.tile[data-kpi=interactions_total] .value');
            window.seen = [];
            new MutationObserver(() => window.seen.push(value.textContent))
                .observe(value, { childList: true, characterData: true, subtree: true });
            window.volumeCanvas = document.querySelector('#volume canvas');
        }"""
    )
    page.select_option("#refresh", "5")
    publish(kafka_broker.bootstrap_servers, topic_name, [turn("s-live-dashboard", at=datetime.now(UTC))])
    wait_for_tiles(page, {"interactions_total": before + 1})
    assert api.get(f"{PREFIX}/kpi/").json()["interactions_total"] == before + 1
    seen = page.evaluate("window.seen")
    # Refreshed in place: only ever the old number or the new one, never a blank, a zero or a placeholder.
    assert seen and set(seen) <= {f"{before:,}", f"{before + 1:,}"}, seen
    assert page.evaluate("window.volumeCanvas === document.querySelector('#volume canvas')")
    assert painted_pixels(page, "#volume canvas") > 500
    assert tab.errors == []
