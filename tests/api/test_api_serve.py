"""`chat-analytics serve` end to end: a real broker, the command in a subprocess on a loopback port,
the projector in the same process folding the topic, the API answering from what it folded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopback.ports import free_port
from replicas.process import serve_args
from tests.support import REPO
from tests.support.api_data import AUTH, PREFIX, STAFF, events
from tests.support.events import turn
from tests.support.kafka import publish
from tests.support.serve import WAIT, wait_for


@pytest.fixture
def server(bootstrap_servers: str, topic: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    publish(bootstrap_servers, topic, events())
    port = free_port()
    env = {
        **os.environ,
        "CHAT_ANALYTICS_API_TOKENS": f"{STAFF}:staff",
        "CHAT_ANALYTICS_TOKENS_FILE": str(tmp_path / "tokens.json"),
    }
    db = tmp_path / "rm.duckdb"
    args = serve_args(port=port, bootstrap_servers=bootstrap_servers, topic=topic, db=db, group_id=f"api-serve-{topic}")
    command = [sys.executable, "-m", "cli.main", *args]
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_serve_folds_the_topic_and_serves_it_then_stops_cleanly(
    server: tuple[str, subprocess.Popen[bytes]], bootstrap_servers: str, topic: str
) -> None:
    base, proc = server
    with httpx.Client(base_url=base, headers=AUTH) as http:
        wait_for(lambda: http.get("/readyz").status_code == 200, "readiness", proc)
        ready = http.get("/readyz").json()
        assert ready["ready"] is True and all(p["lag"] == 0 for p in ready["partitions"])

        listing = http.get(f"{PREFIX}/")
        assert listing.status_code == 200 and listing.headers["x-result-count"] == "7"
        kpi = http.get(f"{PREFIX}/kpi/").json()
        assert (kpi["interactions_total"], kpi["feedback_negative"], kpi["clicks_total"]) == (7, 2, 5)

        # Live: a turn published now shows up without a restart.
        publish(bootstrap_servers, topic, [turn("s-live", user_input="late question")])
        wait_for(lambda: http.get(f"{PREFIX}/").headers["x-result-count"] == "8", "the live turn", proc)
        assert [r["user_input"] for r in http.get(f"{PREFIX}/by-session/s-live/").json()] == ["late question"]

        metrics = http.get("/metrics").text
        assert 'chat_analytics_projector_events_applied_total{type="chat.turn.recorded"} 8' in metrics
        assert "chat_analytics_projector_caught_up 1" in metrics
        # Every record of the topic went through a timed batch: the start-up ones and the live turn's.
        samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
        folded = sum(p["position"] for p in http.get("/readyz").json()["partitions"])
        assert int(samples["chat_analytics_projector_batch_records_total"]) == folded
        assert int(samples["chat_analytics_projector_batches_total"]) >= 2
        assert float(samples["chat_analytics_projector_fold_cpu_seconds_total"]) > 0
        assert http.get(f"{PREFIX}/", headers={"Authorization": "Token wrong"}).status_code == 401

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=WAIT) == 0


def _answer(sock: socket.socket) -> bytes:
    """One HTTP/1.1 answer with a Content-Length, read whole; b"" when the server closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_an_idle_connection_is_kept_longer_than_httpx_reuses_one(server: tuple[str, subprocess.Popen[bytes]]) -> None:
    """httpx (and the reference's clients built on it) reuse a connection idle for up to 5 s: the server
    must not close it at that same moment, or a request sent as it closes gets no answer at all."""
    base, proc = server
    with httpx.Client(base_url=base) as http:
        wait_for(lambda: http.get("/readyz").status_code == 200, "readiness", proc)
    port = int(base.rsplit(":", 1)[1])
    request = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6.0)  # idle past httpx's default keepalive_expiry
        sock.sendall(request)
        assert _answer(sock).startswith(b"HTTP/1.1 200")
