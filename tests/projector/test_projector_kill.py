"""Exactly-once under SIGKILL: `chat-analytics project` is killed several times while it folds a
large stream, restarted each time, and the file it ends with equals a clean fold, row for row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ingest.demo import demo_events
from projector.service import ProjectorService
from projector.snapshot import diff, table_rows
from projector.source import TopicSource
from schemas.readmodel import connect
from tests.support import REPO

EVENTS = 15_000
KILL_AT = (0.1, 0.3, 0.5, 0.7)  # share of the stream folded (as Kafka's monitoring offsets show) at each kill


def publish_demo(bootstrap_servers: str, topic: str) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20, batch_size=256 * 1024)
    try:
        count = 0
        for key, value in demo_events(EVENTS, seed=5, bad_share=0.05):
            producer.send(topic, key=key or None, value=value)
            count += 1
        producer.flush(120)
        return count
    finally:
        producer.close()


def committed_total(bootstrap_servers: str, topic: str, group_id: str) -> int:
    monitor = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False)
    try:
        return sum(monitor.committed(TopicPartition(topic, p)) or 0 for p in range(3))
    finally:
        monitor.close()


def start_projector(bootstrap_servers: str, topic: str, db: Path, group_id: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cli", "project", "--bootstrap-servers", bootstrap_servers]
    command += ["--topic", topic, "--db", str(db), "--group-id", group_id, "--batch-size", "150"]
    command += ["--progress-every", "1"]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})


def wait_until(condition, what: str, limit_s: float = 240.0) -> None:  # noqa: ANN001
    # A bound on how long to wait, never an assertion about speed.
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def test_sigkilled_projector_resumes_to_the_same_tables_as_a_clean_fold(
    bootstrap_servers: str, topic: str, tmp_path: Path
) -> None:
    total = publish_demo(bootstrap_servers, topic)
    group_id = f"kill-{topic}"
    db = tmp_path / "killed.duckdb"
    log = tmp_path / "project.log"
    kills_mid_stream = 0
    for share in KILL_AT:
        process = start_projector(bootstrap_servers, topic, db, group_id, log)
        try:
            wait_until(
                lambda share=share, process=process: (
                    committed_total(bootstrap_servers, topic, group_id) >= share * total or process.poll() is not None
                ),
                f"the projector to fold {share:.0%} of the stream",
            )
            assert process.poll() is None, log.read_text()[-3000:]
            seen = committed_total(bootstrap_servers, topic, group_id)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        kills_mid_stream += seen < total

    # The last run goes to the end and stops cleanly on SIGTERM.
    process = start_projector(bootstrap_servers, topic, db, group_id, log)
    try:
        wait_until(lambda: committed_total(bootstrap_servers, topic, group_id) >= total, "the last run to catch up")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert kills_mid_stream >= 1, "no kill landed before the end of the stream: the test proved nothing"
    assert log.read_text().count("folding ") == len(KILL_AT) + 1

    clean_db = connect(tmp_path / "clean.duckdb")
    source = TopicSource(bootstrap_servers, topic, group_id=None, batch_size=5000)
    service = ProjectorService(source, clean_db)
    try:
        service.run_until_caught_up(300)
    finally:
        service.stop()
    clean = table_rows(clean_db)
    clean_db.close()
    killed_db = connect(db)
    killed = table_rows(killed_db)
    killed_db.close()

    assert diff(clean, killed) == {}
    assert clean == killed
    assert sum(o for _, _, o in killed["offsets"]) == total
    assert len(killed["interactions"]) > EVENTS // 3
