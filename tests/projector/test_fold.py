"""The fold without a broker: each event type, each dead-letter reason, early events, duplicates,
replacement of feedback and reviews, and the aggregates against values worked out by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from projector.fold import apply_batch
from projector.records import Record
from schemas.readmodel import connect
from tests.support.events import BASE_TIME, click, encode, envelope, feedback, review, to_records, turn, usage

OFFER_A = "0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0a01"
OFFER_B = "0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0a02"


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(tmp_path / "readmodel.duckdb")
    yield c
    c.close()


class Log:
    """A one-partition topic: keeps offsets running across the batches a test folds."""

    def __init__(self, con: duckdb.DuckDBPyConnection, topic: str = "chat.events", partition: int = 0) -> None:
        self.con, self.topic, self.partition, self.next = con, topic, partition, 0

    def fold(self, *events: dict[str, Any] | bytes):  # noqa: ANN201 - BatchStats
        records = to_records(events, topic=self.topic, partition=self.partition, start=self.next)
        self.next += len(records)
        return apply_batch(self.con, records)


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> dict[str, Any]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def interaction(con: duckdb.DuckDBPyConnection, t: dict[str, Any]) -> dict[str, Any]:
    return one(con, "SELECT * FROM interactions WHERE uuid = ?", [t["data"]["interaction_uuid"]])


def dead_letters(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, bytes | None]]:
    return con.execute('SELECT reason, "offset", value FROM dead_letters ORDER BY "offset"').fetchall()


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


# -- turns -----------------------------------------------------------------------------------------


def test_turn_becomes_one_interaction_row_with_every_served_field(con: duckdb.DuckDBPyConnection) -> None:
    blocks = [
        {"type": "text", "text": "Try these"},
        {"type": "offerings", "items": [{"name": "GPU cluster", "tags": ["hpc", "ml"]}], "n": 2},
        {"type": "ask_user", "question": "Which region?"},
    ]
    t = turn(
        "sess-1",
        at=datetime.fromisoformat("2026-11-26T23:30:00-02:00"),
        user_slug="slug-a",
        user_input="x" * 2500,
        assistant_blocks=blocks,
        offering_uuids=[OFFER_A.upper(), OFFER_B],
        severity="",
        injection_categories=["jailbreak"],
        pii_categories=["email"],
        action_taken="warn",
        warning="careful",
        ip_address="2001:DB8::0001",
        input_tokens=120,
        output_tokens=80,
    )
    stats = Log(con).fold(t)
    assert stats.applied == {"chat.turn.recorded": 1}
    row = interaction(con, t)
    assert row["session_id"] == "sess-1"
    assert row["user_slug"] == "slug-a"
    assert row["user_input"] == "x" * 2000
    assert json.loads(row["assistant_blocks"]) == blocks
    # user_input, then the text blocks only (offerings and forms are not searched); stemmed
    assert row["search_terms"] == f" {'x' * 2000} tri _ "
    assert row["model"] == ""
    assert json.loads(row["offering_uuids"]) == [OFFER_A, OFFER_B]
    assert row["result_count"] == 2
    assert row["is_flagged"] is False
    assert row["severity"] == "none"
    assert json.loads(row["injection_categories"]) == ["jailbreak"]
    assert json.loads(row["pii_categories"]) == ["email"]
    assert (row["action_taken"], row["warning"]) == ("warn", "careful")
    assert row["ip_address"] == "2001:db8::1"
    # 23:30 at -02:00 is 01:30 UTC the next day
    assert row["created"] == datetime(2026, 11, 27, 1, 30)
    assert row["created_date"] == date(2026, 11, 27)
    assert row["last_active_at"] == row["created"]
    assert (row["input_tokens"], row["output_tokens"]) == (120, 80)
    assert row["is_clarification"] is True
    assert row["click_count"] == 0
    assert row["fb_score"] is None and row["fb_comment"] == "" and row["fb_submitted_at"] is None
    assert row["llm_reviewed_at"] is None and row["llm_intent_category"] == ""
    assert row["llm_hallucination_detected"] is False and row["llm_summary"] == ""
    assert str(row["event_id"]) == t["event_id"]
    assert (row["source_partition"], row["source_offset"]) == (0, 0)


def test_search_terms_are_the_stems_of_the_searched_blocks_and_json_is_compact(
    con: duckdb.DuckDBPyConnection,
) -> None:
    t = turn(
        user_input="Resizing volumes",
        assistant_blocks=[
            {"kind": "x", "deep": [[{"k": "needle"}]]},
            5,
            None,
            "tail",
            {"key": "markdown", "content": "Extend the disk"},
            {"key": "code", "tag": "bash", "content": "openstack volume set"},
            {"key": "mermaid", "content": "graph"},
            {"key": "homeport_nav", "content": "hidden"},
        ],
        last_active_at="2026-11-26T10:00:00Z",
        model="gpt-x",
    )
    Log(con).fold(t)
    row = interaction(con, t)
    assert row["search_terms"] == " resiz volum extend _ disk bash openstack volum set mermaid graph "
    assert row["model"] == "gpt-x"
    assert row["assistant_blocks"].startswith('[{"kind":"x","deep":[[{"k":"needle"}]]},5,null,"tail",')
    assert row["is_clarification"] is False
    assert row["last_active_at"] == datetime(2026, 11, 26, 10, 0)
    assert row["ip_address"] is None


@pytest.mark.parametrize(
    ("blocks", "asks"),
    [
        ([{"type": "ask_user", "question": "Which region?"}], True),
        ([{"key": "markdown", "content": "Which one?"}, {"key": "ask_user_form", "fields": []}], True),
        ([{"key": "tool", "tool": {"name": "ask_user", "input": {}}}], True),
        ([{"key": "tool", "tool": {"name": "search"}, "result": {"key": "ask_user_form"}}], True),
        ([{"key": "tool", "tool": {"name": "search"}, "result": [{"key": "code"}, {"key": "ask_user_form"}]}], True),
        ([{"key": "tool", "tool": {"name": "search"}, "result": {"key": "markdown", "content": "ask_user"}}], False),
        ([{"key": "markdown", "content": "ask_user_form"}, {"type": "text", "text": "ask_user"}], False),
        ([{"key": "tool", "tool": "ask_user"}, "ask_user", None], False),
    ],
)
def test_a_turn_is_a_clarification_when_a_block_asks_the_visitor(
    con: duckdb.DuckDBPyConnection, blocks: list[Any], asks: bool
) -> None:
    t = turn(assistant_blocks=blocks)
    Log(con).fold(t)
    assert interaction(con, t)["is_clarification"] is asks
    (clarifications,) = con.execute("SELECT sum(clarifications) FROM daily_counters").fetchone()
    assert clarifications == int(asks)


@pytest.mark.parametrize(
    "spelling", [b"\\u0061sk_user", b"ask\\u005fuser", b"\\u0061\\u0073\\u006b\\u005f\\u0075\\u0073\\u0065\\u0072"]
)
def test_a_block_that_asks_through_escapes_is_a_clarification_too(
    con: duckdb.DuckDBPyConnection, spelling: bytes
) -> None:
    # The fold looks at a turn's blocks only when its raw value can spell `ask_user`: escapes count.
    t = turn(assistant_blocks=[{"key": "markdown", "content": "Which one?"}, {"type": "ask_user"}])
    value = encode(t)
    assert value.count(b'"ask_user"') == 1
    escaped = value.replace(b'"ask_user"', b'"' + spelling + b'"')
    assert b"ask_user" not in escaped
    Log(con).fold(escaped)
    assert interaction(con, t)["is_clarification"] is True


def test_integers_beyond_64_bits_in_blocks_are_kept_as_given(con: duckdb.DuckDBPyConnection) -> None:
    t = turn(assistant_blocks=[{"n": 12345678901234567890123}])
    Log(con).fold(t)
    assert interaction(con, t)["assistant_blocks"] == '[{"n":12345678901234567890123}]'


def test_second_turn_for_an_interaction_is_a_duplicate_interaction_and_the_first_stands(
    con: duckdb.DuckDBPyConnection,
) -> None:
    first = turn(user_input="first")
    same_batch = turn(interaction_uuid=first["data"]["interaction_uuid"], user_input="second")
    later = turn(interaction_uuid=first["data"]["interaction_uuid"], user_input="third")
    log = Log(con)
    log.fold(first, same_batch)
    log.fold(later)
    assert interaction(con, first)["user_input"] == "first"
    assert [(r, o) for r, o, _ in dead_letters(con)] == [("duplicate_interaction", 1), ("duplicate_interaction", 2)]
    assert count(con, "daily_counters") == 1
    assert one(con, "SELECT turns FROM daily_counters")["turns"] == 1


# -- feedback ----------------------------------------------------------------------------------------


def test_later_feedback_replaces_earlier_and_keeps_the_review(con: duckdb.DuckDBPyConnection) -> None:
    t = turn(user_slug="u")
    log = Log(con)
    log.fold(t, review(t, 3, at=BASE_TIME + timedelta(minutes=1), summary="ok"))
    log.fold(feedback(t, -1, "incomplete", comment="meh", ip_address="10.0.0.1", at=BASE_TIME + timedelta(minutes=2)))
    row = interaction(con, t)
    assert (row["fb_score"], row["fb_category"], row["fb_comment"], row["fb_ip"]) == (
        -1,
        "incomplete",
        "meh",
        "10.0.0.1",
    )
    assert row["fb_submitted_at"] == datetime(2026, 11, 26, 9, 2)
    log.fold(feedback(t, 1, at=BASE_TIME + timedelta(minutes=3)))
    row = interaction(con, t)
    assert (row["fb_score"], row["fb_category"], row["fb_comment"], row["fb_ip"]) == (1, None, "", None)
    assert row["fb_submitted_at"] == datetime(2026, 11, 26, 9, 3)
    assert (row["llm_resolution_score"], row["llm_summary"]) == (3, "ok")
    stats = one(con, "SELECT * FROM user_stats WHERE user_slug = 'u'")
    assert (stats["positive_feedback"], stats["negative_feedback"], stats["no_feedback"]) == (1, 0, 0)


def test_last_feedback_in_log_order_wins_within_one_batch(con: duckdb.DuckDBPyConnection) -> None:
    t = turn()
    # occurred_at deliberately runs backwards: log order decides, not timestamps
    Log(con).fold(
        t,
        feedback(t, 1, at=BASE_TIME + timedelta(minutes=9)),
        feedback(t, -1, "other", at=BASE_TIME + timedelta(minutes=1)),
    )
    assert interaction(con, t)["fb_score"] == -1


def test_feedback_naming_another_session_is_a_session_mismatch(con: duckdb.DuckDBPyConnection) -> None:
    t = turn("s-a")
    bad = feedback(t, 1, session_id="s-b")
    Log(con).fold(t, bad)
    assert interaction(con, t)["fb_score"] is None
    assert dead_letters(con) == [("session_mismatch", 1, encode(bad))]
    detail = one(con, "SELECT detail FROM dead_letters")["detail"]
    assert "session_id" in detail and "s-a" in detail


# -- reviews -----------------------------------------------------------------------------------------


def test_review_sets_llm_fields_keeps_feedback_and_later_review_replaces(con: duckdb.DuckDBPyConnection) -> None:
    t = turn("s1")
    log = Log(con)
    log.fold(t, feedback(t, -1, "misunderstood", comment="no"))
    log.fold(
        review(
            t,
            2,
            intent_category="billing",
            hallucination_detected=True,
            hallucination_details="made up a price",
            summary="bad",
            judge_model="judge-1",
            judge_input_tokens=1000,
            judge_output_tokens=50,
            at=BASE_TIME + timedelta(hours=1),
        )
    )
    row = interaction(con, t)
    assert (row["fb_score"], row["fb_category"], row["fb_comment"]) == (-1, "misunderstood", "no")
    assert row["llm_resolution_score"] == 2
    assert row["llm_intent_category"] == "billing"
    assert row["llm_hallucination_detected"] is True
    assert row["llm_hallucination_details"] == "made up a price"
    assert (row["llm_summary"], row["llm_judge_model"]) == ("bad", "judge-1")
    assert (row["llm_input_tokens"], row["llm_output_tokens"]) == (1000, 50)
    assert row["llm_reviewed_at"] == datetime(2026, 11, 26, 10, 0)
    log.fold(review(t, 5, intent_category="", at=BASE_TIME + timedelta(hours=2)))
    row = interaction(con, t)
    assert (row["llm_resolution_score"], row["llm_intent_category"], row["llm_hallucination_detected"]) == (
        5,
        "",
        False,
    )
    assert (row["llm_hallucination_details"], row["llm_input_tokens"]) == ("", 0)
    assert row["fb_score"] == -1
    assert one(con, "SELECT reviewed_turns FROM sessions WHERE session_id = 's1'")["reviewed_turns"] == 1


def test_review_of_a_turn_of_another_session_is_a_session_mismatch(con: duckdb.DuckDBPyConnection) -> None:
    t = turn("s1")
    Log(con).fold(t, review(t, 4, session_id="s2"))
    assert interaction(con, t)["llm_reviewed_at"] is None
    assert [r for r, _, _ in dead_letters(con)] == ["session_mismatch"]


# -- clicks ------------------------------------------------------------------------------------------


def test_every_click_counts_and_unknown_offerings_are_dead_lettered(con: duckdb.DuckDBPyConnection) -> None:
    t = turn("s1", offering_uuids=[OFFER_A, OFFER_B])
    log = Log(con)
    log.fold(t, click(t, OFFER_A), click(t, OFFER_A))
    log.fold(click(t, OFFER_B), click(t, "0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0aff"), click(t, OFFER_A, session_id="x"))
    assert interaction(con, t)["click_count"] == 3
    assert con.execute("SELECT offering_uuid::VARCHAR, session_id FROM clicks ORDER BY 1").fetchall() == [
        (OFFER_A, "s1"),
        (OFFER_A, "s1"),
        (OFFER_B, "s1"),
    ]
    assert [(r, o) for r, o, _ in dead_letters(con)] == [("unknown_offering", 4), ("session_mismatch", 5)]
    assert one(con, "SELECT clicks FROM daily_counters")["clicks"] == 3


# -- usage -------------------------------------------------------------------------------------------


def test_usage_counts_on_its_own_day_and_nowhere_else(con: duckdb.DuckDBPyConnection) -> None:
    log = Log(con)
    t = turn(input_tokens=10, output_tokens=20)
    log.fold(t, usage(100, 7, source="authenticated_chat", at=BASE_TIME + timedelta(days=1)), usage(1, 2))
    assert con.execute("SELECT day, input_tokens, output_tokens, source FROM usage_events ORDER BY day").fetchall() == [
        (date(2026, 11, 26), 1, 2, ""),
        (date(2026, 11, 27), 100, 7, "authenticated_chat"),
    ]
    days = con.execute(
        "SELECT day, turns, turn_input_tokens, turn_output_tokens,"
        " usage_input_tokens, usage_output_tokens, usage_events"
        " FROM daily_counters ORDER BY day"
    ).fetchall()
    assert days == [(date(2026, 11, 26), 1, 10, 20, 1, 2, 1), (date(2026, 11, 27), 0, 0, 0, 100, 7, 1)]
    assert count(con, "interactions") == 1 and count(con, "user_stats") == 0


# -- parse-level dead letters --------------------------------------------------------------------------


def test_every_parse_reason_is_dead_lettered_with_raw_bytes_and_the_fold_goes_on(
    con: duckdb.DuckDBPyConnection,
) -> None:
    good = turn()
    bad_data = turn()
    bad_data["data"]["severity"] = "extreme"
    values: list[bytes] = [
        b"{not json",
        encode({"type": "chat.turn.recorded", "version": 1, "data": {}}),
        encode(envelope("chat.mood.recorded", {"x": 1})),
        encode({**turn(), "version": 2}),
        encode(bad_data),
        encode(good),
    ]
    records = [Record("chat.events", 3, 40 + i, b"k", v, 1_764_000_000_000) for i, v in enumerate(values)]
    records.append(Record("chat.events", 3, 46, b"k", None, None))
    stats = apply_batch(con, records)
    assert stats.applied == {"chat.turn.recorded": 1}
    rows = con.execute(
        'SELECT reason, partition, "offset", key, value, event_id, type, record_timestamp, detail'
        ' FROM dead_letters ORDER BY "offset"'
    ).fetchall()
    assert [r[0] for r in rows] == [
        "invalid_json",
        "invalid_envelope",
        "unknown_type",
        "unsupported_version",
        "invalid_data",
        "invalid_json",
    ]
    assert [r[4] for r in rows] == [*values[:5], None]
    assert all(r[1] == 3 and r[3] == b"k" for r in rows[:5])
    assert rows[4][5] == bad_data["event_id"] and rows[4][6] == "chat.turn.recorded" and "severity" in rows[4][8]
    assert rows[0][7] == datetime(2025, 11, 24, 16, 0)
    assert count(con, "interactions") == 1
    assert con.execute("SELECT topic, partition, next_offset FROM offsets").fetchall() == [("chat.events", 3, 47)]


def test_a_counter_too_large_for_its_column_is_invalid_data_not_a_stuck_fold(con: duckdb.DuckDBPyConnection) -> None:
    huge = turn(input_tokens=2**64)
    ok = turn()
    Log(con).fold(huge, ok)
    assert [r for r, _, _ in dead_letters(con)] == ["invalid_data"]
    assert count(con, "interactions") == 1


# -- early events ------------------------------------------------------------------------------------


def test_early_events_wait_and_apply_in_log_order_when_their_turn_arrives(con: duckdb.DuckDBPyConnection) -> None:
    t = turn("s1", user_slug="u", offering_uuids=[OFFER_A])
    log = Log(con)
    stats = log.fold(feedback(t, 1), review(t, 2), click(t, OFFER_A))
    assert stats.pending_added == 3 and not stats.applied
    log.fold(feedback(t, -1, "slow_or_failed"), usage(1, 1))
    assert count(con, "pending_events") == 4
    assert con.execute("SELECT type FROM pending_events ORDER BY seq").fetchall() == [
        ("chat.feedback.submitted",),
        ("chat.session.reviewed",),
        ("chat.offering.clicked",),
        ("chat.feedback.submitted",),
    ]
    stats = log.fold(t)
    assert stats.pending_resolved == 4
    assert stats.applied == {
        "chat.turn.recorded": 1,
        "chat.feedback.submitted": 2,
        "chat.session.reviewed": 1,
        "chat.offering.clicked": 1,
    }
    row = interaction(con, t)
    assert (row["fb_score"], row["fb_category"], row["llm_resolution_score"], row["click_count"]) == (
        -1,
        "slow_or_failed",
        2,
        1,
    )
    assert count(con, "pending_events") == 0
    day = one(con, "SELECT feedback_up, feedback_down, reviewed, review_score_sum, clicks FROM daily_counters")
    assert day == {"feedback_up": 0, "feedback_down": 1, "reviewed": 1, "review_score_sum": 2, "clicks": 1}


def test_early_event_in_the_same_batch_as_its_turn_applies(con: duckdb.DuckDBPyConnection) -> None:
    t = turn()
    stats = Log(con).fold(feedback(t, 1), t)
    assert stats.pending_added == 0
    assert interaction(con, t)["fb_score"] == 1


def test_waiting_events_that_mismatch_are_dead_lettered_when_the_turn_arrives(con: duckdb.DuckDBPyConnection) -> None:
    t = turn("s1", offering_uuids=[OFFER_A])
    wrong_session = feedback(t, 1, session_id="s9")
    wrong_offer = click(t, OFFER_B)
    log = Log(con)
    log.fold(wrong_session, wrong_offer)
    assert dead_letters(con) == []
    assert count(con, "pending_events") == 2
    log.fold(t)
    assert dead_letters(con) == [
        ("session_mismatch", 0, encode(wrong_session)),
        ("unknown_offering", 1, encode(wrong_offer)),
    ]
    assert count(con, "pending_events") == 0
    assert interaction(con, t)["fb_score"] is None
    rts = one(con, "SELECT min(record_timestamp) AS ts FROM dead_letters")["ts"]
    assert rts == datetime(2025, 11, 24, 16, 0)


# -- duplicates --------------------------------------------------------------------------------------


def test_duplicate_event_ids_are_skipped_in_the_same_batch_and_across_batches(con: duckdb.DuckDBPyConnection) -> None:
    t = turn(offering_uuids=[OFFER_A])
    c = click(t, OFFER_A)
    u = usage(5, 5)
    log = Log(con)
    stats = log.fold(t, c, c, u, u)
    assert stats.duplicates == 2
    stats = log.fold(c, u, t)
    assert stats.duplicates == 3 and not stats.applied and not stats.dead_letters
    assert interaction(con, t)["click_count"] == 1
    assert count(con, "usage_events") == 1
    assert one(con, "SELECT usage_input_tokens, usage_events FROM daily_counters") == {
        "usage_input_tokens": 5,
        "usage_events": 1,
    }
    assert dead_letters(con) == []


def test_duplicate_of_a_waiting_event_does_not_apply_twice(con: duckdb.DuckDBPyConnection) -> None:
    t = turn(offering_uuids=[OFFER_A])
    c = click(t, OFFER_A)
    log = Log(con)
    log.fold(c)
    log.fold(c)
    log.fold(t, c)
    assert interaction(con, t)["click_count"] == 1
    assert count(con, "clicks") == 1


def test_a_redelivered_record_below_the_stored_offset_is_ignored(con: duckdb.DuckDBPyConnection) -> None:
    # Same offset, different event: only the position says it was already folded.
    first = to_records([usage(1, 1)], start=0)
    again = to_records([usage(2, 2), usage(3, 3)], start=0)
    apply_batch(con, first)
    stats = apply_batch(con, again)
    assert stats.skipped_below_offset == 1
    assert sorted(r[0] for r in con.execute("SELECT input_tokens FROM usage_events").fetchall()) == [1, 3]
    assert con.execute("SELECT next_offset FROM offsets").fetchall() == [(2,)]


def test_offsets_are_the_next_offset_of_every_partition_touched(con: duckdb.DuckDBPyConnection) -> None:
    records = [
        *to_records([usage(1, 1), usage(1, 1)], partition=0, start=10),
        *to_records([usage(1, 1)], partition=2, start=5),
        *to_records([b"junk"], topic="other", partition=0, start=0),
    ]
    apply_batch(con, records)
    assert con.execute("SELECT * FROM offsets ORDER BY ALL").fetchall() == [
        ("chat.events", 0, 12),
        ("chat.events", 2, 6),
        ("other", 0, 1),
    ]


def test_a_failing_batch_leaves_no_trace(con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    from projector import aggregates

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("crash in the middle of a batch")

    Log(con).fold(usage(1, 1))
    monkeypatch.setattr(aggregates, "refresh", boom)
    with pytest.raises(RuntimeError):
        apply_batch(con, to_records([turn(), usage(2, 2)], start=1))
    assert count(con, "interactions") == 0 and count(con, "usage_events") == 1 and count(con, "applied_events") == 1
    assert con.execute("SELECT next_offset FROM offsets").fetchall() == [(1,)]


# -- aggregates --------------------------------------------------------------------------------------


def test_user_stats_match_hand_computed_counters(con: duckdb.DuckDBPyConnection) -> None:
    day = BASE_TIME
    a1 = turn("s1", user_slug="alice", at=day, action_taken="block")
    a2 = turn("s1", user_slug="alice", at=day + timedelta(minutes=5), action_taken="redact")
    a3 = turn("s2", user_slug="alice", at=day + timedelta(days=2), action_taken="warn")
    a4 = turn("s3", user_slug="alice", at=day + timedelta(days=1))
    b1 = turn("s4", user_slug="bob", at=day)
    anon = turn("s5", user_slug="", at=day)
    log = Log(con)
    log.fold(a1, a2, b1, anon, feedback(a1, 1), feedback(a2, -1, "other"))
    log.fold(a3, a4, feedback(a3, 1), feedback(a1, -1, "inaccurate"), feedback(b1, 1))
    rows = con.execute("SELECT * FROM user_stats ORDER BY user_slug").fetchall()
    assert rows == [
        ("alice", datetime(2026, 11, 28, 9, 0), 4, 3, 1, 2, 1, 2),
        ("bob", datetime(2026, 11, 26, 9, 0), 1, 1, 1, 0, 0, 0),
    ]


def test_daily_counters_match_hand_computed_values(con: duckdb.DuckDBPyConnection) -> None:
    d1 = BASE_TIME
    d2 = BASE_TIME + timedelta(days=1)
    t1 = turn("s1", at=d1, severity="high", is_flagged=True, input_tokens=3, output_tokens=4, offering_uuids=[OFFER_A])
    t2 = turn("s1", at=d1, assistant_blocks=[{"type": "ask_user"}], input_tokens=1)
    t3 = turn("s2", at=d2, severity="low", is_flagged=True)
    log = Log(con)
    log.fold(t1, t2, t3, usage(50, 60, at=d2))
    # events on d2 about a d1 turn count on d1
    log.fold(
        click(t1, OFFER_A, at=d2),
        click(t1, OFFER_A, at=d2),
        feedback(t1, -1, "other", at=d2),
        feedback(t2, 1, at=d2),
        review(t2, 4, hallucination_detected=True, judge_input_tokens=7, judge_output_tokens=9, at=d2),
        review(t3, 2, at=d2),
    )
    rows = con.execute("SELECT * EXCLUDE (day) FROM daily_counters ORDER BY day").fetchall()
    cols = [d[0] for d in con.execute("SELECT * EXCLUDE (day) FROM daily_counters").description]
    got = [dict(zip(cols, r, strict=True)) for r in rows]
    zero = dict.fromkeys(cols, 0)
    assert got[0] == {
        **zero,
        "turns": 2,
        "sessions_started": 1,
        "flagged": 1,
        "severity_none": 1,
        "severity_high": 1,
        "clicks": 2,
        "feedback_up": 1,
        "feedback_down": 1,
        "clarifications": 1,
        "turn_input_tokens": 4,
        "turn_output_tokens": 4,
        "reviewed": 1,
        "review_score_sum": 4,
        "hallucinations": 1,
        "review_input_tokens": 7,
        "review_output_tokens": 9,
    }
    assert got[1] == {
        **zero,
        "turns": 1,
        "sessions_started": 1,
        "flagged": 1,
        "severity_low": 1,
        "usage_input_tokens": 50,
        "usage_output_tokens": 60,
        "usage_events": 1,
        "reviewed": 1,
        "review_score_sum": 2,
    }


def test_counters_follow_a_review_feedback_and_clicks_replaced_in_later_batches(
    con: duckdb.DuckDBPyConnection,
) -> None:
    t = turn("s1", user_slug="carol", offering_uuids=[OFFER_A], input_tokens=2, output_tokens=3)
    log = Log(con)
    log.fold(t, review(t, 5, hallucination_detected=True, judge_input_tokens=10, judge_output_tokens=20))
    log.fold(feedback(t, 1), click(t, OFFER_A))
    log.fold(review(t, 2, judge_input_tokens=1, judge_output_tokens=2), feedback(t, -1, "other"), click(t, OFFER_A))
    day = one(con, "SELECT * FROM daily_counters")
    assert (day["turns"], day["clicks"], day["feedback_up"], day["feedback_down"]) == (1, 2, 0, 1)
    assert (day["reviewed"], day["review_score_sum"], day["hallucinations"]) == (1, 2, 0)
    assert (day["review_input_tokens"], day["review_output_tokens"]) == (1, 2)
    assert (day["turn_input_tokens"], day["turn_output_tokens"]) == (2, 3)
    user = one(con, "SELECT * FROM user_stats")
    assert (user["total_interactions"], user["positive_feedback"], user["negative_feedback"]) == (1, 0, 1)
    assert user["no_feedback"] == 0


def test_an_older_turn_arriving_late_moves_the_sessions_first_day(con: duckdb.DuckDBPyConnection) -> None:
    late = turn("s1", user_slug="early-bird", at=BASE_TIME - timedelta(days=1))
    log = Log(con)
    log.fold(turn("s1", user_slug="second", at=BASE_TIME))
    assert con.execute("SELECT day, sessions_started FROM daily_counters").fetchall() == [(date(2026, 11, 26), 1)]
    log.fold(late)
    assert con.execute("SELECT day, turns, sessions_started FROM daily_counters ORDER BY day").fetchall() == [
        (date(2026, 11, 25), 1, 1),
        (date(2026, 11, 26), 1, 0),
    ]
    assert one(con, "SELECT * FROM sessions") == {
        "session_id": "s1",
        "user_slug": "early-bird",
        "first_created": datetime(2026, 11, 25, 9, 0),
        "last_created": datetime(2026, 11, 26, 9, 0),
        "turns": 2,
        "reviewed_turns": 0,
    }


def test_applied_events_hold_every_accepted_event_id(con: duckdb.DuckDBPyConnection) -> None:
    t = turn()
    early = feedback(turn(), 1)
    mismatch = feedback(t, 1, session_id="zz")
    Log(con).fold(t, early, mismatch, b"[]")
    ids = {str(r[0]) for r in con.execute("SELECT event_id FROM applied_events").fetchall()}
    assert ids == {t["event_id"], early["event_id"], mismatch["event_id"]}
    assert orjson.loads(con.execute("SELECT value FROM pending_events").fetchall()[0][0]) == early


def test_batches_merged_into_one_transaction_give_the_tables_of_applying_them_one_by_one(tmp_path: Path) -> None:
    from projector.fold import apply_prepared, merge_prepared, prepare
    from projector.snapshot import diff, table_rows
    from tests.support.events import stream

    events = list(stream(1200, seed=11, sessions=25))  # duplicates, early dependents and bad values among them
    chunks = [
        to_records(events[i : i + 300], topic="t", partition=i // 600, start=i % 600) for i in range(0, 1200, 300)
    ]
    one_by_one = connect(tmp_path / "one-by-one.duckdb")
    merged = connect(tmp_path / "merged.duckdb")
    try:
        for chunk in chunks:
            apply_prepared(one_by_one, prepare(chunk))
        apply_prepared(merged, merge_prepared([prepare(chunk) for chunk in chunks[:3]]))
        apply_prepared(merged, merge_prepared([prepare(chunks[3])]))
        assert diff(table_rows(one_by_one), table_rows(merged)) == {}
        assert count(merged, "dead_letters") > 0
    finally:
        one_by_one.close()
        merged.close()
