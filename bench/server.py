"""`chat-analytics serve` (API and projector in one process) as a child on a free loopback port."""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import children
from loopback.ports import free_port
from replicas.process import serve_args

HOST = "127.0.0.1"
TOKEN = "bench"
TOKENS_ENV = f"{TOKEN}:staff"
READY_TIMEOUT_S = 180.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str, timeout_s: float = 30.0) -> tuple[int, Any]:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=timeout_s)
        try:
            connection.request("GET", path, headers={"Authorization": f"Token {TOKEN}"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        try:
            return response.status, orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return response.status, body.decode(errors="replace")

    def fold_counters(self) -> dict[str, float]:
        """The projector's batch counters of /metrics (`chat_analytics_projector_batches_total`, ...), by
        their name without that prefix."""
        _status, body = self.get("/metrics")
        prefix = "chat_analytics_projector_"
        names = ("batches_total", "batch_records_total", "fold_seconds_total", "fold_cpu_seconds_total")
        counters = {}
        for line in str(body or "").splitlines():
            name, _, value = line.partition(" ")
            if name.startswith(prefix) and name[len(prefix) :] in names:
                counters[name[len(prefix) :]] = float(value)
        return counters

    def positions(self) -> int:
        """How many records the server's projector has folded so far (the sum of its positions)."""
        _status, body = self.get("/readyz")
        return sum(int(p["position"]) for p in (body or {}).get("partitions", []))

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until /readyz says the projector caught up with the topic as it was at start-up."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with code {self.process.returncode}:\n{children.tail(self.log)}")
            try:
                status, body = self.get("/readyz", timeout_s=5.0)
                if status == 200:
                    return
                last = f"{status} {body}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise TimeoutError(
            f"serve was not ready after {timeout_s} s (last /readyz: {last}):\n{children.tail(self.log)}"
        )

    def wait_folded(self, records: int, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Until the projector has folded `records` records; returns how long that took."""
        started = time.monotonic()
        while self.positions() < records:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with code {self.process.returncode}:\n{children.tail(self.log)}")
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"serve folded {self.positions()} of {records} records in {timeout_s} s")
            time.sleep(0.1)
        return time.monotonic() - started

    def stop(self) -> None:
        children.stop(self.process)


def start_server(bootstrap_servers: str, topic: str, db: Path, group_id: str, env: dict[str, str], log: Path) -> Server:
    port = free_port()
    command = children.chat_analytics(
        *serve_args(port=port, bootstrap_servers=bootstrap_servers, topic=topic, db=db, group_id=group_id, host=HOST)
    )
    return Server(children.start(command, env, log), port, log)


class CheckpointWatch(threading.Thread):
    """Notes when the file's write-ahead log shrinks: DuckDB checkpointed it into the file. A checkpoint
    can hold up readers, so the API benchmark reports them next to its p99s."""

    def __init__(self, db: Path, every_s: float = 0.02) -> None:
        super().__init__(name="checkpoint-watch", daemon=True)
        self.wal = db.with_name(db.name + ".wal")
        self.every_s = every_s
        self.started = time.monotonic()
        self.checkpoints: list[dict[str, float | int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        previous = 0
        while not self.stopping.wait(self.every_s):
            try:
                size = self.wal.stat().st_size
            except OSError:
                size = 0
            if size < previous:
                now = time.monotonic()
                self.checkpoints.append(
                    {"at_s": round(now - self.started, 2), "monotonic": round(now, 3), "wal_bytes": previous}
                )
            previous = size

    def stop(self) -> list[dict[str, float | int]]:
        self.stopping.set()
        self.join(timeout=5)
        return self.checkpoints
