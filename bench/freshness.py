"""Benchmark 3: how long after the publisher's acknowledgement the API returns an event.

A publisher process keeps the topic busy at a steady rate. Meanwhile this process publishes one
probe turn every `interval` (a unique session id each, through the validated `Publisher`), waits
for Kafka's acknowledgement (`future.get()`), and hands the probe to a poller thread that asks
`/api/anonymous-chat-interactions/{uuid}/` every few milliseconds until it answers 200. The
freshness of a probe is the time from its acknowledgement to that first 200.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections import deque
from typing import Any

from bench.server import HOST, TOKEN, Server
from bench.stats import percentile, summary_ms
from ingest.publisher import Publisher

PREFIX = "/api/anonymous-chat-interactions"
POLL_PAUSE_S = 0.002
GIVE_UP_S = 10.0  # a probe not visible after this long counts as missed
TARGET_P99_MS = 1000.0


class _Poller(threading.Thread):
    def __init__(self, server: Server) -> None:
        super().__init__(name="freshness-poller", daemon=True)
        self.port = server.port
        self.waiting: deque[tuple[str, float]] = deque()
        self.lock = threading.Lock()
        self.seen: list[float] = []
        self.missed = 0
        self.errors: list[str] = []
        self.round_times: list[float] = []
        self.stopping = threading.Event()

    def add(self, interaction_uuid: str, acked_at: float) -> None:
        with self.lock:
            self.waiting.append((interaction_uuid, acked_at))

    def outstanding(self) -> int:
        with self.lock:
            return len(self.waiting)

    def run(self) -> None:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        headers = {"Authorization": f"Token {TOKEN}"}
        try:
            while not self.stopping.is_set():
                with self.lock:
                    probes = list(self.waiting)
                if not probes:
                    time.sleep(POLL_PAUSE_S)
                    continue
                round_started = time.perf_counter()
                for interaction_uuid, acked_at in probes:
                    try:
                        connection.request(
                            "GET", f"/api/anonymous-chat-interactions/{interaction_uuid}/", headers=headers
                        )
                        response = connection.getresponse()
                        response.read()
                    except (OSError, http.client.HTTPException) as exc:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                        connection.close()
                        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
                        continue
                    now = time.perf_counter()
                    if response.status == 200:
                        self._done(interaction_uuid)
                        self.seen.append(now - acked_at)
                    elif response.status != 404:
                        self.errors.append(f"HTTP {response.status}")
                    elif now - acked_at > GIVE_UP_S:
                        self._done(interaction_uuid)
                        self.missed += 1
                self.round_times.append(time.perf_counter() - round_started)
                time.sleep(POLL_PAUSE_S)
        finally:
            connection.close()

    def _done(self, interaction_uuid: str) -> None:
        with self.lock:
            self.waiting = deque(p for p in self.waiting if p[0] != interaction_uuid)


def run(
    server: Server, bootstrap_servers: str, topic: str, *, seconds: float, interval_s: float, background_rate: float
) -> dict[str, Any]:
    """Probes for `seconds` while the caller's publisher process runs at `background_rate`."""
    poller = _Poller(server)
    poller.start()
    run_id = uuid.uuid4().hex[:8]
    ack_times: list[float] = []
    folded_before = server.positions()
    folds_before = server.fold_counters()
    started = time.monotonic()
    probes = 0
    with Publisher(bootstrap_servers, topic) as publisher:
        next_at = time.perf_counter()
        deadline = next_at + seconds
        while next_at < deadline:
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            interaction_uuid = str(uuid.uuid4())
            sent_at = time.perf_counter()
            publisher.turn_recorded(
                interaction_uuid=interaction_uuid,
                session_id=f"bench-freshness-{run_id}-{probes}",
                user_slug="",
                user_input=f"freshness probe {probes}",
            ).get(timeout=30)
            acked_at = time.perf_counter()
            ack_times.append(acked_at - sent_at)
            poller.add(interaction_uuid, acked_at)
            probes += 1
            next_at += interval_s
    wait_until = time.monotonic() + GIVE_UP_S + 1.0
    while poller.outstanding() and time.monotonic() < wait_until:
        time.sleep(0.05)
    poller.stopping.set()
    poller.join(timeout=15)
    elapsed = time.monotonic() - started
    folded_after = server.positions()
    folds = batches_between(folds_before, server.fold_counters(), elapsed)
    fresh = summary_ms(poller.seen)
    p99 = fresh["p99_ms"]
    return {
        "seconds": seconds,
        "probe_interval_s": interval_s,
        "background_rate_events_per_s": background_rate,
        "probes": probes,
        "seen": len(poller.seen),
        "missed": poller.missed + poller.outstanding(),
        "poll_errors": len(poller.errors),
        "first_poll_error": poller.errors[0] if poller.errors else None,
        "freshness": fresh,
        "publisher_ack": summary_ms(ack_times),
        # The poller's resolution: a probe is seen at most one round (plus the pause) after it is there.
        "poll_round_p50_ms": round((percentile(poller.round_times, 50) or 0.0) * 1000, 3),
        "events_folded_during_run": folded_after - folded_before,
        "events_folded_per_s": round((folded_after - folded_before) / elapsed, 1) if elapsed > 0 else None,
        "projector_batches": folds,
        "target_p99_ms": TARGET_P99_MS,
        "met": bool(p99 is not None and p99 < TARGET_P99_MS and poller.missed == 0 and not poller.errors),
    }


def batches_between(before: dict[str, float], after: dict[str, float], elapsed_s: float) -> dict[str, Any] | None:
    """What the projector's batches were like between two readings of its counters: how many, how large,
    what one cost, and the share of the time it spent folding (a freshness figure is about two of them)."""
    if not before or not after or elapsed_s <= 0:
        return None
    batches = after["batches_total"] - before["batches_total"]
    if batches <= 0:
        return {"batches": 0}
    seconds = after["fold_seconds_total"] - before["fold_seconds_total"]
    cpu_seconds = after["fold_cpu_seconds_total"] - before["fold_cpu_seconds_total"]
    return {
        "batches": int(batches),
        "mean_records": round((after["batch_records_total"] - before["batch_records_total"]) / batches, 1),
        "mean_fold_ms": round(seconds / batches * 1000, 1),
        "mean_fold_cpu_ms": round(cpu_seconds / batches * 1000, 1),
        "folding_share": round(seconds / elapsed_s, 3),
    }
