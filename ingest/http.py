"""`POST /api/events/`: the ingest endpoint for publishers that are not written in Python.

The body is one event or a JSON array of events, as EVENTS.md describes them. Every event is
completed and validated exactly as the Python publisher does it; if any is invalid, nothing is
published and the answer is 400 with every error's index and field. Otherwise the events are sent
and the answer, 202 `{"event_ids": [...]}`, comes once Kafka has acknowledged all of them.

A client that retries after a timeout or a 503 should resend the same `event_id`s: the projector
ignores an `event_id` it has already applied, so a retry never counts twice.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from auth.http import check
from auth.tokens import INGEST_ROLES, TokenStore
from ingest.envelope import complete
from ingest.publisher import InvalidEvent, Prepared, Publisher

PATH = "/api/events/"
MAX_BODY_BYTES = 1024 * 1024
ALLOWED = "POST, OPTIONS"
# How long one request waits for Kafka's acknowledgements before answering 503.
ACK_TIMEOUT_SECONDS = 30.0


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


class IngestEndpoint:
    """The endpoint as a plain ASGI app, so that its route takes every method and the 405 body is JSON."""

    def __init__(self, publisher: Publisher, tokens: TokenStore) -> None:
        self.publisher = publisher
        self.tokens = tokens
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
        try:
            events = await self._read_events(request)
        except _BodyTooLarge:
            return _detail(f"The body is larger than {MAX_BODY_BYTES} bytes.", 413)
        except _BadRequest as exc:
            return JSONResponse(exc.body, status_code=400)
        except ClientDisconnect:
            return _detail("The client disconnected before the body was read.", 400)
        # Completing a turn may run scrypt (~50 ms) and sending waits for Kafka: keep both off the loop.
        return await run_in_threadpool(self._publish, events)

    async def _read_events(self, request: Request) -> list[Any]:
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
        try:
            body = _loads(b"".join(chunks))
        except (ValueError, RecursionError) as exc:
            raise _BadRequest({"detail": f"The body is not valid JSON: {exc}"}) from None
        if isinstance(body, dict):
            return [body]
        if isinstance(body, list):
            if not body:
                raise _BadRequest({"detail": "The array holds no event."})
            return body
        raise _BadRequest({"detail": "The body must be one event (a JSON object) or an array of events."})

    def _publish(self, events: list[Any]) -> Response:
        prepared: list[Prepared] = []
        errors: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                errors.append({"index": index, "field": "(event)", "message": "must be a JSON object"})
                continue
            try:
                prepared.append(
                    self.publisher.validate(
                        _dumps(complete(event, self.publisher.user_slug_salt, drop_ip=self.publisher.drop_ip))
                    )
                )
            except InvalidEvent as exc:
                errors.extend({"index": index, "field": e.field, "message": e.message} for e in exc.errors)
            except (ValueError, TypeError, RecursionError) as exc:  # not encodable back to JSON
                errors.append({"index": index, "field": "(event)", "message": str(exc)})
        if errors:
            return JSONResponse({"errors": errors}, status_code=400)
        too_large = [i for i, p in enumerate(prepared) if not self.publisher.fits(p)]
        if too_large:
            limit = self.publisher.max_record_bytes
            return JSONResponse(
                {
                    "detail": f"Kafka takes records of at most {limit} bytes; nothing was published.",
                    "errors": [{"index": i, "field": "(event)", "message": "too large for Kafka"} for i in too_large],
                },
                status_code=413,
            )
        # Every event is valid: only now is anything sent, so a bad batch publishes nothing.
        results = [self.publisher.send(p) for p in prepared]
        acknowledged: list[str] = []
        try:
            for result in results:
                result.get(ACK_TIMEOUT_SECONDS)
                acknowledged.append(result.event_id)
        except Exception as exc:  # any Kafka error: the client may retry with the same event_ids
            return JSONResponse(
                {
                    "detail": f"Kafka did not acknowledge every event ({type(exc).__name__}); "
                    "retry with the same event_ids, duplicates are ignored.",
                    "event_ids": [r.event_id for r in results],
                    "acknowledged": acknowledged,
                },
                status_code=503,
            )
        return JSONResponse({"event_ids": acknowledged}, status_code=202)


def ingest_routes(publisher: Publisher, token_store: TokenStore) -> list[Route]:
    """The ingest endpoint's routes, to mount next to the API (`create_app(..., extra_routes=...)`)."""
    return [Route(PATH, IngestEndpoint(publisher, token_store), name="ingest_events")]
