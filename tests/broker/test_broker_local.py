"""`chat-analytics broker start|stop|status` as a user runs them: a detached broker that keeps its data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from broker.lifetime import process_alive
from broker.local import read_state
from broker.probe import answers_metadata
from broker.topics import ensure_topic
from tests.support import REPO


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CHAT_ANALYTICS_HOME": str(home)}
    environment.pop("CHAT_ANALYTICS_BOOTSTRAP_SERVERS", None)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture
def home(broker_home: Path) -> Iterator[Path]:
    yield broker_home
    # Whatever the test did, the detached broker must not outlive it.
    cli(broker_home, "broker", "stop")
    state = read_state(broker_home)
    if state is not None and process_alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)


def read_values(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        end = consumer.end_offsets([partition])[partition]
        values: list[bytes] = []
        while consumer.position(partition) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


def test_start_is_idempotent_stop_stops_and_a_restart_keeps_the_events(home: Path) -> None:
    first = cli(home, "broker", "start")
    assert first.returncode == 0, first.stderr
    bootstrap = first.stdout.strip()
    assert bootstrap.startswith("127.0.0.1:"), "only the bootstrap address goes to stdout, on loopback"
    assert answers_metadata(bootstrap)
    pid = read_state(home).pid

    again = cli(home, "broker", "start")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == bootstrap
    assert read_state(home).pid == pid, "a second start must find the running broker, not start another"

    running = cli(home, "broker", "status")
    assert running.returncode == 0
    assert bootstrap in running.stdout

    ensure_topic(bootstrap, "kept", partitions=1)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    producer.send("kept", key=b"s1", value=b"first event").get(timeout=30)
    producer.close()

    stopped = cli(home, "broker", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not process_alive(pid)
    after_stop = cli(home, "broker", "status")
    assert after_stop.returncode == 3
    assert "stopped" in after_stop.stdout
    assert cli(home, "broker", "stop").returncode == 0, "stopping a stopped broker is not an error"

    restarted = cli(home, "broker", "start")
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == bootstrap, "a restart keeps the address when its ports are free"
    assert read_values(bootstrap, "kept") == [b"first event"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert "kept" in admin.list_topics()
    finally:
        admin.close()


def test_status_ignores_a_stale_state_file(home: Path) -> None:
    (home / "broker").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale_pid = int(dead.stdout)
    stale = {
        "pid": stale_pid,
        "bootstrap_servers": "127.0.0.1:1",
        "broker_port": 1,
        "controller_port": 2,
        "properties": "/nonexistent/server.properties",
        "log": "/nonexistent/broker.log",
        "started_at": 0,
    }
    (home / "broker" / "state.json").write_text(json.dumps(stale))
    result = cli(home, "broker", "status")
    assert result.returncode == 3
    assert "stopped" in result.stdout
