"""/conversations/ and the KPI's conversation-level filters, with the reference's own test cases
(docs/api.md: grouping, clicks, models_used, is_reviewed, token sums, last_active bounds, KPI
narrowing, reviewed_total in threads) and the hand-built data set of tests/support/api_data.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.api_data import (
    AUTH,
    OFFERINGS,
    PREFIX,
    TOKENS,
    USER,
    USER_A,
    USER_B,
    build_read_model,
    make_client,
    uid,
)
from tests.support.events import click, feedback, review, turn, usage

CONVERSATIONS = f"{PREFIX}/conversations/"
KPI = f"{PREFIX}/kpi/"


def at(day: int, hh: int = 9, mm: int = 0, month: int = 7) -> datetime:
    return datetime(2026, month, day, hh, mm, tzinfo=UTC)


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The hand-built data set (t1..t7 in sessions s1..s4) of tests/support/api_data.py."""
    handle = build_read_model(tmp_path_factory.mktemp("conv") / "rm.duckdb")
    with make_client(handle) as client:
        yield client
    handle.close()


def rows(client: Any, path: str = CONVERSATIONS, **params: Any) -> list[dict[str, Any]]:
    response = client.get(path, params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def by_session(client: Any, **params: Any) -> dict[str, dict[str, Any]]:
    return {row["session_id"]: row for row in rows(client, **params)}


def fresh(tmp_path: Path, events: list[dict[str, Any]]) -> Any:
    return make_client(build_read_model(tmp_path / "rm.duckdb", events))


# -- the reference's cases ---------------------------------------------------------------------------


def test_turns_are_grouped_into_one_row_per_session(tmp_path: Path) -> None:
    events = [
        turn("alpha", at=at(1, 9), user_slug=USER_A),
        turn("alpha", at=at(1, 10), user_slug=USER_A),
        turn("beta", at=at(2, 9), user_slug=USER_B),
    ]
    with fresh(tmp_path, events) as client:
        body = rows(client)
    assert [(r["session_id"], r["message_count"], r["user_slug"]) for r in body] == [
        ("beta", 1, USER_B),
        ("alpha", 2, USER_A),
    ]
    alpha = body[1]
    assert (alpha["started"], alpha["last_active"]) == ("2026-07-01T09:00:00.000000Z", "2026-07-01T10:00:00.000000Z")


def test_clicks_are_counted_without_inflating_the_other_columns(tmp_path: Path) -> None:
    o1, o2 = OFFERINGS["o1"], OFFERINGS["o2"]
    t1 = turn("s", at=at(1, 9), offering_uuids=[o1, o2])
    t2 = turn("s", at=at(1, 10), offering_uuids=[o1])
    events = [t1, t2, click(t1, o1, at=at(1, 9, 1)), click(t1, o1, at=at(1, 9, 2)), click(t2, o1, at=at(1, 10, 1))]
    with fresh(tmp_path, events) as client:
        (row,) = rows(client)
    assert (row["message_count"], row["offerings_shown"], row["offerings_clicked"]) == (2, 3, 3)


def test_models_used_are_the_distinct_non_empty_models_in_code_point_order(tmp_path: Path) -> None:
    events = [
        turn("s", at=at(1, 9), model="gpt-b"),
        turn("s", at=at(1, 10), model="Zeta"),
        turn("s", at=at(1, 11), model=""),
        turn("s", at=at(1, 12), model="gpt-b"),
        turn("s", at=at(1, 13)),  # an older publisher: no model at all
        turn("untracked", at=at(1, 9)),
    ]
    with fresh(tmp_path, events) as client:
        body = by_session(client)
    assert body["s"]["models_used"] == "Zeta, gpt-b"  # "Z" (U+005A) before "g" (U+0067)
    assert body["untracked"]["models_used"] == ""


def test_one_reviewed_turn_makes_the_conversation_reviewed_and_is_reviewed_filters(tmp_path: Path) -> None:
    t1, t2 = turn("judged", at=at(1, 9)), turn("judged", at=at(2, 10))
    events = [t1, t2, turn("unjudged", at=at(1, 11)), review(t1, 4, at=at(3))]
    with fresh(tmp_path, events) as client:
        body = by_session(client)
        assert (body["judged"]["is_reviewed"], body["unjudged"]["is_reviewed"]) == (True, False)
        assert [r["session_id"] for r in rows(client, is_reviewed="true")] == ["judged"]
        assert [r["session_id"] for r in rows(client, is_reviewed="false")] == ["unjudged"]
        # Stage 1 first: without its reviewed turn the conversation is not reviewed.
        assert by_session(client, created_after="2026-07-02")["judged"]["is_reviewed"] is False
        assert rows(client, created_after="2026-07-02", is_reviewed="true") == []


def test_tokens_are_summed_over_the_conversation(tmp_path: Path) -> None:
    events = [
        turn("s", at=at(1, 9), input_tokens=100, output_tokens=10),
        turn("s", at=at(1, 10), input_tokens=300, output_tokens=30),
        turn("zero", at=at(1, 11)),  # untracked turns read as 0, never null
    ]
    with fresh(tmp_path, events) as client:
        body = by_session(client)
    assert (body["s"]["input_tokens"], body["s"]["output_tokens"], body["s"]["total_tokens"]) == (400, 40, 440)
    assert (body["zero"]["input_tokens"], body["zero"]["output_tokens"], body["zero"]["total_tokens"]) == (0, 0, 0)


def test_last_active_bounds_are_inclusive_dates(tmp_path: Path) -> None:
    events = [turn("s", at=at(18, 9)), turn("s", at=at(20, 23, 30))]
    with fresh(tmp_path, events) as client:
        assert len(rows(client, last_active_before="2026-07-20")) == 1
        assert rows(client, last_active_before="2026-07-19") == []
        assert rows(client, last_active_after="2026-07-21") == []
        assert len(rows(client, last_active_after="2026-07-20")) == 1


def test_kpi_is_narrowed_to_whole_conversations_by_total_tokens_min(tmp_path: Path) -> None:
    events = [
        turn("big", at=at(1, 9), input_tokens=900, output_tokens=0),
        turn("small", at=at(1, 10), input_tokens=100, output_tokens=100),
        turn("small", at=at(1, 11), input_tokens=10, output_tokens=10),
    ]
    with fresh(tmp_path, events) as client:
        narrowed = rows(client, KPI, total_tokens_min=500)
        whole = rows(client, KPI)
    assert (narrowed["interactions_total"], narrowed["input_tokens_total"], narrowed["sessions_total"]) == (1, 900, 1)
    assert (whole["interactions_total"], whole["input_tokens_total"]) == (3, 1010)


def test_kpi_counts_reviewed_threads_once(tmp_path: Path) -> None:
    t1, t2, t3 = turn("thread", at=at(1, 9)), turn("thread", at=at(1, 10)), turn("other", at=at(1, 11))
    events = [
        t1,
        t2,
        t3,
        review(t1, 4, at=at(2), hallucination_detected=True),
        review(t2, 2, at=at(2), hallucination_detected=True),
        review(t3, 5, at=at(2)),
    ]
    with fresh(tmp_path, events) as client:
        for params in ({}, {"is_flagged": "false"}, {"total_tokens_min": 0}):
            body = rows(client, KPI, **params)
            assert body["reviewed_total"] == 2, params
            assert body["hallucination_rate"] == 0.5, params  # 1 of 2 threads, never above 1
            assert body["review_coverage"] == 1.0, params
            assert body["avg_llm_resolution_score"] == pytest.approx(11 / 3), params  # still over turns


# -- stage 1 trims, stage 2 keeps whole rows (hand-built data) -----------------------------------------


def test_every_column_over_the_hand_built_data(hand: Any) -> None:
    body = by_session(hand)
    assert list(body) == ["s4", "s3", "s2", "s1"]  # -last_active
    s1, s2 = body["s1"], body["s2"]
    assert s1 == {
        "session_id": "s1",
        "user_slug": USER_A,
        "message_count": 2,
        "is_flagged": True,
        "max_severity": "low",
        "max_severity_rank": 1,
        "has_feedback": True,
        "offerings_shown": 2,
        "offerings_clicked": 3,
        "models_used": "",
        "is_reviewed": True,
        "input_tokens": 150,
        "output_tokens": 260,
        "total_tokens": 410,
        "started": "2026-11-26T09:00:00.000000Z",
        "last_active": "2026-11-26T09:05:00.000000Z",
    }
    assert (s2["max_severity"], s2["max_severity_rank"], s2["offerings_clicked"]) == ("critical", 4, 1)
    assert body["s3"]["user_slug"] == "" and body["s3"]["has_feedback"] is False


def test_turn_level_filters_trim_each_conversation(hand: Any) -> None:
    flagged = by_session(hand, is_flagged="true")
    assert {k: v["message_count"] for k, v in flagged.items()} == {"s4": 1, "s3": 1, "s2": 1, "s1": 1}
    assert flagged["s2"]["total_tokens"] == 10  # t3 alone
    high = by_session(hand, severity="none")
    assert {k: (v["message_count"], v["max_severity"]) for k, v in high.items()} == {
        "s4": (1, "none"),
        "s2": (1, "none"),
        "s1": (1, "none"),
    }
    unrated = by_session(hand, has_feedback="false")
    assert {k: v["message_count"] for k, v in unrated.items()} == {"s4": 1, "s3": 1, "s2": 1}
    assert all(not row["has_feedback"] for row in unrated.values())
    # created_before drops t4, s2's reviewed turn: s2 is then not reviewed, and is_reviewed=true drops it.
    early = by_session(hand, created_before="2026-11-26")
    assert early["s2"]["is_reviewed"] is False
    assert list(by_session(hand, created_before="2026-11-26", is_reviewed="true")) == ["s1"]


def test_conversation_level_filters(hand: Any) -> None:
    def sessions(**params: Any) -> list[str]:
        return [r["session_id"] for r in rows(hand, **params)]

    # totals: s1 410, s2 710 (t3 10 + t4 700), s3 10, s4 153
    assert sessions(total_tokens_min=410) == ["s2", "s1"]
    assert sessions(total_tokens_max="153.0") == ["s4", "s3"]
    assert sessions(input_tokens_min=150, input_tokens_max=310) == ["s2", "s1"]
    assert sessions(output_tokens_max=82) == ["s4", "s3"]
    assert sessions(max_severity="critical") == ["s2"]
    assert sessions(max_severity="none") == []
    assert sessions(severity="none", max_severity="none") == ["s4", "s2", "s1"]
    assert sessions(last_active_after="2026-11-27", last_active_before="2026-11-27") == ["s3", "s2"]
    assert sessions(is_reviewed="true", has_feedback="true") == ["s2", "s1"]


@pytest.mark.parametrize(
    ("o", "expected"),
    [
        ("-last_active", ["s4", "s3", "s2", "s1"]),
        ("last_active", ["s1", "s2", "s3", "s4"]),
        ("started", ["s1", "s2", "s3", "s4"]),
        ("created", ["s1", "s2", "s3", "s4"]),  # the reference's name: started
        ("-message_count", ["s1", "s2", "s4", "s3"]),  # ties by session_id ascending
        ("message_count,-last_active", ["s3", "s4", "s2", "s1"]),
        ("-total_tokens", ["s2", "s1", "s4", "s3"]),
        ("-max_severity_rank", ["s2", "s4", "s3", "s1"]),
        ("-result_count", ["s4", "s1", "s2", "s3"]),  # offerings_shown 3, 2, 1, 0
    ],
)
def test_orderings(hand: Any, o: str, expected: list[str]) -> None:
    assert [r["session_id"] for r in rows(hand, o=o)] == expected


def test_whole_list_without_page_and_pages_with_headers_with_either(hand: Any) -> None:
    whole = hand.get(CONVERSATIONS, headers=AUTH)
    assert "link" not in whole.headers and len(whole.json()) == 4
    paged = hand.get(CONVERSATIONS, params={"page_size": 3}, headers=AUTH)
    assert paged.headers["x-result-count"] == "4" and len(paged.json()) == 3
    assert 'rel="next"' in paged.headers["link"]
    second = hand.get(CONVERSATIONS, params={"page": 2, "page_size": 3}, headers=AUTH)
    assert [r["session_id"] for r in second.json()] == ["s1"]
    only_page = hand.get(CONVERSATIONS, params={"page": 1}, headers=AUTH)
    assert len(only_page.json()) == 4 and only_page.headers["x-result-count"] == "4"
    past = hand.get(CONVERSATIONS, params={"page": 3, "page_size": 3}, headers=AUTH)
    assert (past.status_code, past.json()) == (404, {"detail": "Invalid page."})
    empty = hand.get(CONVERSATIONS, params={"session_id": "nobody", "page": 1}, headers=AUTH)
    assert (empty.status_code, empty.json(), empty.headers["x-result-count"]) == (200, [], "0")
    head = hand.head(CONVERSATIONS, params={"page_size": 3}, headers=AUTH)
    assert head.status_code == 200 and head.content == b"" and head.headers["x-result-count"] == "4"


def test_kpi_honours_every_conversation_level_filter(hand: Any) -> None:
    def kpi(**params: Any) -> dict[str, Any]:
        return rows(hand, KPI, **params)

    assert kpi(max_severity="critical")["interactions_total"] == 2  # s2, whole
    assert kpi(max_severity="critical", severity="none")["interactions_total"] == 0  # stage 1 leaves t4 (none)
    body = kpi(is_reviewed="true")
    assert (body["sessions_total"], body["interactions_total"], body["reviewed_total"]) == (3, 5, 3)
    assert kpi(last_active_after="2026-11-28")["interactions_total"] == 2
    assert kpi(total_tokens_min=400, is_flagged="true")["interactions_total"] == 0  # flagged parts are small
    assert kpi(total_tokens_min=400)["sessions_total"] == 2
    assert sum(d["count"] for d in kpi(total_tokens_min=400)["daily_volume"]) == 4


def test_a_conversation_only_a_pending_event_names_has_no_row(tmp_path: Path) -> None:
    ghost = turn("ghost", at=at(1, 9), interaction_uuid=uid(99))
    events = [turn("real", at=at(1, 9)), feedback(ghost, 1, at=at(1, 10)), review(ghost, 3, at=at(1, 11))]
    with fresh(tmp_path, events) as client:
        assert [r["session_id"] for r in rows(client)] == ["real"]
        assert rows(client, "/api/anonymous-chat-feedbacks/") == []


# -- bad values, auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "bad"),
    [
        ("input_tokens_min=many", "input_tokens_min"),
        ("input_tokens_max=1e3x", "input_tokens_max"),
        ("output_tokens_min=--1", "output_tokens_min"),
        ("output_tokens_max=nan", "output_tokens_max"),
        ("total_tokens_min=inf", "total_tokens_min"),
        ("total_tokens_max=1.2.3", "total_tokens_max"),
        ("last_active_after=2026-02-30", "last_active_after"),
        ("last_active_before=yesterday", "last_active_before"),
        ("is_reviewed=maybe", "is_reviewed"),
        ("max_severity=HIGH", "max_severity"),
        ("query=" + "+w" * 40, "query"),
    ],
)
@pytest.mark.parametrize("path", [CONVERSATIONS, KPI])
def test_each_bad_conversation_parameter_is_a_400_naming_it(hand: Any, path: str, query: str, bad: str) -> None:
    response = hand.get(f"{path}?{query}", headers=AUTH)
    assert response.status_code == 400
    assert list(response.json()) == [bad]


@pytest.mark.parametrize(("query", "bad"), [("o=uuid", "o"), ("o=-submitted_at", "o"), ("page=0", "page")])
def test_bad_ordering_and_page_of_conversations(hand: Any, query: str, bad: str) -> None:
    response = hand.get(f"{CONVERSATIONS}?{query}", headers=AUTH)
    assert (response.status_code, list(response.json())) == (400, [bad])


def test_the_other_endpoints_ignore_the_conversation_level_names(hand: Any) -> None:
    for path in (f"{PREFIX}/", f"{PREFIX}/by-user/", f"{PREFIX}/by-session/s1/"):
        response = hand.get(path, params={"is_reviewed": "maybe", "total_tokens_min": "x"}, headers=AUTH)
        assert response.status_code == 200, path


def test_conversations_need_a_staff_or_support_token(hand: Any) -> None:
    assert hand.get(CONVERSATIONS).status_code == 401
    assert hand.get(CONVERSATIONS, headers={"Authorization": f"Token {USER}"}).status_code == 403
    support = dict(TOKENS)
    assert support["support-token"] == "support"
    assert hand.get(CONVERSATIONS, headers={"Authorization": "Token support-token"}).status_code == 200


# -- the reference dashboard's own requests ----------------------------------------------------------

# Its conversations call sends exactly these parameters (and the KPI call the same ones): the waldur-js-client
# drops the unset ones and writes the rest as below (dates as YYYY-MM-DD, booleans and numbers as text).
DASHBOARD_EVERY_FILTER = (
    "created_after=2026-11-26&created_before=2026-11-28"
    "&last_active_after=2026-11-26&last_active_before=2026-11-28"
    f"&user_slug={USER_A}&is_flagged=true&severity=high&has_feedback=true&is_reviewed=false"
    "&input_tokens_min=0&input_tokens_max=1000&output_tokens_min=0&output_tokens_max=1000"
    "&total_tokens_min=100&total_tokens_max=2000&query=storage"
)


def test_the_dashboards_first_requests_without_filters(hand: Any) -> None:
    table = hand.get(CONVERSATIONS, headers=AUTH)
    assert [r["session_id"] for r in table.json()] == ["s4", "s3", "s2", "s1"]
    tiles = hand.get(KPI, headers=AUTH).json()
    assert (tiles["sessions_total"], tiles["unique_users"], tiles["interactions_total"]) == (4, 2, 7)
    assert (tiles["reviewed_total"], tiles["review_coverage"]) == (3, 0.75)


def test_the_dashboards_requests_with_every_filter(hand: Any) -> None:
    table = hand.get(f"{CONVERSATIONS}?{DASHBOARD_EVERY_FILTER}", headers=AUTH)
    assert table.status_code == 200
    (row,) = table.json()
    assert (row["session_id"], row["message_count"], row["total_tokens"], row["max_severity"]) == ("s4", 1, 150, "high")
    tiles = hand.get(f"{KPI}?{DASHBOARD_EVERY_FILTER}", headers=AUTH).json()
    assert (tiles["interactions_total"], tiles["sessions_total"], tiles["feedback_negative"]) == (1, 1, 1)
    assert (tiles["input_tokens_total"], tiles["output_tokens_total"], tiles["clicks_total"]) == (70, 80, 1)


@pytest.mark.parametrize(
    ("query", "sessions", "turns"),
    [
        ("query=storage", ["s4", "s1"], 2),  # the search box alone
        ("query=aaaaaaaaaa", ["s4", "s1"], 4),  # the visitor hash, searched together with the text
        ("is_reviewed=true&total_tokens_min=400", ["s2", "s1"], 4),
        ("last_active_before=2026-11-27&has_feedback=false", ["s3", "s2"], 2),
        ("created_after=2026-11-27&severity=none", ["s4", "s2"], 2),
        ("output_tokens_max=100&input_tokens_min=5", ["s4", "s3"], 3),
    ],
)
def test_the_dashboards_requests_with_some_filters(hand: Any, query: str, sessions: list[str], turns: int) -> None:
    table = hand.get(f"{CONVERSATIONS}?{query}", headers=AUTH).json()
    assert [r["session_id"] for r in table] == sessions
    tiles = hand.get(f"{KPI}?{query}", headers=AUTH).json()
    assert tiles["sessions_total"] == len(sessions)
    assert tiles["interactions_total"] == turns == sum(r["message_count"] for r in table)


def test_token_sums_beyond_64_bits_are_exact(tmp_path: Path) -> None:
    """Each event's token count may be any BIGINT; a day's or a conversation's sum of them passes 2^63
    (and 2^64, where JSON encoders stop): the fold must not fail on it, and every answer is exact."""
    big = 2**63 - 1
    today = datetime(2026, 11, 28, 9, tzinfo=UTC)  # the test clock's day, for the budget
    events = [
        turn("s", at=today, input_tokens=big, output_tokens=big),
        turn("s", at=today.replace(hour=10), input_tokens=big, output_tokens=1),
        turn("t", at=today.replace(hour=11), input_tokens=big, output_tokens=0),
        usage(big, big, at=today),
    ]
    with fresh(tmp_path, events) as client:
        conversation = by_session(client)["s"]
        whole = rows(client, KPI)
        narrowed = rows(client, KPI, created_from="2026-11-28")  # the turns themselves, not the day counters
        budget = rows(client, f"{PREFIX}/budget/")
    assert conversation["total_tokens"] == 3 * big + 1
    for kpi in (whole, narrowed):
        assert (kpi["input_tokens_total"], kpi["output_tokens_total"]) == (3 * big, big + 1)
    assert budget["tokens_today"] == 3 * big + (big + 1) + 2 * big
