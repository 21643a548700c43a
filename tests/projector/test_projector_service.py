"""ProjectorService through a real broker: catch-up, live following, status, and surviving a broker
that is not there."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from loopback.ports import refusing_port
from projector import forget
from projector import service as service_module
from projector.fold import apply_batch
from projector.service import ProjectorService
from projector.snapshot import diff, table_rows
from projector.source import TopicSource
from projector.transaction import transaction
from schemas.readmodel import connect
from serving.changes import ChangeLog, mark_rows
from tests.support.events import click, feedback, stream, turn, usage
from tests.support.kafka import publish, read_back

STATUS_KEYS = {
    "caught_up",
    "partitions",
    "lag_s",
    "events_applied",
    "dead_letters",
    "pending_events",
    "last_batch_at",
    "error",
    "error_kind",
    "connected_once",
    "newest_record_at",
    "privacy",
    "folds",
}


def wait_for(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    # A bound on how long to wait, not an assertion about speed.
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def wait_all_folded(service: ProjectorService, events: int) -> None:
    wait_for(
        lambda: sum(p["position"] for p in service.status()["partitions"]) == events,
        "every published event to be folded",
    )


def assert_folded_like_the_pure_fold(
    bootstrap_servers: str, topic: str, con: duckdb.DuckDBPyConnection, at: Path
) -> None:
    reference = connect(at / "reference.duckdb")
    apply_batch(reference, read_back(bootstrap_servers, topic))
    assert diff(table_rows(reference), table_rows(con)) == {}
    reference.close()


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(tmp_path / "readmodel.duckdb")
    yield c
    c.close()


def test_run_until_caught_up_folds_the_topic_exactly_like_the_pure_fold(
    bootstrap_servers: str, topic: str, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    events = list(stream(3000, seed=11, sessions=40))
    publish(bootstrap_servers, topic, events)
    service = ProjectorService(TopicSource(bootstrap_servers, topic, group_id=f"g-{topic}", batch_size=700), con)
    folded = service.run_until_caught_up(timeout=120)
    assert folded == len(events)

    reference = connect(tmp_path / "reference.duckdb")
    apply_batch(reference, read_back(bootstrap_servers, topic))
    assert diff(table_rows(reference), table_rows(con)) == {}
    reference.close()

    status = service.status()
    assert set(status) == STATUS_KEYS
    assert status["caught_up"] is True
    assert [p["partition"] for p in status["partitions"]] == [0, 1, 2]
    assert sum(p["end_offset"] for p in status["partitions"]) == len(events)
    assert all(p["position"] == p["end_offset"] and p["lag"] == 0 for p in status["partitions"])
    assert status["lag_s"] == 0, "at the end of the topic the file lacks nothing"
    turns_in_table = con.execute("SELECT count(*) FROM interactions").fetchall()[0][0]
    assert status["events_applied"]["chat.turn.recorded"] == turns_in_table
    db_dead = dict(con.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1").fetchall())
    assert status["dead_letters"] == db_dead and sum(db_dead.values()) > 0
    assert status["error"] is None and status["last_batch_at"].endswith("Z")
    # Every record was read in batches of at most 700, each one timed.
    folds = status["folds"]
    assert folds["records"] == len(events) and folds["batches"] >= len(events) / 700
    assert folds["seconds"] > 0 and folds["cpu_seconds"] > 0
    service.stop()

    # Kafka got the positions too, for lag tools only.
    from kafka import KafkaConsumer, TopicPartition

    monitor = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=f"g-{topic}", enable_auto_commit=False)
    committed = {p: monitor.committed(TopicPartition(topic, p)) for p in range(3)}
    monitor.close()
    assert committed == {p["partition"]: p["end_offset"] for p in status["partitions"]}


@pytest.mark.parametrize("parsers", [1, 2])
def test_catch_up_with_parser_processes_folds_like_the_pure_fold(
    bootstrap_servers: str,
    topic: str,
    con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parsers: int,
) -> None:
    import projector.pipeline

    monkeypatch.setattr(projector.pipeline, "PARSE_PROCESS_MIN_RECORDS", 1)
    events = list(stream(4000, seed=3, sessions=60))
    publish(bootstrap_servers, topic, events)
    service = ProjectorService(
        TopicSource(bootstrap_servers, topic, group_id=None, batch_size=300), con, parse_processes=parsers
    )
    assert service.run_until_caught_up(timeout=120) == len(events)
    reference = connect(tmp_path / "reference.duckdb")
    apply_batch(reference, read_back(bootstrap_servers, topic))
    assert diff(table_rows(reference), table_rows(con)) == {}
    reference.close()
    status = service.status()
    assert status["caught_up"] is True and all(p["lag"] == 0 for p in status["partitions"])
    # The batches the parser processes prepared are counted and timed like the loop's own. The writer applies
    # what it has received once it holds at least a batch (300) and each shipped piece holds at most one, so
    # a transaction holds under 600 records: at least 4000 / 600 of them.
    assert status["folds"]["records"] == len(events) and status["folds"]["batches"] > len(events) / 600
    assert status["folds"]["cpu_seconds"] > 0
    service.stop()


def test_live_mode_follows_new_events_and_reports_status(
    bootstrap_servers: str, topic: str, con: duckdb.DuckDBPyConnection
) -> None:
    t = turn("live-session", user_slug="u1", offering_uuids=["0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0a01"])
    publish(bootstrap_servers, topic, [t, usage(5, 6)])
    service = ProjectorService(TopicSource(bootstrap_servers, topic, group_id=None, batch_size=100), con)
    service.start()
    try:
        wait_for(lambda: service.status()["caught_up"], "catching up with the two events there at start")
        reader = con.cursor()
        assert reader.execute("SELECT count(*) FROM interactions").fetchall() == [(1,)]

        publish(bootstrap_servers, topic, [feedback(t, -1, "other"), click(t), click(t), feedback(turn(), 1)])

        def folded() -> bool:
            rows = reader.execute("SELECT fb_score, click_count FROM interactions").fetchall()
            return rows == [(-1, 2)] and service.status()["pending_events"] == 1

        wait_for(folded, "the feedback and clicks to show through a reader cursor")
        status = service.status()
        assert status["events_applied"] == {
            "chat.turn.recorded": 1,
            "assistant.usage.recorded": 1,
            "chat.feedback.submitted": 1,
            "chat.offering.clicked": 2,
        }
        assert status["error"] is None
        assert sum(p["position"] for p in status["partitions"]) == 6
        reader.close()
    finally:
        service.stop()


def test_live_batches_gathered_between_pauses_fold_like_the_pure_fold(
    bootstrap_servers: str, topic: str, con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    events = list(stream(600, seed=5, sessions=15))
    service = ProjectorService(
        TopicSource(bootstrap_servers, topic, group_id=None, batch_size=5000), con, live_interval_s=0.5
    )
    service.start()
    try:
        wait_for(lambda: service.status()["caught_up"], "the service to start on the empty topic")
        for start in range(0, len(events), 100):  # bursts that land during the pauses between batches
            publish(bootstrap_servers, topic, events[start : start + 100])
        wait_all_folded(service, len(events))
    finally:
        service.stop()
    assert_folded_like_the_pure_fold(bootstrap_servers, topic, con, tmp_path)
    stored = dict(con.execute("SELECT partition, next_offset FROM offsets").fetchall())
    assert stored == {p["partition"]: p["end_offset"] for p in service.status()["partitions"]}


def test_an_idle_projector_publishes_the_mark_for_the_requests(
    bootstrap_servers: str, topic: str, con: duckdb.DuckDBPyConnection
) -> None:
    # The file already holds the topic, so the service has nothing to fold: the mark the requests take
    # instead of reading it (serving.changes) can only come from the service reading it while idle.
    events = list(stream(300, seed=9, sessions=10))
    publish(bootstrap_servers, topic, events)
    apply_batch(con, read_back(bootstrap_servers, topic))
    changes = ChangeLog(generation=0)
    assert changes.current() is None
    service = ProjectorService(
        TopicSource(bootstrap_servers, topic, group_id=None, batch_size=100), con, changes=changes
    )
    service.start()
    try:
        wait_for(lambda: changes.current() is not None, "the idle service to publish the mark")
        assert sorted(changes.current() or ()) == sorted(mark_rows(con.cursor()))
        # A commit the service did not make (here: what a retention purge that removed something counts
        # in `meta`) moves the mark: the service reads it again and publishes that.
        before = sorted(changes.current() or ())
        writer = con.cursor()
        with transaction(writer):
            forget.add_to_meta(writer, forget.PURGES_KEY, 1)
        fresh = sorted(mark_rows(con.cursor()))
        assert fresh != before
        wait_for(lambda: sorted(changes.current() or ()) == fresh, "the service to publish the new mark")
    finally:
        service.stop()


def test_a_negative_live_interval_is_refused(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ValueError, match="live_interval_s"):
        ProjectorService(TopicSource("127.0.0.1:9", "t"), con, live_interval_s=-1)


def test_a_missing_broker_is_reported_in_status_and_stop_still_works(tmp_path: Path) -> None:
    con = connect(tmp_path / "readmodel.duckdb")
    with refusing_port() as port:
        service = ProjectorService(TopicSource(f"127.0.0.1:{port}", "chat.events", batch_size=10), con)
        service.start()
        try:
            wait_for(lambda: service.status()["error"] is not None, "the error to show in status", limit_s=90)
            status = service.status()
            assert status["caught_up"] is False and status["last_batch_at"] is None
        finally:
            service.stop()
            con.close()


def test_a_quiet_topic_gets_its_log_checkpointed_before_the_threshold(
    bootstrap_servers: str, topic: str, con: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Far below the threshold, the log of a burst is folded into the file once the topic goes quiet,
    # so that busy traffic later does not wait for a checkpoint of everything written before it.
    monkeypatch.setattr(service_module, "IDLE_CHECKPOINT_MIN_BYTES", 64 * 1024)  # a burst of a test's size
    events = list(stream(600, seed=7, sessions=15))
    wal = tmp_path / "readmodel.duckdb.wal"
    threshold = 4 * 1024 * 1024  # the burst writes about a tenth of this: its log stays under it
    service = ProjectorService(
        TopicSource(bootstrap_servers, topic, group_id=None, batch_size=50),
        con,
        checkpoint_bytes=threshold,
        live_interval_s=0.05,
    )
    publish(bootstrap_servers, topic, events)
    service.start()
    try:
        wait_all_folded(service, len(events))
        wait_for(lambda: not wal.exists() or wal.stat().st_size == 0, "the log of the burst to be checkpointed")
    finally:
        service.stop()
    assert_folded_like_the_pure_fold(bootstrap_servers, topic, con, tmp_path)


@pytest.mark.parametrize("commit", [True, False], ids=["committed", "aborted"])
def test_a_quiet_topic_ending_in_a_transaction_marker_is_caught_up(
    bootstrap_servers: str, topic: str, tmp_path: Path, commit: bool
) -> None:
    # A transactional producer's commit (or abort) takes the last offset of each partition it wrote, and
    # no consumer receives it as a record; nor, read committed, the records of an aborted transaction. The
    # live projector must count them folded, or on a quiet topic it would stay short of the end for ever:
    # never caught up, /readyz 503, a lag of 1 (or more) per partition.
    from kafka import KafkaProducer

    from tests.support.events import encode, key_of

    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=f"{topic}-producer")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for event in stream(300, seed=36, sessions=12):
            producer.send(topic, key=key_of(event), value=encode(event))
        if commit:
            producer.commit_transaction()
        else:
            producer.flush(60)
            producer.abort_transaction()
    finally:
        producer.close()
    con = connect(tmp_path / "live.duckdb")
    service = ProjectorService(TopicSource(bootstrap_servers, topic, group_id=None, batch_size=100), con)
    try:
        service.start()
        deadline = time.monotonic() + 120
        while not service.status()["caught_up"] and time.monotonic() < deadline:
            time.sleep(0.2)
        status = service.status()
    finally:
        service.stop()
    stored = dict(con.execute("SELECT partition, next_offset FROM offsets").fetchall())
    ((turns,),) = con.execute("SELECT count(*) FROM interactions").fetchall()
    con.close()
    assert status["caught_up"], status
    assert [p["lag"] for p in status["partitions"]] == [0, 0, 0], status["partitions"]
    assert stored == {p["partition"]: p["end_offset"] for p in status["partitions"]}
    assert sum(stored.values()) == 300 + 3  # every record, and one marker per partition
    assert (turns > 100) if commit else (turns == 0)


def test_the_live_projector_folds_only_what_transactions_committed(
    bootstrap_servers: str, topic: str, tmp_path: Path
) -> None:
    # Plain records, then a transaction left open while plain records arrive after it, then aborted, then
    # a committed one. While it is open the projector folds up to the last stable offset only (what comes
    # after may still be joined by records it would have to drop); once it is aborted, none of its records
    # may reach the tables, while everything committed around it does.
    from kafka import KafkaProducer

    from tests.support.events import encode, key_of
    from tests.support.faults import end_offsets

    events = list(stream(900, seed=37, sessions=30))
    before, held, committed, after = events[:300], events[300:500], events[500:700], events[700:]
    aborted = list(stream(200, seed=38, sessions=10))
    aborted_ids = {e.get("event_id") for e in aborted if isinstance(e, dict)}
    con = connect(tmp_path / "live.duckdb")
    service = ProjectorService(TopicSource(bootstrap_servers, topic, group_id=None, batch_size=100), con)
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=f"{topic}-producer")

    def positions() -> dict[int, int]:
        return {p["partition"]: p["position"] for p in service.status()["partitions"]}

    try:
        service.start()
        publish(bootstrap_servers, topic, before)
        producer.init_transactions()
        producer.begin_transaction()
        for event in aborted:
            producer.send(topic, key=key_of(event), value=encode(event))
        producer.flush(60)
        publish(bootstrap_servers, topic, held)
        stable = end_offsets(bootstrap_servers, topic, "read_committed")
        assert sum(end_offsets(bootstrap_servers, topic).values()) == sum(stable.values()) + len(aborted) + len(held)
        wait_for(lambda: positions() == stable, "the records before the open transaction to be folded")
        producer.abort_transaction()
        producer.begin_transaction()
        for event in committed:
            producer.send(topic, key=key_of(event), value=encode(event))
        producer.commit_transaction()
        publish(bootstrap_servers, topic, after)
        ends = end_offsets(bootstrap_servers, topic)
        wait_for(lambda: positions() == ends, "every offset up to the end to be folded", limit_s=60)
        status = service.status()
    finally:
        producer.close()
        service.stop()
    assert status["caught_up"] and [p["lag"] for p in status["partitions"]] == [0, 0, 0], status["partitions"]
    applied = {str(event_id) for (event_id,) in con.execute("SELECT event_id FROM applied_events").fetchall()}
    assert len(applied) > 500 and len(aborted_ids) > 150
    assert not applied & aborted_ids, f"{len(applied & aborted_ids)} events of the aborted transaction were folded"
    assert_folded_like_the_pure_fold(bootstrap_servers, topic, con, tmp_path)
    con.close()


def test_storing_offsets_past_markers_changes_no_answer_the_cache_keeps(tmp_path: Path) -> None:
    # The commit that stores offsets without records files that it changed no key, and publishes its
    # mark: the answers remembered for single keys outlive it, as they outlive a batch that missed them.
    from projector.apply import pass_recordless_offsets
    from serving.changes import mark_total

    con = connect(tmp_path / "rm.duckdb")
    changes = ChangeLog(generation=0)
    before = mark_total(con)
    stats = pass_recordless_offsets(con, "chat.events", {0: 301, 2: 17}, changes=changes)
    after = mark_total(con)
    assert stats.records == 0 and stats.offsets == {("chat.events", 0): 301, ("chat.events", 2): 17}
    assert dict(con.execute("SELECT partition, next_offset FROM offsets").fetchall()) == {0: 301, 2: 17}
    assert after > before
    assert changes.touched(before, after) == frozenset()
    assert sorted(changes.current() or ()) == sorted(mark_rows(con.cursor()))
    con.close()
