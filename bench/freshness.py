"""Benchmark 3: how long after the publisher's acknowledgement the API returns an event.

A publisher process keeps the topic busy at a steady rate. Meanwhile this process publishes one
probe turn every `interval` (a unique session id each, through the validated `Publisher`) and waits
for Kafka's acknowledgement (`future.get()`), which names the partition and offset the probe got. The
freshness of a probe is the time from its acknowledgement to the first 200 of
`/api/anonymous-chat-interactions/{uuid}/`. Two ways to ask (`probe`):

- `wait` (the default): one request per probe, with `min_position` at the probe's offset: the server
  holds it (on its event loop, no thread) until its projector has folded that far, then answers. This
  is how a client reads its own write, and the answer comes as soon as the commit that holds the probe.
- `poll`: a thread asks for every probe not yet seen, one after the other, every few milliseconds,
  until it answers 200. At 2,000 events/s that is ~100-150 requests/s, whose CPU the server takes from
  the projector on a small machine, and a probe is seen up to one round of them late.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.server import HOST, TOKEN, Server
from bench.stats import percentile, summary_ms
from ingest.publisher import Publisher
from schemas.position import Position

PREFIX = "/api/anonymous-chat-interactions"
POLL_PAUSE_S = 0.002
GIVE_UP_S = 10.0  # a probe not visible after this long counts as missed
TARGET_P99_MS = 1000.0
PROBES = ("wait", "poll")
# At most this many probes wait at once (10 a second, each for a second or two).
WAITERS = 64


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

    def add(self, interaction_uuid: str, acked_at: float, partition: int, offset: int) -> None:
        with self.lock:
            self.waiting.append((interaction_uuid, acked_at))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=15)

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


class _Waiter:
    """Each probe one request with `min_position` at its offset, which the server answers once its projector
    has folded that far (or with a 503 after its `--min-position-wait-ms`: then asked again)."""

    def __init__(self, server: Server) -> None:
        self.port = server.port
        self.headers = {"Authorization": f"Token {TOKEN}"}
        # The file's read-model version and the topic's tag, as the server's own position gives them.
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            connection.request("GET", f"{PREFIX}/?page_size=1", headers=self.headers)
            response = connection.getresponse()
            response.read()
            self.position = Position.parse(response.getheader("X-Read-Model-Position") or "")
        finally:
            connection.close()
        self.pool = ThreadPoolExecutor(WAITERS, thread_name_prefix="freshness-waiter")
        self.lock = threading.Lock()
        self.seen: list[float] = []
        self.missed = 0
        self.errors: list[str] = []
        self.round_times: list[float] = []  # no rounds: each probe is answered as soon as it is folded
        self.pending = 0

    def add(self, interaction_uuid: str, acked_at: float, partition: int, offset: int) -> None:
        offsets = [0] * (partition + 1)
        offsets[partition] = offset + 1  # the next offset to fold: the probe's is folded
        token = Position(self.position.version, self.position.tag, tuple(offsets)).token()
        with self.lock:
            self.pending += 1
        self.pool.submit(self._ask, f"{PREFIX}/{interaction_uuid}/?min_position={token}", acked_at)

    def outstanding(self) -> int:
        with self.lock:
            return self.pending

    def stop(self) -> None:
        self.pool.shutdown(wait=True)

    def _ask(self, path: str, acked_at: float) -> None:
        try:
            while True:
                # A connection per request: a kept one may have been closed by the server while idle.
                connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
                try:
                    connection.request("GET", path, headers=self.headers)
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    status = None
                finally:
                    connection.close()
                now = time.perf_counter()
                if status == 200:
                    with self.lock:
                        self.seen.append(now - acked_at)
                    return
                if status is not None and status != 503:
                    # Folded that far and still not there: something is wrong with the probe or the fold.
                    self.errors.append(f"HTTP {status} at the probe's position")
                if now - acked_at > GIVE_UP_S:
                    with self.lock:
                        self.missed += 1
                    return
                if status != 503:
                    time.sleep(POLL_PAUSE_S)
        finally:
            with self.lock:
                self.pending -= 1


def run(
    server: Server,
    bootstrap_servers: str,
    topic: str,
    *,
    seconds: float,
    interval_s: float,
    background_rate: float,
    probe: str = "wait",
) -> dict[str, Any]:
    """Probes for `seconds` while the caller's publisher process runs at `background_rate`; `probe`: how
    a probe is asked for (PROBES, see the module's docstring)."""
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}")
    poller: _Poller | _Waiter
    if probe == "wait":
        poller = _Waiter(server)
    else:
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
            stored = publisher.turn_recorded(
                interaction_uuid=interaction_uuid,
                session_id=f"bench-freshness-{run_id}-{probes}",
                user_slug="",
                user_input=f"freshness probe {probes}",
            ).get(timeout=30)
            acked_at = time.perf_counter()
            ack_times.append(acked_at - sent_at)
            poller.add(interaction_uuid, acked_at, stored.partition, stored.offset)
            probes += 1
            next_at += interval_s
    wait_until = time.monotonic() + GIVE_UP_S + 1.0
    while poller.outstanding() and time.monotonic() < wait_until:
        time.sleep(0.05)
    poller.stop()
    elapsed = time.monotonic() - started
    folded_after = server.positions()
    folds = batches_between(folds_before, server.fold_counters(), elapsed)
    fresh = summary_ms(poller.seen)
    p99 = fresh["p99_ms"]
    return {
        "seconds": seconds,
        "probe_interval_s": interval_s,
        "probe": probe,
        "background_rate_events_per_s": background_rate,
        "probes": probes,
        "seen": len(poller.seen),
        "missed": poller.missed + poller.outstanding(),
        "poll_errors": len(poller.errors),
        "first_poll_error": poller.errors[0] if poller.errors else None,
        "freshness": fresh,
        "publisher_ack": summary_ms(ack_times),
        # The poller's resolution: a probe is seen at most one round (plus the pause) after it is there.
        "poll_round_p50_ms": round((percentile(poller.round_times, 50) or 0.0) * 1000, 3) if probe == "poll" else None,
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
