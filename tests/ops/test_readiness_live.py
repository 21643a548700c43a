"""What a load balancer and an operator see on /readyz of a real `serve` while events keep arriving.

Under steady live ingest the projector is always a batch or so behind the topic's end for a moment; that
must neither take the replica out of rotation (HAProxy checks for 200) nor call its answers stale. A
burst it cannot fold at once puts it more than CHAT_ANALYTICS_READY_MAX_LAG records behind: then it is
not ready (503, still serving from the file) and stale, until it has folded the burst.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from tests.support.api_data import AUTH, PREFIX
from tests.support.events import encode, key_of, stream
from tests.support.faults import end_offsets
from tests.support.kafka import publish
from tests.support.serve import Server, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.partitions(3)]

STEADY_S = 6.0  # how long events arrive at a steady rate
STEADY_RATE = 100  # events per second: well within what one projector folds
MAX_LAG = 300  # records; the burst is far larger, and the projector folds it in small batches
BURST = 3_000
WAIT = 180.0  # a failure guard, not a timing assertion


def _steady(bootstrap_servers: str, topic: str, events: list[dict[str, Any]], stop: threading.Event) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
    try:
        started = time.monotonic()
        for n, event in enumerate(events):
            if stop.is_set():
                break
            producer.send(topic, key=key_of(event), value=encode(event))
            time.sleep(max(0.0, started + (n + 1) / STEADY_RATE - time.monotonic()))
        producer.flush(60)
    finally:
        producer.close()


def test_steady_ingest_keeps_a_replica_ready_and_fresh_and_a_burst_far_behind_takes_it_out(
    bootstrap_servers: str, topic: str, tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    events = list(stream(int(STEADY_S * STEADY_RATE) + BURST, seed=11, sessions=100))
    steady, burst = events[: int(STEADY_S * STEADY_RATE)], events[int(STEADY_S * STEADY_RATE) :]
    env = {
        "CHAT_ANALYTICS_READY_MAX_LAG": str(MAX_LAG),
        "CHAT_ANALYTICS_BATCH_SIZE": "100",  # so that the burst takes a while to fold
        "CHAT_ANALYTICS_RETENTION_DAYS": "-1",
    }
    server = start_server(topic, tmp_path / "rm.duckdb", env)
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as http:
        wait_for(lambda: http.get("/readyz").status_code == 200, "readiness", server.proc)

        stop = threading.Event()
        feeder = threading.Thread(target=_steady, args=(bootstrap_servers, topic, steady, stop), daemon=True)
        feeder.start()
        answers: list[tuple[int, dict[str, Any]]] = []
        try:
            while feeder.is_alive():
                response = http.get("/readyz")
                answers.append((response.status_code, response.json()))
                time.sleep(0.1)
        finally:
            stop.set()
            feeder.join(60)
        assert len(answers) > 20, "polled throughout the steady stream"
        unready = [body for code, body in answers if code != 200 or not body["ready"]]
        assert unready == [], unready[:3]
        stale = [body["freshness"] for _, body in answers if body["freshness"]["stale"]]
        assert stale == [], stale[:3]
        assert max(body["freshness"]["lag_s"] for _, body in answers) < 30

        publish(bootstrap_servers, topic, burst)

        behind: dict[str, Any] | None = None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            response = http.get("/readyz")
            body = response.json()
            if response.status_code == 503:
                behind = body
                break
            time.sleep(0.05)
        assert behind is not None, "the replica never reported being over the lag limit"
        assert behind["ready"] is False and behind["serving"] is True, behind
        assert behind["freshness"]["lag"] > MAX_LAG and behind["freshness"]["stale"] is True, behind
        # Not ready, yet still answering from the file: a client that reaches it gets data, not an error.
        assert http.get(f"{PREFIX}/kpi/").status_code == 200

        ends = end_offsets(bootstrap_servers, topic)
        assert sum(ends.values()) == len(events)

        def folded_all() -> bool:
            body = http.get("/readyz").json()
            return {p["partition"]: p["position"] for p in body["partitions"]} == ends

        wait_for(folded_all, "the burst to be folded", server.proc)
        again = http.get("/readyz")
        assert again.status_code == 200, again.text
        assert again.json()["freshness"]["stale"] is False and again.json()["freshness"]["lag_s"] == 0, again.text


def test_a_replica_restarted_far_behind_a_reachable_topic_is_not_ready_from_its_first_answer(
    bootstrap_servers: str, topic: str, tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """A file that holds data is served as it is while Kafka is down; but with Kafka up, the moment
    before the projector has reached it must not count as down: a replica whose file is far behind
    would be ready (and get traffic) until its projector learnt the lag."""
    events = list(stream(200 + BURST, seed=12, sessions=100))
    env = {
        "CHAT_ANALYTICS_READY_MAX_LAG": str(MAX_LAG),
        "CHAT_ANALYTICS_BATCH_SIZE": "100",  # so that the backlog takes a while to fold
        "CHAT_ANALYTICS_RETENTION_DAYS": "-1",
    }
    db = tmp_path / "rm.duckdb"
    publish(bootstrap_servers, topic, events[:200])
    first = start_server(topic, db, env)
    with httpx.Client(base_url=first.base, timeout=60) as http:
        wait_for(lambda: _caught_up(http.get("/readyz").json(), 200), "the first fold", first.proc)
    assert first.stop() == 0

    publish(bootstrap_servers, topic, events[200:])  # the file is now BURST records behind, over MAX_LAG
    second = start_server(topic, db, env)
    answers: list[tuple[int, dict[str, Any]]] = []
    deadline = time.monotonic() + WAIT
    with httpx.Client(base_url=second.base, timeout=60) as http:
        while time.monotonic() < deadline and second.proc.poll() is None:
            try:
                response = http.get("/readyz")
            except httpx.TransportError:
                time.sleep(0.01)  # not answering yet
                continue
            answers.append((response.status_code, response.json()))
            if _caught_up(answers[-1][1], len(events)):
                break
            time.sleep(0.01)
    assert answers and _caught_up(answers[-1][1], len(events)), answers[-1:]
    # From its very first answer, ready only once the backlog is within MAX_LAG.
    behind = [body for code, body in answers if code == 200 and _lag(body) > MAX_LAG]
    assert behind == [], behind[:2]
    assert answers[0][0] == 503, answers[0]


def _lag(body: dict[str, Any]) -> int:
    return sum(int(p.get("lag") or 0) for p in body["partitions"]) if body["partitions"] else 1 << 30


def _caught_up(body: dict[str, Any], records: int) -> bool:
    return sum(int(p.get("position") or 0) for p in body["partitions"]) >= records
