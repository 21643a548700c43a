"""Conversations, the narrowed KPI, feedbacks and `query` against a plain Python scan of the turns.

A few thousand generated events (with models, searchable text, feedback, clicks, reviews, duplicates and
bad events) are folded; the turns are then read back as plain rows and every answer is computed again in
Python, filters and full-text matching included (from the stored user_input and assistant_blocks, not
from the stored search terms), and compared with what the API serves.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from projector.fold import apply_batch
from schemas import conversation_rows, fulltext
from schemas.readmodel import connect
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, PREFIX, make_client
from tests.support.events import stream, to_records
from tests.support.kept import kept_and_recomputed

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MODELS = ["", "", "gpt-4o", "llama-3", "Claude"]
WORDS = ["volume", "volumes", "resize", "resizing", "storage", "cluster", "gpu", "quota", "the", "of", "kubernetes"]
RANK = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def generated() -> list[Any]:
    rng = random.Random(11)
    events: list[Any] = []
    for day in range(4):
        events += stream(600, seed=day + 20, sessions=50, start=START + timedelta(days=day))
    for event in events:
        if isinstance(event, dict) and event.get("type") == "chat.turn.recorded":
            data = event["data"]
            data["model"] = rng.choice(MODELS)
            data["user_input"] = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
            if rng.random() < 0.5:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
                data["assistant_blocks"] = [*data.get("assistant_blocks", []), {"key": "markdown", "content": text}]
    return events


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadModelHandle]:
    con = connect(tmp_path_factory.mktemp("conv-scan") / "rm.duckdb")
    events = generated()
    for i in range(0, len(events), 300):
        apply_batch(con, to_records(events[i : i + 300], start=i))
    yield ReadModelHandle(con)
    con.close()


@pytest.fixture(scope="module")
def client(handle: ReadModelHandle) -> Iterator[Any]:
    with make_client(handle, clock=lambda: NOW) as c:
        yield c


@pytest.fixture(scope="module")
def turns(handle: ReadModelHandle) -> list[dict[str, Any]]:
    cur = handle.cursor()
    cur.execute("SELECT * FROM interactions")
    names = [d[0] for d in cur.description]
    out = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    cur.close()
    return out


# -- the plain scan ------------------------------------------------------------------------------------


def _matches_text(turn: dict[str, Any], query: str) -> bool:
    if query.lower() in turn["user_slug"].lower():
        return True
    words = fulltext.stems(turn["user_input"]) + fulltext.stems(
        fulltext.blocks_text(json.loads(turn["assistant_blocks"]))
    )

    def has(item: fulltext.Item) -> bool:
        n = len(item.stems)
        return any(
            all(s is None or words[i + k] == s for k, s in enumerate(item.stems)) for i in range(len(words) - n + 1)
        )

    return any(all(has(i) != i.negated for i in clause) for clause in fulltext.parse_query(query).clauses)


def stage1(turns: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for t in turns:
        day = t["created"].date()
        if "created_after" in params and day < date.fromisoformat(params["created_after"]):
            continue
        if "created_before" in params and day > date.fromisoformat(params["created_before"]):
            continue
        if "is_flagged" in params and t["is_flagged"] != (params["is_flagged"] == "true"):
            continue
        if "severity" in params and t["severity"] != params["severity"]:
            continue
        if "has_feedback" in params and (t["fb_score"] is not None) != (params["has_feedback"] == "true"):
            continue
        if "query" in params and not _matches_text(t, params["query"]):
            continue
        out.append(t)
    return out


def conversations(turns: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in stage1(turns, params):
        groups.setdefault(t["session_id"], []).append(t)
    rows = []
    for session, ts in groups.items():
        rank = max(RANK.get(t["severity"], 0) for t in ts)
        tokens_in, tokens_out = sum(t["input_tokens"] for t in ts), sum(t["output_tokens"] for t in ts)
        row = {
            "session_id": session,
            "user_slug": max(t["user_slug"] for t in ts),
            "message_count": len(ts),
            "is_flagged": any(t["is_flagged"] for t in ts),
            "max_severity": next(k for k, v in RANK.items() if v == rank),
            "max_severity_rank": rank,
            "has_feedback": any(t["fb_score"] is not None for t in ts),
            "offerings_shown": sum(t["result_count"] for t in ts),
            "offerings_clicked": sum(t["click_count"] for t in ts),
            "models_used": ", ".join(sorted({t["model"] for t in ts} - {""})),
            "is_reviewed": any(t["llm_reviewed_at"] is not None for t in ts),
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "started": min(t["created"] for t in ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "last_active": max(t["created"] for t in ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "_last_day": max(t["created"] for t in ts).date(),
        }
        if "total_tokens_min" in params and row["total_tokens"] < float(params["total_tokens_min"]):
            continue
        if "input_tokens_max" in params and row["input_tokens"] > float(params["input_tokens_max"]):
            continue
        if "last_active_after" in params and row["_last_day"] < date.fromisoformat(params["last_active_after"]):
            continue
        if "last_active_before" in params and row["_last_day"] > date.fromisoformat(params["last_active_before"]):
            continue
        if "is_reviewed" in params and row["is_reviewed"] != (params["is_reviewed"] == "true"):
            continue
        if "max_severity" in params and row["max_severity"] != params["max_severity"]:
            continue
        del row["_last_day"]
        rows.append(row)
    rows.sort(key=lambda r: r["session_id"])
    rows.sort(key=lambda r: r["last_active"], reverse=True)
    return rows


CASES: list[dict[str, str]] = [
    {},
    {"is_flagged": "true"},
    {"severity": "none"},
    {"has_feedback": "false"},
    {"created_after": "2026-11-21", "created_before": "2026-11-22"},
    {"query": "resizing"},
    {"query": "volume -gpu"},
    {"query": '"storage cluster" or quota'},
    {"query": '"resize the volume"'},
    {"total_tokens_min": "2500"},
    {"input_tokens_max": "700", "is_flagged": "false"},
    {"last_active_after": "2026-11-22"},
    # Over the turns a turn-level filter leaves, not the kept rows: both day bounds inclusive.
    {"is_flagged": "false", "last_active_after": "2026-11-22", "last_active_before": "2026-11-23"},
    {"is_reviewed": "true"},
    {"is_reviewed": "false", "query": "kubernetes"},
    {"max_severity": "critical"},
    {"max_severity": "none", "severity": "none"},
    {"query": "storage", "total_tokens_min": "1000", "is_reviewed": "true"},
    # A digit: in most visitors' (hex) slugs and a word of a few turns' text; a turn matching both counts once.
    {"query": "5", "is_flagged": "true"},
]


def test_the_data_has_what_the_cases_need(turns: list[dict[str, Any]]) -> None:
    assert len(turns) > 1000
    assert len({t["session_id"] for t in turns}) > 100
    assert sum(t["llm_reviewed_at"] is not None for t in turns) > 50
    assert sum(t["click_count"] for t in turns) > 50


@pytest.mark.parametrize("params", CASES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "none")
def test_conversations_equal_the_scan(client: Any, turns: list[dict[str, Any]], params: dict[str, str]) -> None:
    expected = conversations(turns, params)
    response = client.get(f"{PREFIX}/conversations/", params=params, headers=AUTH)
    assert response.status_code == 200
    assert response.json() == expected
    if len(expected) > 7:  # and a middle page of it
        page = client.get(f"{PREFIX}/conversations/", params={**params, "page": 2, "page_size": 7}, headers=AUTH)
        assert page.json() == expected[7:14] and page.headers["x-result-count"] == str(len(expected))


def kpi(turns: list[dict[str, Any]], params: dict[str, str], window_days: int = 30) -> dict[str, Any]:
    """Every field of the KPI (docs/api.md), computed from the turns the filters leave."""
    kept = {row["session_id"] for row in conversations(turns, params)}
    counted = [t for t in stage1(turns, params) if t["session_id"] in kept]
    reviewed = [t for t in counted if t["llm_reviewed_at"] is not None]
    reviewed_sessions = {t["session_id"] for t in reviewed}
    hallucinated = {t["session_id"] for t in reviewed if t["llm_hallucination_detected"]}
    up, down = sum(t["fb_score"] == 1 for t in counted), sum(t["fb_score"] == -1 for t in counted)
    clicks, clarifications = sum(t["click_count"] for t in counted), sum(t["is_clarification"] for t in counted)
    intents: dict[str, int] = {}
    for t in reviewed:
        if t["llm_intent_category"]:
            intents[t["llm_intent_category"]] = intents.get(t["llm_intent_category"], 0) + 1
    today = NOW.date()

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    def on(day: date, severity: str | None = None) -> int:
        return sum(t["created"].date() == day and severity in (None, t["severity"]) for t in counted)

    severity_days = [today - timedelta(days=13 - i) for i in range(14)]
    return {
        "interactions_total": len(counted),
        "sessions_total": len(kept),
        "unique_users": len({t["user_slug"] for t in counted} - {""}),
        "flagged_total": sum(t["is_flagged"] for t in counted),
        "feedback_positive": up,
        "feedback_negative": down,
        "satisfaction_rate": ratio(up, up + down),
        "clicks_total": clicks,
        "click_through_rate": ratio(clicks, len(counted)),
        "avg_llm_resolution_score": ratio(sum(t["llm_resolution_score"] or 0 for t in reviewed), len(reviewed)),
        "llm_intent_distribution": intents,
        "hallucination_rate": ratio(len(hallucinated), len(reviewed_sessions)),
        "review_coverage": ratio(len(reviewed_sessions), len(kept)),
        "daily_volume": [
            {"date": d.isoformat(), "count": on(d)}
            for d in (today - timedelta(days=window_days - 1 - i) for i in range(window_days))
        ],
        "clarification_requests_total": clarifications,
        "clarification_rate": ratio(clarifications, len(counted)),
        "input_tokens_total": sum(t["input_tokens"] for t in counted),
        "output_tokens_total": sum(t["output_tokens"] for t in counted),
        "reviewed_total": len(reviewed_sessions),
        "review_input_tokens_total": sum(t["llm_input_tokens"] for t in reviewed),
        "review_output_tokens_total": sum(t["llm_output_tokens"] for t in reviewed),
        "severity_by_day": {
            "labels": [d.isoformat() for d in severity_days],
            "series": {s.upper(): [on(d, s) for d in severity_days] for s in RANK},
        },
    }


RATES = ("satisfaction_rate", "click_through_rate", "avg_llm_resolution_score", "hallucination_rate",
         "review_coverage", "clarification_rate")  # fmt: skip
# Beside CASES, the KPI's own paths: a date range alone (daily_counters and the range's turns), one bound,
# a range the data ends in, an empty range, and a window shorter than the data; and conversation-level
# filters that no conversation passes (the kept rows' sums of nothing, then with a turn-level filter).
KPI_CASES: list[dict[str, str]] = [
    *CASES,
    {"total_tokens_min": "1000000000"},
    {"total_tokens_min": "1000000000", "is_flagged": "true"},
    {"created_from": "2026-11-21"},
    {"created_to": "2026-11-21"},
    {"created_after": "2026-11-22", "created_to": "2026-11-30"},
    {"created_from": "2026-11-23", "created_to": "2026-11-21"},
    {"window_days": "3"},
    {"window_days": "2", "created_from": "2026-11-23"},
]


@pytest.mark.parametrize("params", KPI_CASES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "none")
def test_the_kpi_equals_the_scan(client: Any, turns: list[dict[str, Any]], params: dict[str, str]) -> None:
    stage = {k: v for k, v in params.items() if k != "window_days"}
    if "created_from" in stage:
        stage["created_after"] = max(stage.pop("created_from"), stage.get("created_after", ""))
    if "created_to" in stage:
        stage["created_before"] = stage.pop("created_to")
    expected = kpi(turns, stage, int(params.get("window_days", 30)))
    body = client.get(f"{PREFIX}/kpi/", params=params, headers=AUTH).json()
    for name in RATES:
        assert body.pop(name) == pytest.approx(expected.pop(name)), name
    assert body == expected


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"score": "1"},
        {"score": "-1", "has_comment": "true"},
        {"has_comment": "false"},
        {"submitted_from": "2026-11-21", "submitted_to": "2026-11-22"},
        {"category": "other"},
        {"o": "llm_resolution_score"},
        {"o": "-score,submitted_at"},
    ],
)
def test_feedbacks_equal_the_scan(client: Any, turns: list[dict[str, Any]], params: dict[str, str]) -> None:
    records = [t for t in turns if t["fb_score"] is not None or t["llm_reviewed_at"] is not None]
    if "score" in params:
        records = [t for t in records if t["fb_score"] == int(params["score"])]
    if "has_comment" in params:
        records = [t for t in records if (t["fb_comment"] != "") == (params["has_comment"] == "true")]
    if "category" in params:
        records = [t for t in records if t["fb_category"] == params["category"]]
    for name, keep in (("submitted_from", lambda d, b: d >= b), ("submitted_to", lambda d, b: d <= b)):
        if name in params:
            bound = date.fromisoformat(params[name])
            records = [t for t in records if t["fb_submitted_at"] and keep(t["fb_submitted_at"].date(), bound)]
    columns = {"submitted_at": "fb_submitted_at", "score": "fb_score", "llm_resolution_score": "llm_resolution_score"}
    terms = params.get("o", "-submitted_at").split(",")
    # Stable sorts from the last key to the first; nulls first descending, last ascending.
    records.sort(key=lambda t: str(t["uuid"]), reverse=terms[0].startswith("-"))
    for term in reversed(terms):
        column, descending = columns[term.lstrip("-")], term.startswith("-")
        present = sorted((t for t in records if t[column] is not None), key=lambda t: t[column], reverse=descending)
        missing = [t for t in records if t[column] is None]
        records = missing + present if descending else present + missing
    response = client.get("/api/anonymous-chat-feedbacks/", params={**params, "page_size": 300}, headers=AUTH)
    assert response.headers["x-result-count"] == str(len(records))
    assert [r["interaction_uuid"] for r in response.json()] == [str(t["uuid"]) for t in records[:300]]
    # Page by page: a page is read from the records whose first ordering column is NULL and from the
    # others apart, the newest first from a window of recent ones (api/feedbacks_sql.py).
    paged: list[str] = []
    for n in range(1, max(1, -(-len(records) // 41)) + 1):
        page = client.get("/api/anonymous-chat-feedbacks/", params={**params, "page_size": 41, "page": n}, headers=AUTH)
        paged += [r["interaction_uuid"] for r in page.json()]
    assert paged == [str(t["uuid"]) for t in records]


def test_the_cases_are_not_empty_answers(turns: list[dict[str, Any]]) -> None:
    sizes = [len(conversations(turns, params)) for params in CASES]
    assert sum(1 for n in sizes if n > 3) >= len(CASES) - 2, sizes
    assert len(set(sizes)) > len(CASES) // 2, sizes  # the filters really narrow, differently


def test_the_kept_rows_equal_a_grouping_of_every_turn(handle: ReadModelHandle) -> None:
    # Folded batch by batch (late feedback, clicks and reviews included), the projector's conversation
    # rows are those a grouping of all the turns renders now.
    cur = handle.cursor()
    kept = cur.execute("SELECT session_id, body FROM conversations ORDER BY session_id").fetchall()
    fresh = cur.execute(
        f"SELECT session_id, {conversation_rows.ROW_JSON} FROM ({conversation_rows.grouped('TRUE')}) ORDER BY 1"
    ).fetchall()
    cur.close()
    assert len(kept) > 100 and kept == fresh


def test_the_kept_kpi_counters_equal_a_recomputation(handle: ReadModelHandle) -> None:
    # Every column of the kept rows (the KPI's per-session counters, days and intents too), as folded
    # batch by batch, equals what grouping the turns gives now; and the counters are not all zero.
    kept, fresh = kept_and_recomputed(handle.cursor())
    assert len(kept) > 100 and kept == fresh
    cur = handle.cursor()
    spread = cur.execute(
        "SELECT sum(flagged), sum(feedback_up), sum(clicks), sum(reviewed_turns), sum(hallucinated_turns),"
        " sum(len(intents)), count(*) FILTER (WHERE len(users) > 0)"
        " FROM conversations"
    ).fetchone()
    cur.close()
    assert all(n and n > 0 for n in spread), spread
