"""Fault 4: SIGTERM while `serve` folds a large batch. The process stops after that batch has committed
or rolled back whole: the file then equals a clean fold of exactly the records its stored offsets
cover; the next start resumes from there and ends equal to a clean fold of the whole topic."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from projector.fold import apply_batch
from projector.records import Record
from projector.snapshot import diff, table_rows
from schemas.readmodel import connect, stored_offsets
from tests.support.faults import Serve, clean_fold, file_rows, publish, serve_positions, wait_folded, wait_until

EVENTS = 40_000  # over PARSE_PROCESS_MIN_RECORDS: serve catches up with its parser processes
BATCH = 8_000


def records_up_to(bootstrap_servers: str, topic: str, stored: dict[int, int]) -> list[Record]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(stored)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        out: list[Record] = []
        left = {tp: stored[tp.partition] for tp in partitions if stored[tp.partition] > 0}
        deadline = time.monotonic() + 180
        while left and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for m in messages:
                    if tp in left and m.offset < stored[tp.partition]:
                        stamp = m.timestamp if m.timestamp >= 0 else None
                        out.append(Record(topic, tp.partition, m.offset, m.key, m.value, stamp))
                        if m.offset + 1 >= stored[tp.partition]:
                            left.pop(tp, None)
        assert not left, f"could not read up to {stored}"
        return out
    finally:
        consumer.close()


def test_sigterm_mid_batch_commits_or_rolls_back_whole_and_the_next_start_resumes(
    bootstrap_servers: str, topic: str, tmp_path: Path
) -> None:
    publish(bootstrap_servers, topic, EVENTS, seed=9)
    db = tmp_path / "served.duckdb"
    serve = Serve(tmp_path, db, bootstrap_servers, topic, extra_args=["--batch-size", str(BATCH)], name="first")
    serve.start()
    serve.wait_answering()
    # The first large batch has committed; the next is being read or folded now.
    wait_until(lambda: 0 < sum(serve_positions(serve.url).values()) < EVENTS, "the first batch to commit", 300)
    started = time.monotonic()
    code = serve.stop(signal.SIGTERM, timeout=180)
    took = time.monotonic() - started
    assert code == 0, serve.tail()
    print(f"[sigterm] serve stopped {took:.1f} s after SIGTERM")

    con = connect(db, read_only=True)
    try:
        stored = stored_offsets(con, topic)
        stopped_rows = table_rows(con)
    finally:
        con.close()
    folded = sum(stored.values())
    assert 0 < folded < EVENTS, (folded, "the stop must land mid-stream to prove anything")
    print(f"[sigterm] the file holds {folded} of {EVENTS} records at the stop")
    reference = connect(tmp_path / "prefix.duckdb")
    try:
        apply_batch(reference, records_up_to(bootstrap_servers, topic, stored))
        assert diff(table_rows(reference), stopped_rows) == {}
    finally:
        reference.close()

    again = Serve(tmp_path, db, bootstrap_servers, topic, extra_args=["--batch-size", str(BATCH)], name="again")
    again.start()
    try:
        again.wait_answering()
        wait_folded(again, bootstrap_servers, topic, limit_s=300)
        assert again.stop() == 0, again.tail()
    finally:
        again.kill()
    clean = clean_fold(bootstrap_servers, topic, tmp_path / "clean.duckdb")
    assert diff(clean, file_rows(db)) == {}
