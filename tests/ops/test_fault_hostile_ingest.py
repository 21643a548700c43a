"""Fault 5: hostile ingest against a running `serve`: oversized batches, 10,000 bad elements, deep
nesting, invalid UTF-8, a body over 1 MiB, slow-loris headers, and many concurrent ingest requests
while the broker is down. Reads stay fast, the process's memory stays bounded, and every answer is a
clear 4xx or 503 (never a 500, never a hang)."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.events import turn
from tests.support.faults import INGEST, KillableBroker, Readers, Serve, publish, wait_folded

# A broker of its own (tests/support/faults.py), started and killed by the test.
pytestmark = pytest.mark.kafka

CLEAR = {400, 408, 413, 429, 503}
SLOW_CLIENTS = 20
HEADER_DEADLINE_S = 10.0  # api.http_protocol.HEADER_TIMEOUT_S
CONCURRENT = 40


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def slow_loris(port: int, results: list[float]) -> None:
    """Sends a request line and then one header byte a second; notes when the server hung up."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    started = time.monotonic()
    try:
        sock.sendall(b"GET /api/anonymous-chat-interactions/ HTTP/1.1\r\nHost: x\r\n")
        for i in range(60):
            try:
                sock.sendall(b"X-Slow-%d: y\r\n" % i)
                sock.settimeout(1.0)
                if sock.recv(1024) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        results.append(time.monotonic() - started)
    finally:
        sock.close()


def oversized_headers(port: int) -> bytes:
    """A request whose headers are 64 KiB: the answer (400) and the server's hang-up."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65_536 + b"\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        return received


def test_hostile_ingest_gets_clear_answers_while_reads_stay_fast(tmp_path: Path) -> None:
    broker = KillableBroker(tmp_path / "broker")
    broker.start()
    serve: Serve | None = None
    try:
        topic = broker.create_topic("fault-hostile")
        publish(broker.bootstrap_servers, topic, 800, seed=2)
        env = {"CHAT_ANALYTICS_INGEST_MAX_EVENTS": "20000", "CHAT_ANALYTICS_INGEST_RATE": "1000000"}
        serve = Serve(tmp_path, tmp_path / "served.duckdb", broker.bootstrap_servers, topic, env=env).start()
        serve.wait_answering()
        wait_folded(serve, broker.bootstrap_servers, topic)
        assert serve.process is not None
        pid = serve.process.pid
        answers: list[tuple[str, int]] = []
        ingest_headers = {"Authorization": f"Token {INGEST}", "Content-Type": "application/json"}

        with Readers(serve.url) as readers, httpx.Client(base_url=serve.url, timeout=60) as http:
            readers.phase = "normal"
            readers.collect()
            rss_before = rss_bytes(pid)

            readers.phase = "hostile bodies"
            bodies = {
                "oversized batch": json.dumps([{}] * 20_001).encode(),
                "10,000 bad elements": b"[" + b",".join([b'{"type": "chat.turn.recorded"}'] * 10_000) + b"]",
                "deep nesting": b"[" * 200_000 + b"]" * 200_000,
                "invalid UTF-8": b'[{"type": "\xff\xfe\xfd"}]',
                "over 1 MiB": b"[" + b" " * (2 * 1024 * 1024) + b"]",
            }
            for name, body in bodies.items():
                for _ in range(3):
                    response = http.post("/api/events/", content=body, headers=ingest_headers)
                    answers.append((name, response.status_code))
                    assert response.status_code in CLEAR, (name, response.status_code, response.text[:300])
                    assert len(response.content) < 20_000, (name, len(response.content))
            bad = http.post("/api/events/", content=bodies["10,000 bad elements"], headers=ingest_headers).json()
            assert bad["error_count"] >= 10_000 and len(bad["errors"]) <= 20, bad

            assert oversized_headers(serve.port).startswith(b"HTTP/1.1 400")

            readers.phase = "slow loris"
            closed_after: list[float] = []
            slow = [
                threading.Thread(target=slow_loris, args=(serve.port, closed_after), daemon=True)
                for _ in range(SLOW_CLIENTS)
            ]
            for thread in slow:
                thread.start()
            for thread in slow:
                thread.join(90)
            assert len(closed_after) == SLOW_CLIENTS
            assert max(closed_after) < HEADER_DEADLINE_S + 10, closed_after  # a bound, on a busy machine

            readers.phase = "broker down, concurrent ingest"
            broker.kill()
            ingest_started = time.monotonic()

            def post_one(i: int) -> tuple[int, float, str]:
                t0 = time.monotonic()
                r = http.post("/api/events/", json=turn(f"s-{i}"), headers={"Authorization": f"Token {INGEST}"})
                return r.status_code, time.monotonic() - t0, r.headers.get("retry-after", "")

            with ThreadPoolExecutor(CONCURRENT) as pool:
                outage = list(pool.map(post_one, range(CONCURRENT)))
            ingest_took = time.monotonic() - ingest_started
            time.sleep(2)
            rss_after = rss_bytes(pid)

        for status, took, retry_after in outage:
            assert status == 503 and retry_after, (status, took)
        print(
            f"[hostile] {CONCURRENT} concurrent ingest requests without a broker: all 503 in {ingest_took:.1f} s, "
            f"slowest {max(t for _, t, _ in outage):.1f} s"
        )
        print(f"[hostile] slow-loris connections closed after {min(closed_after):.1f}-{max(closed_after):.1f} s")
        print(f"[hostile] serve RSS {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after")
        print(f"[hostile] answers: {sorted(set(answers))}")
        normal = readers.report("normal", "hostile")
        for phase in ("hostile bodies", "slow loris", "broker down, concurrent ingest"):
            figures = readers.report(phase, "hostile")
            samples = readers.of(phase)
            assert samples and all(s.status == 200 for s in samples), (phase, {s.status for s in samples})
            assert figures["p99_ms"] < max(20 * normal["p99_ms"], 2000), (phase, normal, figures)
        assert rss_after - rss_before < 300 * 2**20, (rss_before, rss_after)
        assert serve.stop() == 0, serve.tail()
    finally:
        if serve is not None:
            serve.kill()
        broker.close()
