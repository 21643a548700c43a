"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Request counts and a latency histogram per endpoint (the route's path template, so that ids in
paths do not explode the label space), plus the projector's status as gauges and counters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "(unmatched)"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Mapping[str, Any]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs.items()) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1


class RequestMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, _Histogram] = {}

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (endpoint, method, str(status))
            self._counts[key] = self._counts.get(key, 0) + 1
            self._latency.setdefault(endpoint, _Histogram()).observe(seconds)

    def lines(self) -> Iterable[str]:
        with self._lock:
            counts = sorted(self._counts.items())
            latency = sorted((k, (list(h.buckets), h.count, h.sum)) for k, h in self._latency.items())
        yield "# HELP chat_analytics_http_requests_total HTTP requests served, by endpoint, method and status."
        yield "# TYPE chat_analytics_http_requests_total counter"
        for (endpoint, method, status), n in counts:
            labels = _labels({"endpoint": endpoint, "method": method, "status": status})
            yield f"chat_analytics_http_requests_total{labels} {n}"
        yield "# HELP chat_analytics_http_request_duration_seconds Time to serve a request, by endpoint."
        yield "# TYPE chat_analytics_http_request_duration_seconds histogram"
        for endpoint, (buckets, count, total) in latency:
            for bound, n in zip(BUCKETS, buckets, strict=True):
                labels = _labels({"endpoint": endpoint, "le": _number(bound)})
                yield f"chat_analytics_http_request_duration_seconds_bucket{labels} {n}"
            labels = _labels({"endpoint": endpoint, "le": "+Inf"})
            yield f"chat_analytics_http_request_duration_seconds_bucket{labels} {count}"
            yield f"chat_analytics_http_request_duration_seconds_sum{_labels({'endpoint': endpoint})} {total!r}"
            yield f"chat_analytics_http_request_duration_seconds_count{_labels({'endpoint': endpoint})} {count}"


class MetricsMiddleware:
    """Times every HTTP request and counts it under its route's path template."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router records the matched route in the (shared) scope.
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe(endpoint, scope["method"], status, time.perf_counter() - started)


def projector_lines(status: Mapping[str, Any] | None) -> Iterable[str]:
    if status is None:
        return
    yield "# HELP chat_analytics_projector_caught_up 1 once the projector reached the end offsets seen at start-up."
    yield "# TYPE chat_analytics_projector_caught_up gauge"
    yield f"chat_analytics_projector_caught_up {1 if status.get('caught_up') else 0}"
    yield "# HELP chat_analytics_projector_lag Records between the projector's position and the partition's end."
    yield "# TYPE chat_analytics_projector_lag gauge"
    for p in status.get("partitions") or []:
        if p.get("lag") is not None:
            yield f"chat_analytics_projector_lag{_labels({'partition': p['partition']})} {int(p['lag'])}"
    if status.get("lag_s") is not None:
        yield "# HELP chat_analytics_projector_lag_seconds How long the file has lacked records the projector knew of."
        yield "# TYPE chat_analytics_projector_lag_seconds gauge"
        yield f"chat_analytics_projector_lag_seconds {float(status['lag_s'])!r}"
    yield "# HELP chat_analytics_projector_events_applied_total Events applied to the read model, by type."
    yield "# TYPE chat_analytics_projector_events_applied_total counter"
    for type_, n in sorted((status.get("events_applied") or {}).items()):
        yield f"chat_analytics_projector_events_applied_total{_labels({'type': type_})} {int(n)}"
    yield "# HELP chat_analytics_projector_dead_letters_total Events set aside as dead letters, by reason."
    yield "# TYPE chat_analytics_projector_dead_letters_total counter"
    for reason, n in sorted((status.get("dead_letters") or {}).items()):
        yield f"chat_analytics_projector_dead_letters_total{_labels({'reason': reason})} {int(n)}"
    yield "# HELP chat_analytics_projector_pending_events Events waiting for the turn they refer to."
    yield "# TYPE chat_analytics_projector_pending_events gauge"
    yield f"chat_analytics_projector_pending_events {int(status.get('pending_events') or 0)}"
    yield from fold_lines(status.get("folds"))
    yield from privacy_lines(status.get("privacy"))
    if "rebuild" in status:
        yield from rebuild_lines(status.get("rebuild"))


def fold_lines(folds: Mapping[str, Any] | None) -> Iterable[str]:
    """The projector's batches since start-up and the time folding them took: their rate of change says how
    busy folding keeps the projector, and how large and how costly a batch is at the current traffic."""
    if not folds:
        return
    counters = (
        ("batches_total", "Batches (fold transactions) committed since start-up.", int(folds.get("batches") or 0)),
        ("batch_records_total", "Records in those batches.", int(folds.get("records") or 0)),
        ("fold_seconds_total", "Wall time folding them, parsing included.", float(folds.get("seconds") or 0.0)),
        (
            "fold_cpu_seconds_total",
            "CPU time of the folding thread meanwhile (DuckDB's worker threads and the live parser not counted).",
            float(folds.get("cpu_seconds") or 0.0),
        ),
    )
    for name, help_text, value in counters:
        yield f"# HELP chat_analytics_projector_{name} {help_text}"
        yield f"# TYPE chat_analytics_projector_{name} counter"
        yield f"chat_analytics_projector_{name} {_number(value)}"


def privacy_lines(privacy: Mapping[str, Any] | None) -> Iterable[str]:
    """Retention and erasures (docs/privacy.md), as the served file counts them."""
    if not privacy:
        return
    counters = (
        (
            "turns_purged_total",
            "Turns removed (or dropped on arrival) by the retention policy.",
            "turns_purged_by_retention",
        ),
        ("erasures_applied_total", "privacy.erasure.requested events applied.", "erasures_applied"),
        ("erasure_rows_removed_total", "Turns (with everything attached) removed by erasures.", "erasure_rows_removed"),
    )
    for name, help_text, key in counters:
        yield f"# HELP chat_analytics_privacy_{name} {help_text}"
        yield f"# TYPE chat_analytics_privacy_{name} counter"
        yield f"chat_analytics_privacy_{name} {int(privacy.get(key) or 0)}"
    days = privacy.get("retention_days")
    if days is not None:
        yield "# HELP chat_analytics_privacy_retention_days The retention policy in days (-1: keep everything)."
        yield "# TYPE chat_analytics_privacy_retention_days gauge"
        yield f"chat_analytics_privacy_retention_days {int(days)}"


def rebuild_lines(rebuild: Mapping[str, Any] | None) -> Iterable[str]:
    """The blue/green rebuild's progress; all zero when none has run since start-up."""
    rebuild = rebuild or {}
    running = rebuild.get("state") in ("running", "switching")
    left = rebuild.get("seconds_left")
    gauges = (
        ("running", "1 while a rebuild builds or switches to a new read-model file.", 1 if running else 0),
        ("events_done", "Records the rebuild has folded into the new file.", rebuild.get("events_done") or 0),
        ("events_total", "Records the rebuild has to fold (grows with the topic).", rebuild.get("events_total") or 0),
        ("events_per_second", "The rebuild's recent folding rate.", rebuild.get("events_per_second") or 0),
        ("seconds_left", "Estimated time until the new file catches up (-1: unknown).", -1 if left is None else left),
        (
            "failed",
            "1 when the last rebuild failed (see /readyz or GET /api/admin/rebuild/).",
            1 if rebuild.get("state") == "failed" else 0,
        ),
    )
    for name, help_text, value in gauges:
        yield f"# HELP chat_analytics_rebuild_{name} {help_text}"
        yield f"# TYPE chat_analytics_rebuild_{name} gauge"
        yield f"chat_analytics_rebuild_{name} {_number(value)}"


def health_lines(disk: Mapping[str, Any] | None, failed: bool) -> Iterable[str]:
    yield "# HELP chat_analytics_read_model_failed 1 once DuckDB invalidated the read model (the process exits)."
    yield "# TYPE chat_analytics_read_model_failed gauge"
    yield f"chat_analytics_read_model_failed {1 if failed else 0}"
    if disk is None or disk.get("free_bytes") is None:
        return
    yield "# HELP chat_analytics_data_dir_free_bytes Free bytes of the filesystem holding the read-model file."
    yield "# TYPE chat_analytics_data_dir_free_bytes gauge"
    yield f"chat_analytics_data_dir_free_bytes {int(disk['free_bytes'])}"
    yield "# HELP chat_analytics_data_dir_low_space 1 while the free space is below the warning threshold."
    yield "# TYPE chat_analytics_data_dir_low_space gauge"
    yield f"chat_analytics_data_dir_low_space {1 if disk.get('warning') else 0}"


def freshness_lines(status: Mapping[str, Any] | None) -> Iterable[str]:
    if status is None:
        return
    folding = 0 if status.get("error") else 1
    yield "# HELP chat_analytics_projector_folding 0 while the projector cannot fold (broker or database error)."
    yield "# TYPE chat_analytics_projector_folding gauge"
    yield f"chat_analytics_projector_folding {folding}"
    newest = status.get("newest_record_at")
    if newest:
        stamp = datetime.fromisoformat(str(newest).replace("Z", "+00:00")).timestamp()
        yield "# HELP chat_analytics_projector_newest_event_timestamp_seconds Kafka time of the newest folded record."
        yield "# TYPE chat_analytics_projector_newest_event_timestamp_seconds gauge"
        yield f"chat_analytics_projector_newest_event_timestamp_seconds {stamp!r}"


def cache_lines(cache: str, hit: str, missed: str, hits: int, misses: int) -> Iterable[str]:
    """The two counters of one of the API's caches: `chat_analytics_{cache}_hits_total` and `_misses_total`,
    described by `hit` and `missed`."""
    for kind, text, value in (("hits", hit, hits), ("misses", missed, misses)):
        name = f"chat_analytics_{cache}_{kind}_total"
        yield f"# HELP {name} {text}"
        yield f"# TYPE {name} counter"
        yield f"{name} {value}"


def together_lines(kinds: Mapping[str, tuple[int, int]]) -> Iterable[str]:
    """Per kind of question answered together (`api.coalescing`): the reads, and the questions they
    answered (questions / reads is the mean batch)."""
    for counter, text, at in (
        ("together_reads_total", "Reads that answered cache misses of one kind together.", 0),
        ("together_questions_total", "Cache misses answered by those reads.", 1),
    ):
        name = f"chat_analytics_{counter}"
        yield f"# HELP {name} {text}"
        yield f"# TYPE {name} counter"
        for kind, counts in kinds.items():
            yield f'{name}{{kind="{kind}"}} {counts[at]}'


def render(
    metrics: RequestMetrics,
    status_provider: Callable[[], Mapping[str, Any]] | None,
    *,
    disk: Mapping[str, Any] | None = None,
    failed: bool = False,
    cache_counts: tuple[int, int] = (0, 0),
    row_counts: tuple[int, int] = (0, 0),
    together: Mapping[str, tuple[int, int]] | None = None,
) -> str:
    status = status_provider() if status_provider is not None else None
    lines = [
        *metrics.lines(),
        *cache_lines(
            "answer_cache",
            "Answers served from the snapshot cache (docs/api.md).",
            "Answers computed from the read model.",
            *cache_counts,
        ),
        *cache_lines(
            "row_cache",
            "Rows of list pages served from the row cache (docs/api.md).",
            "Rows of list pages read from the read model.",
            *row_counts,
        ),
        *together_lines(together or {}),
        *projector_lines(status),
        *freshness_lines(status),
        *health_lines(disk, failed),
    ]
    return "\n".join(lines) + "\n"
