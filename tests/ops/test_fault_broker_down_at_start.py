"""Fault 2: `serve` starts while the broker is down. It answers reads from the file it has at once;
when the broker comes up, the projector and the ingest endpoint connect by themselves and the fold
catches up, without a restart."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from loopback.ports import free_port
from tests.support import REPO
from tests.support.events import turn
from tests.support.faults import (
    INGEST,
    KillableBroker,
    Readers,
    Serve,
    clean_fold,
    file_rows,
    interactions_total,
    publish,
    wait_folded,
    wait_until,
)

# A broker of its own (tests/support/faults.py), started and killed by the test.
pytestmark = pytest.mark.kafka


def test_serve_answers_from_its_file_without_a_broker_and_catches_up_when_it_comes(tmp_path: Path) -> None:
    broker = KillableBroker(tmp_path / "broker")
    broker.start()
    serve: Serve | None = None
    try:
        topic = broker.create_topic("fault-start")
        publish(broker.bootstrap_servers, topic, 1500, seed=3)
        db = tmp_path / "served.duckdb"
        first = Serve(tmp_path, db, broker.bootstrap_servers, topic, name="first").start()
        first.wait_answering()
        wait_folded(first, broker.bootstrap_servers, topic)
        before = interactions_total(first)
        assert first.stop() == 0, first.tail()
        broker.kill()

        started = time.monotonic()
        serve = Serve(tmp_path, db, broker.bootstrap_servers, topic).start()
        serve.wait_answering()
        up_in = time.monotonic() - started
        print(f"[broker down at start] serve answered {up_in:.1f} s after it was started, without a broker")
        with Readers(serve.url) as readers, httpx.Client(base_url=serve.url, timeout=60) as http:
            readers.phase = "no broker"
            assert interactions_total(serve) == before
            # A file with data is served while the projector cannot reach Kafka: ready once its first
            # try has failed (before that its lag is unknown, and a reachable topic may be far ahead).
            ready = wait_until(lambda: (body := serve.readyz())["ready"] and body, "ready without a broker", 60)
            assert ready["serving"] is True and ready["ready"] is True, ready
            assert ready["freshness"]["stale"] is True, ready
            refused = http.post("/api/events/", json=turn("s-early"), headers={"Authorization": f"Token {INGEST}"})
            assert refused.status_code == 503 and refused.headers["Retry-After"], refused.text
            readers.collect()

            readers.phase = "broker up"
            broker.start()
            publish(broker.bootstrap_servers, topic, 700, seed=4)
            wait_folded(serve, broker.bootstrap_servers, topic, limit_s=240)
            assert interactions_total(serve) > before
            event = turn("s-after")
            accepted = wait_until(
                lambda: (
                    (
                        r := http.post("/api/events/", json=event, headers={"Authorization": f"Token {INGEST}"})
                    ).status_code
                    == 202
                    and r
                ),
                "the ingest endpoint to connect",
            )
            assert accepted.json() == {"event_ids": [event["event_id"]]}
            wait_folded(serve, broker.bootstrap_servers, topic)
        readers.report("no broker", "broker down at start")
        readers.report("broker up", "broker down at start")
        assert all(s.status == 200 for s in readers.of("no broker"))

        assert serve.stop() == 0, serve.tail()
        assert clean_fold(broker.bootstrap_servers, topic, tmp_path / "clean.duckdb") == file_rows(db)
    finally:
        if serve is not None:
            serve.kill()
        broker.close()


def test_a_one_off_catch_up_without_a_broker_says_so_without_a_traceback(tmp_path: Path) -> None:
    # `project --until-caught-up` is a command that ends: with no broker it must end too, with one line.
    nobody = f"127.0.0.1:{free_port()}"
    db = tmp_path / "rm.duckdb"
    command = [sys.executable, "-m", "cli", "project", "--until-caught-up", "--db", str(db)]
    result = subprocess.run(
        [*command, "--bootstrap-servers", nobody, "--topic", "chat.events"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr
    assert f"project: not caught up (KafkaTimeoutError: Unable to bootstrap from {nobody})" in result.stderr, (
        result.stderr
    )
    assert "Traceback" not in result.stderr
