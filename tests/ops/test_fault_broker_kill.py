"""Fault 1: the broker is SIGKILLed while `serve` folds a steady stream and readers poll.

Reads keep answering from the file; ingest answers 503 within its bound (never 500, never a false
202); /readyz stays ready (serving) and reports the projector stale. The broker restarts on the same
data: the projector resumes by itself, and the served file equals a clean fold of the topic.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from projector.snapshot import diff
from tests.support.events import turn
from tests.support.faults import (
    INGEST,
    KillableBroker,
    Publishing,
    Readers,
    Serve,
    clean_fold,
    file_rows,
    wait_folded,
    wait_until,
)

# A broker of its own (tests/support/faults.py), started and killed by the test.
pytestmark = pytest.mark.kafka

INGEST_BOUND_S = 15.0  # the producer's max_block_ms (3 s) + the ack wait (5 s), with room for a busy machine


def test_reads_survive_a_killed_broker_and_the_fold_resumes_exactly(tmp_path: Path) -> None:
    broker = KillableBroker(tmp_path / "broker")
    broker.start()
    serve: Serve | None = None
    publishing = Publishing(broker.bootstrap_servers, broker.create_topic("fault-kill"), per_second=100)
    try:
        publishing.start()
        serve = Serve(tmp_path, tmp_path / "served.duckdb", broker.bootstrap_servers, publishing.topic).start()
        serve.wait_answering()
        wait_until(lambda: serve.readyz()["ready"], "serve to be ready")
        with Readers(serve.url) as readers, httpx.Client(base_url=serve.url, timeout=60) as http:
            readers.phase = "normal"
            readers.collect()

            readers.phase = "broker killed"
            broker.kill()
            # Under a steady stream the lag alone makes it stale now and then: wait for the outage itself.
            stale = wait_until(
                lambda: (body := serve.readyz())["error"] == "broker_unreachable" and body,
                "/readyz to report the broker unreachable",
            )
            assert stale["ready"] is True and stale["serving"] is True, stale
            assert stale["freshness"]["stale"] is True, stale
            ingest_answers = []
            for _ in range(3):
                started = time.monotonic()
                response = http.post(
                    "/api/events/", json=turn("s-outage"), headers={"Authorization": f"Token {INGEST}"}
                )
                ingest_answers.append((response.status_code, time.monotonic() - started, response))
            for status, took, response in ingest_answers:
                assert status == 503, response.text
                assert response.headers["Retry-After"]
                assert took < INGEST_BOUND_S, took
            readers.collect()
            print(f"[broker kill] ingest during the outage: {[(s, round(t, 2)) for s, t, _ in ingest_answers]}")

            readers.phase = "broker back"
            broker.start()
            wait_until(lambda: serve.readyz()["freshness"]["projector"] == "ok", "the projector to fold again", 180)
            readers.collect(50)

        normal = readers.report("normal", "broker kill")
        outage = readers.report("broker killed", "broker kill")
        readers.report("broker back", "broker kill")
        outage_samples = readers.of("broker killed")
        assert outage_samples and all(s.status == 200 for s in outage_samples), {s.status for s in outage_samples}
        # Generous on a shared machine: the point is that reads did not freeze behind Kafka.
        assert outage["p99_ms"] < max(20 * normal["p99_ms"], 2000), (normal, outage)

        publishing.stop()
        wait_folded(serve, broker.bootstrap_servers, publishing.topic)
        assert serve.stop() == 0, serve.tail()
        served = file_rows(tmp_path / "served.duckdb")
        clean = clean_fold(broker.bootstrap_servers, publishing.topic, tmp_path / "clean.duckdb")
        assert diff(clean, served) == {}
        assert clean == served
        print(f"[broker kill] published {publishing.sent} events ({publishing.failed} sends refused during the outage)")
    finally:
        publishing.stop()
        if serve is not None:
            serve.kill()
        broker.close()
