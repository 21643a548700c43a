"""`POST /api/events/`: the ingest endpoint for publishers that are not written in Python.

The body is one event or a JSON array of at most `max_events` events (default 500; more is a 413),
as the event contract describes them. Every event is completed and validated exactly as the Python
publisher does it; if any is invalid, nothing is published and the answer is 400 with the first
`MAX_ERRORS_LISTED` errors (index and field) and their total count. The costly part of completing a
turn, the scrypt `user_slug`, is derived only once the whole batch is valid. Otherwise the events are
sent and the answer, 202 `{"event_ids": [...]}`, comes once Kafka has acknowledged all of them.

Faults never reach the read endpoints: the work runs on a small thread pool of its own (not the
one the reads use), at most `MAX_IN_FLIGHT` requests are taken at once (more: 503), each token is
rate-limited (429), and without Kafka the answer is a 503 with `Retry-After` within
`ACK_TIMEOUT_SECONDS` plus the producer's `max_block_ms`, never a 500 and never a 202.

A client that retries after a timeout or a 503 should resend the same `event_id`s: the projector
ignores an `event_id` it has already applied, so a retry never counts twice.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from auth.http import check
from auth.tokens import INGEST_ROLES, TokenStore
from ingest.envelope import complete, derive_slug
from ingest.publisher import BrokerUnavailable, InvalidEvent, Prepared, Publisher
from schemas.settings import DEFAULT_INGEST_MAX_EVENTS, DEFAULT_INGEST_RATE

PATH = "/api/events/"
MAX_BODY_BYTES = 1024 * 1024
ALLOWED = "POST, OPTIONS"
# How long one request waits for Kafka's acknowledgements before answering 503 (the producer's own
# `max_block_ms` bounds the wait inside `send()` when Kafka is unreachable).
ACK_TIMEOUT_SECONDS = 5.0
# A client that sends its body this slowly is cut off (408): it would hold a slot meanwhile.
BODY_TIMEOUT_SECONDS = 10.0
MAX_ERRORS_LISTED = 20
# Requests validated or published at once; more get a 503 at once rather than queueing.
MAX_IN_FLIGHT = 8
WORKERS = 4
RETRY_AFTER_BROKER_S = "5"


class _BodyTooLarge(Exception):
    pass


class _BadRequest(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.body = body


def _detail(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(body: bytes) -> Any:
    # The standard library keeps integers of any size exact (orjson turns big ones into floats, which
    # would silently change an assistant block), and NaN/Infinity are refused as RFC 8259 requires.
    return json.loads(body, parse_constant=_reject_constant)


def _dumps(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class RateLimiter:
    """A token bucket per API token: `rate` events per second, bursts of up to `burst` events."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, rate)
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # token id -> (events available, when)

    def take(self, key: str, events: int) -> float | None:
        """None when `events` may go now (they are counted), else the seconds to wait first."""
        if self.rate <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            available, since = self._buckets.get(key, (self.burst, now))
            available = min(self.burst, available + (now - since) * self.rate)
            if events > available:
                self._buckets[key] = (available, now)
                return (events - available) / self.rate
            self._buckets[key] = (available - events, now)
            return None


class IngestEndpoint:
    """The endpoint as a plain ASGI app, so that its route takes every method and the 405 body is JSON."""

    def __init__(
        self,
        publisher: Publisher,
        tokens: TokenStore,
        *,
        max_events: int = DEFAULT_INGEST_MAX_EVENTS,
        rate: float = DEFAULT_INGEST_RATE,
    ) -> None:
        self.publisher = publisher
        self.tokens = tokens
        self.max_events = max_events
        # A burst of one full request is always allowed, however low the rate.
        self.limiter = RateLimiter(rate, burst=max(rate, max_events))
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ingest")
        self._in_flight = 0
        self.__name__ = "ingest_events"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(Request(scope, receive))
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        # As the API does (and Django REST framework): authenticate first, then look at the method.
        denied = check(request, self.tokens, INGEST_ROLES)
        if denied is not None:
            return denied
        if request.method == "OPTIONS":
            return JSONResponse({"name": "Ingest events", "methods": ALLOWED.split(", ")}, headers={"Allow": ALLOWED})
        if request.method != "POST":
            return _detail(f'Method "{request.method}" not allowed.', 405, {"Allow": ALLOWED})
        if self._in_flight >= MAX_IN_FLIGHT:
            return _detail("Too many ingest requests at once; retry shortly.", 503, {"Retry-After": "1"})
        self._in_flight += 1  # the event loop is single-threaded: no lock needed
        try:
            return await self._handle(request)
        finally:
            self._in_flight -= 1

    async def _handle(self, request: Request) -> Response:
        try:
            body = await asyncio.wait_for(self._read_body(request), BODY_TIMEOUT_SECONDS)
            events = await self._run(_parse_events, body)
        except _BodyTooLarge:
            return _detail(f"The body is larger than {MAX_BODY_BYTES} bytes.", 413)
        except _BadRequest as exc:
            return JSONResponse(exc.body, status_code=400)
        except ClientDisconnect:
            return _detail("The client disconnected before the body was read.", 400)
        except TimeoutError:
            return _detail(f"The body did not arrive within {BODY_TIMEOUT_SECONDS:.0f} s.", 408)
        if len(events) > self.max_events:
            return _detail(
                f"At most {self.max_events} events per request; this one has {len(events)}. "
                "Split it into several requests.",
                413,
            )
        wait = self.limiter.take(getattr(request.state, "token_id", ""), len(events))
        if wait is not None:
            return _detail(
                f"Rate limit of {self.limiter.rate:g} events per second for this token exceeded; retry later.",
                429,
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if not self.publisher.connected:
            return _unavailable("Kafka is not reachable; nothing was published. Retry later.")
        return await self._run(self._publish, events, time.monotonic())

    async def _run(self, work: Any, *args: Any) -> Any:
        # Our own pool: ingest work (JSON, scrypt, waiting for Kafka) must never hold a thread the
        # read endpoints need.
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    async def _read_body(self, request: Request) -> bytes:
        content_type = request.headers.get("content-type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise _BadRequest({"detail": f'Unsupported media type "{content_type}": send application/json.'})
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise _BadRequest({"detail": "Content-Length is not a number."})
            if int(declared) > MAX_BODY_BYTES:
                raise _BodyTooLarge
        # Counted while reading too: a chunked body has no Content-Length, and a declared one can lie.
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _publish(self, events: list[Any], queued_at: float) -> Response:
        # Time spent waiting for a worker counts against the wait for Kafka (at least a second is left
        # for it), so that a queue of requests behind an unreachable broker is answered within the bound.
        ack_wait = max(1.0, ACK_TIMEOUT_SECONDS - (time.monotonic() - queued_at))
        salt = self.publisher.user_slug_salt
        # First every event is validated with a stand-in slug: a bad batch costs no scrypt at all.
        completed: list[tuple[dict[str, Any], dict[str, Any]]] = []
        errors: list[dict[str, Any]] = []
        total = 0

        def note(index: int, field: str, message: str) -> None:
            nonlocal total
            total += 1
            if len(errors) < MAX_ERRORS_LISTED:
                errors.append({"index": index, "field": field, "message": message})

        for index, event in enumerate(events):
            if not isinstance(event, dict):
                note(index, "(event)", "must be a JSON object")
                continue
            try:
                draft = complete(event, salt, derive=False, drop_ip=self.publisher.drop_ip)
                self.publisher.validate(_dumps(draft))
                completed.append((event, draft))
            except InvalidEvent as exc:
                for e in exc.errors:
                    note(index, e.field, e.message)
            except (ValueError, TypeError, RecursionError) as exc:  # not encodable back to JSON
                note(index, "(event)", str(exc))
        if total:
            body: dict[str, Any] = {"errors": errors, "error_count": total}
            if total > len(errors):
                body["detail"] = f"{total} errors; the first {len(errors)} are listed. Nothing was published."
            return JSONResponse(body, status_code=400)
        prepared: list[Prepared] = []
        for index, (event, draft) in enumerate(completed):
            try:
                prepared.append(self.publisher.validate(_dumps(derive_slug(event, draft, salt))))
            except InvalidEvent as exc:
                for e in exc.errors:
                    note(index, e.field, e.message)
        if total:
            return JSONResponse({"errors": errors, "error_count": total}, status_code=400)
        too_large = [i for i, p in enumerate(prepared) if not self.publisher.fits(p)]
        if too_large:
            limit = self.publisher.max_record_bytes
            return JSONResponse(
                {
                    "detail": f"Kafka takes records of at most {limit} bytes; nothing was published.",
                    "errors": [
                        {"index": i, "field": "(event)", "message": "too large for Kafka"}
                        for i in too_large[:MAX_ERRORS_LISTED]
                    ],
                    "error_count": len(too_large),
                },
                status_code=413,
            )
        # Every event is valid: only now is anything sent, so a bad batch publishes nothing.
        deadline = time.monotonic() + ack_wait
        results = []
        acknowledged: list[str] = []
        try:
            for p in prepared:
                results.append(self.publisher.send(p))
            for result in results:
                result.get(max(0.0, deadline - time.monotonic()))
                acknowledged.append(result.event_id)
        except Exception as exc:  # any Kafka error: the client may retry with the same event_ids
            reason = "Kafka is not reachable" if isinstance(exc, BrokerUnavailable) else type(exc).__name__
            return _unavailable(
                f"Kafka did not acknowledge every event ({reason}); "
                "retry with the same event_ids, duplicates are ignored.",
                event_ids=[p.event_id for p in prepared],
                acknowledged=acknowledged,
            )
        return JSONResponse({"event_ids": acknowledged}, status_code=202)


def _parse_events(raw: bytes) -> list[Any]:
    try:
        body = _loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _BadRequest({"detail": f"The body is not valid JSON: {_short(exc)}"}) from None
    if isinstance(body, dict):
        return [body]
    if isinstance(body, list):
        if not body:
            raise _BadRequest({"detail": "The array holds no event."})
        return body
    raise _BadRequest({"detail": "The body must be one event (a JSON object) or an array of events."})


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]


def _unavailable(message: str, **extra: Any) -> Response:
    return JSONResponse({"detail": message, **extra}, status_code=503, headers={"Retry-After": RETRY_AFTER_BROKER_S})


def ingest_routes(
    publisher: Publisher,
    token_store: TokenStore,
    *,
    max_events: int = DEFAULT_INGEST_MAX_EVENTS,
    rate: float = DEFAULT_INGEST_RATE,
) -> list[Route]:
    """The ingest endpoint's routes, to mount next to the API (`create_app(..., extra_routes=...)`)."""
    endpoint = IngestEndpoint(publisher, token_store, max_events=max_events, rate=rate)
    return [Route(PATH, endpoint, name="ingest_events")]
