"""`chat-analytics rebuild --db NEW_FILE` through a real broker: the same tables as the live projector
at the same offsets, `--until` as of a point in time, refusing to overwrite, and the v2 dead-letter
retry on a file the live projector built."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from kafka import KafkaProducer

import projector.conversations
import projector.pipeline
import projector.rebuild
from cli.main import main
from loopback.ports import free_port
from projector.deadletters import count_by_reason, retry
from projector.fold import apply_batch
from projector.service import ProjectorService
from projector.snapshot import diff, table_rows
from projector.source import TopicSource
from schemas.readmodel import connect, stored_offsets
from tests.support.events import encode, feedback, key_of, stream, turn
from tests.support.faults import end_offsets
from tests.support.kafka import publish, read_back
from tests.support.readmodel import rows_of
from tests.support.versions import turn_v2, v2_registry

HOLD_OPEN = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); sys.stdin.read()"


def live_fold(bootstrap_servers: str, topic: str, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The live projector's tables after it caught up (its own consumer loop, as `serve` runs it)."""
    con = connect(path)
    service = ProjectorService(TopicSource(bootstrap_servers, topic, group_id=None, batch_size=500), con)
    try:
        service.run_until_caught_up(timeout=180)
        return table_rows(con)
    finally:
        service.stop()
        con.close()


@pytest.mark.parametrize(
    ("parse_process", "columns", "in_readers"),
    [(True, False, False), (True, True, False), (True, True, True), (False, False, False)],
    ids=["parser-process", "raw-columns", "columns-in-readers", "in-process"],
)
def test_rebuild_gives_the_tables_the_live_projector_holds(
    bootstrap_servers: str,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    parse_process: bool,
    columns: bool,
    in_readers: bool,
) -> None:
    # Every catch-up path of the rebuild: parser processes (shipping prepared batches, or raw columns
    # checked and shaped in DuckDB), and folding in this process. The live fold is the Pydantic path.
    monkeypatch.setattr(projector.pipeline, "PARSE_PROCESS_MIN_RECORDS", 1 if parse_process else 10**9)
    monkeypatch.setattr(projector.pipeline, "COLUMNS", columns)
    monkeypatch.setattr(projector.pipeline, "IN_READERS", in_readers)
    events = list(stream(5000, seed=21, sessions=80))  # with duplicates, early events and bad ones
    publish(bootstrap_servers, topic, events)
    live = live_fold(bootstrap_servers, topic, tmp_path / "live.duckdb")

    new = tmp_path / "rebuilt.duckdb"
    code = main(
        ["rebuild", "--db", str(new), "--bootstrap-servers", bootstrap_servers, "--topic", topic, "--batch-size", "700"]
    )

    assert code == 0
    rebuilt = rows_of(new)
    assert diff(live, rebuilt) == {}
    assert len(rebuilt["interactions"]) > 1000 and len(rebuilt["dead_letters"]) > 0
    assert sum(o for _, _, o in rebuilt["offsets"]) == len(events)
    err = capsys.readouterr().err
    # Not a terminal here: plain progress lines and a summary, no carriage returns.
    assert f"{len(events):,} records" in err and f"done: {len(events):,} records" in err and "\r" not in err
    assert not Path(f"{new}.wal").exists()


def test_rebuild_refuses_a_non_empty_file_unless_forced(
    bootstrap_servers: str, topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(bootstrap_servers, topic, [turn("s1"), turn("s2")])
    existing = tmp_path / "precious.duckdb"
    con = connect(existing)
    con.execute("INSERT INTO meta VALUES ('note', 'keep me')")
    con.close()
    args = ["rebuild", "--db", str(existing), "--bootstrap-servers", bootstrap_servers, "--topic", topic]

    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    # Not even --force deletes a file another process has open (a running serve's).
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(existing)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        assert main([*args, "--force"]) == 2
        assert "open in another process" in capsys.readouterr().err
    finally:
        holder.communicate(b"")
    con = connect(existing, read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = 'note'").fetchall() == [("keep me",)]
    con.close()

    assert main([*args, "--force"]) == 0
    con = connect(existing, read_only=True)
    assert con.execute("SELECT count(*) FROM meta WHERE key = 'note'").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM interactions").fetchall() == [(2,)]
    con.close()


def test_a_rebuild_that_cannot_reach_its_broker_says_so_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on the port: the rebuild gives up after BOUNDS_TIMEOUT_S (30 s; 2 s here), exits 1
    # and names the broker, with the file not created.
    monkeypatch.setattr(projector.rebuild, "BOUNDS_TIMEOUT_S", 2.0)
    nobody = f"127.0.0.1:{free_port()}"
    new = tmp_path / "rebuilt.duckdb"

    code = main(["rebuild", "--db", str(new), "--bootstrap-servers", nobody, "--topic", "chat.events"])

    err = capfd.readouterr().err
    assert code == 1, err
    assert f"chat-analytics: cannot reach the Kafka broker at {nobody}: " in err, err
    assert "Traceback" not in err
    assert not new.exists()


def test_resume_continues_only_what_an_interrupted_rebuild_of_the_topic_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before any broker is asked (nothing listens on the port): a file that is not an unfinished
    # rebuild of this topic is never folded on, nor replaced.
    nobody = f"127.0.0.1:{free_port()}"

    def resume(path: Path, *extra: str) -> tuple[int, str]:
        code = main(["rebuild", "--db", str(path), "--bootstrap-servers", nobody, "--topic", "chat.events", *extra])
        return code, capsys.readouterr().err

    missing = tmp_path / "missing.duckdb"
    assert resume(missing, "--resume") == (
        2,
        f"chat-analytics: {missing} does not exist: nothing to resume (leave out --resume to start a rebuild)\n",
    )
    finished = tmp_path / "finished.duckdb"
    connect(finished).close()  # a file whose conversations are not deferred: built to the end, or served
    code, err = resume(finished, "--resume")
    assert code == 2 and "is not an unfinished rebuild" in err, err

    def unfinished(path: Path, change: str) -> Path:
        """A file as an interrupted rebuild leaves it (conversations deferred), then `change`d."""
        con = connect(path)
        projector.conversations.defer(con)
        con.execute(change)
        con.close()
        return path

    other = unfinished(tmp_path / "other-topic.duckdb", "INSERT INTO offsets VALUES ('chat.other', 0, 10)")
    code, err = resume(other, "--resume")
    assert code == 2 and "was built from chat.other, not chat.events" in err, err
    code, err = resume(other, "--resume", "--force")
    assert code == 2 and "pass one of them" in err, err
    code, err = resume(other, "--resume", "--until", "2026-11-26T09:00:00Z")
    assert code == 2 and "--resume does not take --until" in err, err
    older = unfinished(tmp_path / "older.duckdb", "UPDATE meta SET value = '1' WHERE key = 'readmodel_version'")
    code, err = resume(older, "--resume")
    assert code == 2 and "was begun by read-model version 1, this release writes" in err, err
    con = connect(other, read_only=True)
    assert con.execute("SELECT * FROM offsets").fetchall() == [("chat.other", 0, 10)]
    con.close()


@pytest.mark.parametrize("parse_process", [True, False], ids=["parser-process", "in-process"])
def test_a_rebuild_folds_what_a_transactional_producer_committed_and_passes_its_markers(
    bootstrap_servers: str,
    topic: str,
    make_topic: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parse_process: bool,
) -> None:
    # A transactional producer's commit takes an offset of each partition that no consumer receives as a
    # record: the rebuild must not wait for it, and its file must say it folded everything up to the end.
    # The records of a transaction it aborted were never published: none of them may reach the tables.
    monkeypatch.setattr(projector.pipeline, "PARSE_PROCESS_MIN_RECORDS", 1 if parse_process else 10**9)
    events = list(stream(1200, seed=35, sessions=30))
    aborted = list(stream(300, seed=36, sessions=10))
    transactional = make_topic(partitions=3)
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=f"{transactional}-producer")
    try:
        producer.init_transactions()
        # markers in the middle of the log and at its end; an aborted transaction between two commits
        for part, commit in ((events[:700], True), (aborted, False), (events[700:], True)):
            producer.begin_transaction()
            for event in part:
                producer.send(transactional, key=key_of(event), value=encode(event))
            if commit:
                producer.commit_transaction()
            else:
                producer.flush(60)  # its records are in the log, before its abort marker
                producer.abort_transaction()
    finally:
        producer.close()
    new = tmp_path / "rebuilt.duckdb"
    args = ["rebuild", "--db", str(new), "--bootstrap-servers", bootstrap_servers, "--topic", transactional]

    assert main(args) == 0

    rebuilt = rows_of(new)
    ends = end_offsets(bootstrap_servers, transactional)
    assert sum(ends.values()) > len(events)  # the markers
    assert {p: o for _, p, o in rebuilt.pop("offsets")} == ends
    # The same records folded by the live projector (which passes the markers too), and by a plain
    # consumer's records in one batch here, whose offsets stop after the last record.
    assert (
        diff(
            live_fold(bootstrap_servers, transactional, tmp_path / "live.duckdb"),
            {**rebuilt, "offsets": [(transactional, p, o) for p, o in sorted(ends.items())]},
        )
        == {}
    )
    con = connect(tmp_path / "reference.duckdb")
    apply_batch(con, read_back(bootstrap_servers, transactional))
    reference = table_rows(con)
    con.close()
    assert len(reference["interactions"]) == len(rebuilt["interactions"]) > 500
    reference.pop("offsets")
    assert diff(reference, rebuilt) == {}
    applied = {str(event_id) for (event_id,) in rebuilt["applied_events"]}
    aborted_ids = {e.get("event_id") for e in aborted if isinstance(e, dict)}
    assert len(applied) > 500 and len(aborted_ids) > 200
    assert not applied & aborted_ids, f"{len(applied & aborted_ids)} events of the aborted transaction were folded"


def test_rebuild_until_gives_the_tables_as_they_were_then(bootstrap_servers: str, topic: str, tmp_path: Path) -> None:
    t0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    cutoff = t0 + timedelta(hours=1)
    first = list(stream(600, seed=5, sessions=30))
    opened = turn("s-late", offering_uuids=["0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0a01"])
    first.append(opened)
    second = [feedback(opened, -1, "other"), *stream(400, seed=6, sessions=20)]
    # Explicit Kafka record timestamps: the first wave before the cutoff (one record exactly at it), the second after.
    publish(bootstrap_servers, topic, first[:-1], timestamp_ms=int(t0.timestamp() * 1000))
    publish(bootstrap_servers, topic, first[-1:], timestamp_ms=int(cutoff.timestamp() * 1000))
    publish(bootstrap_servers, topic, second, timestamp_ms=int(cutoff.timestamp() * 1000) + 1)

    as_then = tmp_path / "audit.duckdb"
    args = ["rebuild", "--db", str(as_then), "--until", "2026-11-20T14:00:00+01:00"]  # = cutoff, in another zone
    assert main([*args, "--bootstrap-servers", bootstrap_servers, "--topic", topic]) == 0

    wave_one = [
        r
        for r in read_back(bootstrap_servers, topic)
        if r.timestamp_ms is not None and r.timestamp_ms <= int(cutoff.timestamp() * 1000)
    ]
    assert len(wave_one) == len(first)
    reference = connect(tmp_path / "reference.duckdb")
    apply_batch(reference, wave_one)
    assert diff(table_rows(reference), rows_of(as_then)) == {}
    reference.close()
    # The audit file stops at the cutoff: the second wave's feedback on `opened` is not in it.
    con = connect(as_then, read_only=True)
    uuid = opened["data"]["interaction_uuid"]
    assert con.execute("SELECT fb_score FROM interactions WHERE uuid = ?", [uuid]).fetchall() == [(None,)]
    assert sum(stored_offsets(con, topic).values()) == len(first)
    con.close()


def test_retry_after_a_release_that_knows_v2_on_a_file_the_live_projector_built(
    bootstrap_servers: str, topic: str, tmp_path: Path
) -> None:
    v1 = list(stream(800, seed=9, sessions=30))
    newer = [turn_v2(f"v2-{i}") for i in range(5)]
    waiting = [feedback(t, 1) for t in newer]  # wait for turns this release cannot read
    publish(bootstrap_servers, topic, [*v1[:400], *newer, *waiting, *v1[400:]])
    path = tmp_path / "live.duckdb"
    live_fold(bootstrap_servers, topic, path)

    con = connect(path)
    before = count_by_reason(con)
    assert before["unsupported_version"] >= len(newer)
    result = retry(con, registry=v2_registry())
    assert result.applied["chat.turn.recorded"] == len(newer)
    assert result.applied["chat.feedback.submitted"] >= len(waiting)
    after = count_by_reason(con)
    # What the generator made unreadable on purpose (version 99) stays, with its reason.
    assert after.get("unsupported_version", 0) == before["unsupported_version"] - len(newer)

    reference = connect(tmp_path / "v2-release.duckdb")
    apply_batch(reference, read_back(bootstrap_servers, topic), v2_registry())
    assert diff(table_rows(reference), table_rows(con)) == {}
    reference.close()
    con.close()


def test_a_rebuild_that_runs_out_of_memory_resumes_with_more_and_restores_the_settings(
    bootstrap_servers: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = list(stream(1500, seed=5, sessions=30))
    publish(bootstrap_servers, topic, events)
    live = live_fold(bootstrap_servers, topic, tmp_path / "live.duckdb")

    limits: list[str] = []
    thresholds: list[str] = []
    fold_here = projector.rebuild._fold_here

    def short_of_memory_once(con: Any, *args: Any) -> int:
        limits.append(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        thresholds.append(con.execute("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0])
        if len(limits) == 1:
            batches = iter(range(2))
            fold_here(con, *args[:4], lambda: next(batches, None) is None)  # two batches in, then DuckDB gives up
            raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate")
        return fold_here(con, *args)

    monkeypatch.setattr(projector.rebuild, "_fold_here", short_of_memory_once)
    con = connect(tmp_path / "rebuilt.duckdb")
    con.execute("SET checkpoint_threshold = '64.0 MiB'")  # a threshold of the caller's, not the default
    settings = "SELECT current_setting('memory_limit'), current_setting('checkpoint_threshold')"
    before = con.execute(settings).fetchall()
    try:
        bounds = projector.rebuild.log_bounds(bootstrap_servers, topic)
        projector.rebuild.fold_to(
            con,
            source=TopicSource(bootstrap_servers, topic, group_id=None, batch_size=400),
            bounds=bounds,
            parse_process=False,
        )
        assert con.execute(settings).fetchall() == before
        rebuilt = table_rows(con)
    finally:
        con.close()
    assert limits == ["256.0 MiB", "512.0 MiB"]
    # Checkpoints every few hundred MB of log while it folds (projector.rebuild.REBUILD_CHECKPOINT_THRESHOLD).
    assert thresholds == ["256.0 MiB", "256.0 MiB"]
    assert diff(live, rebuilt) == {}


def test_a_reader_process_killed_mid_rebuild_stops_the_catch_up_and_the_rebuild_resumes(
    bootstrap_servers: str,
    topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A reader SIGKILLed (the OOM killer's way) after the writer's first transaction: its pipe ends
    # without its "done", the catch-up raises instead of waiting for it, and the rebuild resumes from
    # the file's offsets with new readers, to the same tables as a clean fold.
    monkeypatch.setattr(projector.pipeline, "PARSE_PROCESS_MIN_RECORDS", 1)
    monkeypatch.setattr(projector.rebuild, "pause_before_resuming", lambda _failures: None)
    events = list(stream(3000, seed=33, sessions=60))
    publish(bootstrap_servers, topic, events)
    live = live_fold(bootstrap_servers, topic, tmp_path / "live.duckdb")
    real_apply = projector.pipeline.apply_prepared
    killed: list[int] = []

    def apply_then_kill_a_reader(*args: Any, **kwargs: Any) -> Any:
        stats = real_apply(*args, **kwargs)
        if not killed:
            reader = next(c for c in multiprocessing.active_children() if c.name == "projector-parser")
            assert reader.pid is not None
            os.kill(reader.pid, signal.SIGKILL)
            killed.append(reader.pid)
        return stats

    monkeypatch.setattr(projector.pipeline, "apply_prepared", apply_then_kill_a_reader)
    new = tmp_path / "rebuilt.duckdb"
    args = ["rebuild", "--db", str(new), "--bootstrap-servers", bootstrap_servers, "--topic", topic]

    with caplog.at_level(logging.WARNING, logger="projector.rebuild"):
        assert main([*args, "--batch-size", "400"]) == 0

    assert killed
    assert "rebuild interrupted (RuntimeError: a parser process died (exit codes" in caplog.text
    assert str(-signal.SIGKILL) in caplog.text
    assert diff(live, rows_of(new)) == {}


def test_the_reader_processes_run_at_a_lower_cpu_priority_than_the_writer(
    bootstrap_servers: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer bounds a catch-up; the readers keep up with it from their spare time, so on a busy machine
    # the kernel gives the writer the core first.
    monkeypatch.setattr(projector.pipeline, "PARSE_PROCESS_MIN_RECORDS", 1)
    publish(bootstrap_servers, topic, list(stream(1500, seed=34, sessions=30)))
    real_apply = projector.pipeline.apply_prepared
    seen: list[tuple[int, int]] = []

    def apply_and_look(*args: Any, **kwargs: Any) -> Any:
        readers = [c for c in multiprocessing.active_children() if c.name == "projector-parser"]
        seen.extend((os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, r.pid or 0)) for r in readers)
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(projector.pipeline, "apply_prepared", apply_and_look)
    new = tmp_path / "rebuilt.duckdb"
    assert main(["rebuild", "--db", str(new), "--bootstrap-servers", bootstrap_servers, "--topic", topic]) == 0

    assert seen
    assert all(reader == writer + projector.pipeline.READER_NICENESS for writer, reader in seen)


def test_the_writer_leaves_the_readers_the_cores_they_need_and_takes_them_back_for_the_conversations(
    bootstrap_servers: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the readers run, DuckDB's worker threads would compete with them for the cores; the
    # conversations are computed after they have exited, on the file's own threads again.
    monkeypatch.setattr(projector.pipeline, "PARSE_PROCESS_MIN_RECORDS", 1)
    publish(bootstrap_servers, topic, list(stream(1500, seed=35, sessions=30)))
    cores = len(os.sched_getaffinity(0))
    readers = projector.rebuild.DEFAULT_PARSE_PROCESSES
    real_apply = projector.pipeline.apply_prepared
    real_settle = projector.conversations.settle
    folding: list[int] = []
    settling: list[int] = []

    def threads(con: Any) -> int:
        ((n,),) = con.execute("SELECT current_setting('threads')").fetchall()
        return int(n)

    def apply_and_look(con: Any, *args: Any, **kwargs: Any) -> Any:
        folding.append(threads(con))
        return real_apply(con, *args, **kwargs)

    def settle_and_look(con: Any) -> bool:
        settling.append(threads(con))
        return real_settle(con)

    monkeypatch.setattr(projector.pipeline, "apply_prepared", apply_and_look)
    monkeypatch.setattr(projector.conversations, "settle", settle_and_look)
    new = tmp_path / "rebuilt.duckdb"
    assert main(["rebuild", "--db", str(new), "--bootstrap-servers", bootstrap_servers, "--topic", topic]) == 0

    ((default,),) = duckdb.connect().execute("SELECT current_setting('threads')").fetchall()
    assert folding and set(folding) == {max(1, cores - readers)}
    assert settling == [int(default)]
