"""Erasure and retention in the fold, without a broker (real DuckDB files): what leaves, what stays,
what arrives late, and that any order of arrival ends in the tables of one clean fold.

The broker-backed versions (serve, the admin endpoint, a rebuild from the topic) are in
tests/ops/test_privacy_live.py; the property test over random logs is in tests/projector/test_fold_property.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from api import queries
from api.params import ConversationFilters, Filters
from projector import forget
from projector.fold import apply_batch
from projector.records import Record
from projector.snapshot import diff, table_rows
from schemas.readmodel import OTHER_TABLES, TURN_TABLES, connect
from tests.support.events import (
    BASE_TIME,
    click,
    encode,
    erasure,
    feedback,
    key_of,
    review,
    to_records,
    turn,
    usage,
)
from tests.support.kept import kept_and_copied_records, kept_and_recomputed
from tests.support.privacy import (
    IP,
    OFFER,
    OTHER,
    TODAY,
    VISITOR,
    everything_stored,
    spanning_days,
    visitor_story,
)

EVERYTHING = Filters(created_from=date(1, 1, 1))  # a filter that keeps every turn: by-user scans the turns
# A conversation-level filter alone: the KPI sums the kept conversation rows (`over_turns`: from the turns).
NARROWED = ConversationFilters(total_tokens_min=0)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(tmp_path / "rm.duckdb")
    yield c
    c.close()


def test_every_table_is_either_per_turn_or_says_why_not(con: duckdb.DuckDBPyConnection) -> None:
    tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert tables == set(TURN_TABLES) | set(OTHER_TABLES), "classify the new table in schemas/readmodel.py"
    assert not set(TURN_TABLES) & set(OTHER_TABLES)
    columns = con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall()
    for table, column in TURN_TABLES.items():
        assert (table, column) in columns
    # A table with a column naming a turn holds rows of a turn: an erasure must reach it.
    naming_a_turn = {t for t, c in columns if c in ("uuid", "interaction_uuid")}
    assert naming_a_turn - set(TURN_TABLES) == {"erased_interactions"}


# -- erasure ----------------------------------------------------------------------------------------


def partitioned_log(events: list[dict[str, Any] | bytes], partitions: int = 3) -> list[list[Record]]:
    """Keyed as the publisher keys them (an erasure of a user by the user): often another partition."""
    out: list[list[Record]] = [[] for _ in range(partitions)]
    for i, event in enumerate(events):
        key = key_of(event) if isinstance(event, dict) else b"sess-bad"
        p = sum(key or b"") % partitions
        out[p].append(Record("chat.events", p, len(out[p]), key, encode(event), 1_764_000_000_000 + i))
    return out


def fold_interleaved(con: duckdb.DuckDBPyConnection, log: list[list[Record]], batch: int) -> None:
    """Round-robin over the partitions, `batch` records a transaction."""
    merged: list[Record] = []
    cursors = [0] * len(log)
    while any(c < len(p) for c, p in zip(cursors, log, strict=True)):
        for p, records in enumerate(log):
            if cursors[p] < len(records):
                merged.append(records[cursors[p]])
                cursors[p] += 1
    for i in range(0, len(merged), batch):
        apply_batch(con, merged[i : i + batch])


def test_an_erased_visitor_leaves_no_trace_and_later_turns_stay(tmp_path: Path) -> None:
    events, story = visitor_story()
    log = partitioned_log(events)
    assert sum(bool(p) for p in log) >= 2, "the story must span partitions"
    con = connect(tmp_path / "rm.duckdb")
    before = connect(tmp_path / "before.duckdb")
    # The budget before: the same events without the erasure.
    apply_batch(before, to_records([e for e in events if e is not story["erase"]]))
    fold_interleaved(con, log, batch=2)

    text = everything_stored(con)
    for secret in ("SECRET", IP, "198.51.100.4", "sess-a", "sess-b", "sess-c"):
        assert secret not in text, secret
    assert con.execute("SELECT count(*) FROM pending_events").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
    # The visitor's turn after the erasure, and the other visitor, stay with their counters.
    rows = con.execute("SELECT session_id, user_slug, fb_score FROM interactions ORDER BY session_id").fetchall()
    assert rows == [("sess-d", VISITOR, 1), ("sess-o", OTHER, 1)]
    assert con.execute("SELECT user_slug, total_interactions, session_count FROM user_stats ORDER BY 1").fetchall() == [
        (OTHER, 1, 1),
        (VISITOR, 1, 1),
    ]
    assert con.execute("SELECT session_id FROM sessions ORDER BY 1").fetchall() == [("sess-d",), ("sess-o",)]
    assert con.execute("SELECT count(*) FROM clicks").fetchone() == (0,)
    # The erasure record, without any of the erased data; the four turns it covered.
    assert con.execute("SELECT key_kind, key, reason, rows_removed FROM erasures").fetchall() == [
        ("user_slug", VISITOR, "visitor asked", 4)
    ]
    # Every aggregate equals a scan of the turns that are left; the budget is what it was.
    day = BASE_TIME.date()
    assert queries.kpi(con, Filters(), day, 30) == queries.kpi(con, Filters(), day, 30, over_turns=True)
    assert queries.kpi(con, EVERYTHING, day, 30) == queries.kpi(con, EVERYTHING, day, 30, over_turns=True)
    assert queries.kpi(con, Filters(), day, 30, NARROWED) == queries.kpi(
        con, Filters(), day, 30, NARROWED, over_turns=True
    )
    kept, fresh = kept_and_recomputed(con)
    assert kept == fresh and {s for s, *_ in kept} == {"sess-d", "sess-o"}
    kept_records, copied = kept_and_copied_records(con)
    assert kept_records == copied and len(kept_records) == 2  # the feedback of the two turns left
    assert queries.list_users(con, Filters(), None).rows == queries.list_users(con, EVERYTHING, None).rows
    now = datetime.combine(BASE_TIME.date(), datetime.min.time(), UTC) + timedelta(hours=12)
    assert queries.budget(con, now, 0) == queries.budget(before, now, 0)
    assert queries.budget(con, now, 0)["tokens_today"] == 40 + 7 + 3 + 150

    # In one clean batch, the same tables.
    clean = connect(tmp_path / "clean.duckdb")
    apply_batch(clean, [r for part in log for r in part])
    assert diff(table_rows(clean), table_rows(con)) == {}


def test_feedback_arriving_for_a_turn_an_erasure_removed_is_dropped_not_parked(con: duckdb.DuckDBPyConnection) -> None:
    t = turn("sess-x", user_slug=VISITOR, user_input="SECRET")
    apply_batch(con, to_records([t, erasure(session_id="sess-x", at=BASE_TIME + timedelta(minutes=1))]))
    stats = apply_batch(con, to_records([feedback(t, -1, "other", comment="SECRET-2"), click(t, OFFER)], start=2))
    assert stats.erased_events == 2 and not stats.dead_letters and not stats.pending_added
    assert "SECRET" not in everything_stored(con)
    # counted as settled, as they would be had they come before the erasure
    applied = dict(con.execute("SELECT type, events FROM applied_counts").fetchall())
    assert applied["chat.feedback.submitted"] == 1 and applied["chat.offering.clicked"] == 1


def test_a_turn_that_occurred_after_the_erasure_is_new_data(con: duckdb.DuckDBPyConnection) -> None:
    apply_batch(con, to_records([erasure(session_id="sess-x", at=BASE_TIME)]))
    after = turn("sess-x", at=BASE_TIME + timedelta(seconds=1), user_slug=VISITOR)
    same_instant = turn("sess-x", at=BASE_TIME, user_slug=VISITOR)
    apply_batch(con, to_records([after, same_instant], start=1))
    assert con.execute("SELECT uuid::VARCHAR FROM interactions").fetchall() == [(after["data"]["interaction_uuid"],)]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"user_slug": VISITOR, "session_id": "sess-x"}, "exactly one"),
        ({}, "exactly one"),
        ({"session_id": "sess-x", "reason": "x" * 501}, "data.reason"),
        ({"user_slug": ""}, "data.user_slug"),
    ],
)
def test_bad_erasures_are_invalid_data_and_erase_nothing(
    con: duckdb.DuckDBPyConnection, data: dict[str, Any], field: str
) -> None:
    t = turn("sess-x", user_slug=VISITOR)
    apply_batch(con, to_records([t, erasure(**data)]))
    assert con.execute("SELECT reason, detail FROM dead_letters").fetchall()[0][0] == "invalid_data"
    assert field in con.execute("SELECT detail FROM dead_letters").fetchone()[0]
    assert con.execute("SELECT count(*) FROM interactions").fetchone() == (1,)
    assert con.execute("SELECT count(*) FROM erasures").fetchone() == (0,)


def test_a_dead_letter_of_a_bad_erasure_goes_when_a_good_one_erases_its_visitor(con: duckdb.DuckDBPyConnection) -> None:
    apply_batch(con, to_records([erasure(user_slug=VISITOR, session_id="sess-x", reason="SECRET")]))
    assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)
    apply_batch(con, to_records([erasure(user_slug=VISITOR, at=BASE_TIME + timedelta(hours=1))], start=1))
    assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)


# -- retention --------------------------------------------------------------------------------------


def test_the_purge_leaves_the_last_days_and_aggregates_equal_a_scan(tmp_path: Path) -> None:
    events = spanning_days()
    live = connect(tmp_path / "live.duckdb")
    records = to_records(events)
    for i in range(0, len(records), 500):
        apply_batch(live, records[i : i + 500])
    (oldest,) = live.execute("SELECT min(created_date) FROM interactions").fetchone()
    assert oldest < TODAY - timedelta(days=100)

    result = forget.purge(live, 90, today=TODAY)
    horizon = TODAY - timedelta(days=90)
    assert result.horizon == horizon and result.turns > 100
    assert live.execute("SELECT min(created_date) FROM interactions").fetchone() == (horizon,) or (
        live.execute("SELECT min(created_date) FROM interactions").fetchone()[0] > horizon
    )
    assert live.execute("SELECT count(*) FROM daily_counters WHERE day < ?", [horizon]).fetchone() == (0,)
    assert live.execute("SELECT count(*) FROM usage_events WHERE day < ?", [horizon]).fetchone() == (0,)
    assert queries.kpi(live, Filters(), TODAY, 30) == queries.kpi(live, Filters(), TODAY, 30, over_turns=True)
    assert queries.kpi(live, EVERYTHING, TODAY, 30) == queries.kpi(live, EVERYTHING, TODAY, 30, over_turns=True)
    assert queries.kpi(live, Filters(), TODAY, 30, NARROWED) == queries.kpi(
        live, Filters(), TODAY, 30, NARROWED, over_turns=True
    )
    kept, fresh = kept_and_recomputed(live)
    assert kept == fresh
    kept_records, copied = kept_and_copied_records(live)
    assert kept_records == copied and kept_records
    assert queries.list_users(live, Filters(), None).rows == queries.list_users(live, EVERYTHING, None).rows
    # The session that spanned the horizon now starts on its later turn.
    first = live.execute("SELECT first_created, turns FROM sessions WHERE session_id = 'sess-span'").fetchone()
    assert first[1] == 1 and first[0].date() >= horizon

    # A rebuild (the watermark set before the first record, a purge at the end) gives the same tables.
    rebuilt = connect(tmp_path / "rebuilt.duckdb")
    forget.set_watermark(rebuilt, horizon)
    for i in range(0, len(records), 3000):
        apply_batch(rebuilt, records[i : i + 3000])
    forget.purge(rebuilt, 90, today=TODAY)
    assert diff(table_rows(rebuilt), table_rows(live)) == {}
    assert forget.privacy_figures(rebuilt)["turns_purged_by_retention"] == result.turns


def test_after_a_purge_late_old_events_are_dropped_and_old_waiting_events_leave(con: duckdb.DuckDBPyConnection) -> None:
    old = datetime.combine(TODAY - timedelta(days=120), datetime.min.time(), UTC)
    kept = turn("sess-new", at=old + timedelta(days=100))
    waiting = feedback(turn("sess-gone", at=old), 1, at=old + timedelta(days=1))  # its turn never comes
    apply_batch(con, to_records([kept, waiting]))
    assert con.execute("SELECT count(*) FROM pending_events").fetchone() == (1,)
    result = forget.purge(con, 90, today=TODAY)
    assert result.pending == 1 and con.execute("SELECT count(*) FROM pending_events").fetchone() == (0,)

    late_turn = turn("sess-late", at=old)
    late_feedback = feedback(turn("sess-gone-too", at=old), -1, "other", at=old)
    stats = apply_batch(con, to_records([late_turn, late_feedback, usage(5, 5, at=old)], start=2))
    assert stats.aged == 3 and not stats.pending_added
    assert con.execute("SELECT count(*) FROM interactions").fetchone() == (1,)
    assert forget.privacy_figures(con)["turns_purged_by_retention"] == 1


def test_minus_one_keeps_everything_and_clears_the_watermark(con: duckdb.DuckDBPyConnection) -> None:
    old = datetime(2020, 1, 1, tzinfo=UTC)
    apply_batch(con, to_records([turn("s", at=old)]))
    forget.set_watermark(con, TODAY)
    assert forget.purge(con, -1, today=TODAY).turns == 0
    assert forget.watermark(con) is None
    apply_batch(con, to_records([turn("s2", at=old)], start=1))
    assert con.execute("SELECT count(*) FROM interactions").fetchone() == (2,)


def test_a_purge_while_readers_run_fails_no_request_and_counts_drop_once_by_the_purged_turns(tmp_path: Path) -> None:
    import threading

    from projector.service import ProjectorService
    from projector.source import TopicSource
    from serving.handle import ReadModelHandle
    from tests.support.api_data import AUTH, PREFIX, make_client

    today = datetime.now(UTC).date()
    path = tmp_path / "served.duckdb"
    con = connect(path)
    records = to_records(spanning_days(120, today=today))
    for i in range(0, len(records), 1000):
        apply_batch(con, records[i : i + 1000])  # a file that kept everything (retention was -1)
    (before,) = con.execute("SELECT count(*) FROM interactions").fetchone()
    handle = ReadModelHandle(con, path)
    stop = threading.Event()
    seen: list[int] = []
    failures: list[str] = []

    def read() -> None:
        with make_client(handle, clock=lambda: datetime.now(UTC)) as client:
            while not stop.is_set():
                for path_ in (
                    f"{PREFIX}/?page_size=5",
                    f"{PREFIX}/kpi/",
                    f"{PREFIX}/by-user/",
                    f"{PREFIX}/conversations/",
                ):
                    response = client.get(path_, headers=AUTH)
                    if response.status_code != 200:
                        failures.append(f"{path_}: {response.status_code} {response.text[:200]}")
                    elif path_.startswith(f"{PREFIX}/?"):
                        seen.append(int(response.headers["x-result-count"]))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        while len(seen) < 20:
            stop.wait(0.05)
        # The projector's purge, on the writer's connection, as serve runs it between two batches.
        service = ProjectorService(TopicSource("127.0.0.1:9", "chat.events"), con, retention_days=90)
        purged = service.purge_if_due(force=True)
        marker = len(seen)
        while len(seen) < marker + 20:
            stop.wait(0.05)
    finally:
        stop.set()
        for reader in readers:
            reader.join(60)
    assert purged is not None and purged.turns > 100
    assert failures == []
    after = before - purged.turns
    assert set(seen) == {before, after}, "a count only ever drops, once, by the purged turns"
    first_after = seen.index(after)
    assert all(n == after for n in seen[first_after:])
    assert service.status()["privacy"]["turns_purged_by_retention"] == purged.turns
    con.close()


def test_the_kpi_of_conversations_spanning_days_counts_each_turn_on_its_own_day(con: duckdb.DuckDBPyConnection) -> None:
    # The kept rows hold a session's turns per day: one element for a session within a day, one per day
    # for a session across midnight, where the narrowed KPI's daily series must split it as the turns do.
    day = BASE_TIME.replace(hour=23, minute=50)
    late = turn("across", at=day, is_flagged=True, severity="high", input_tokens=40)
    events = [
        late,
        turn("across", at=day + timedelta(minutes=5), severity="low", input_tokens=30),
        turn("across", at=day + timedelta(minutes=50), severity="low", input_tokens=30),
        turn("within", at=day - timedelta(hours=3), severity="critical", input_tokens=50),
        review(late, intent_category="billing", hallucination_detected=True),
    ]
    apply_batch(con, to_records(events))
    assert con.execute("SELECT session_id, len(days) FROM conversations ORDER BY 1").fetchall() == [
        ("across", 2),
        ("within", 1),
    ]
    today = (day + timedelta(days=1)).date()
    kept = queries.kpi(con, Filters(), today, 7, NARROWED)
    assert kept == queries.kpi(con, Filters(), today, 7, NARROWED, over_turns=True)
    assert [d["count"] for d in kept["daily_volume"][-2:]] == [3, 1]
    assert kept["severity_by_day"]["series"]["LOW"][-2:] == [1, 1]
    assert kept["llm_intent_distribution"] == {"billing": 1} and kept["hallucination_rate"] == 1.0
