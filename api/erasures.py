"""Staff-only erasure requests of a running `serve` (docs/privacy.md).

    POST /api/admin/erasures/    {"user_slug": S} or {"session_id": ID}, optional "reason": publishes a
                                 privacy.erasure.requested event; 202 {"event_id": ...} once Kafka has it
    GET  /api/admin/erasures/    the erasure records the read model holds, newest first

The request is checked before anything is published (400 naming the parameter). The projector folds
the event like any other: `GET` shows it, with the rows it removed, once it is applied.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from api.admin import PREFIX, _in_pool, _staff_only
from api.encoding import detail, json_response
from auth.tokens import TokenStore
from ingest.erasure import request_errors
from ingest.http import ACK_TIMEOUT_SECONDS, RETRY_AFTER_BROKER_S
from serving.handle import ReadModelHandle

PATH = f"{PREFIX}/erasures/"
MAX_BODY_BYTES = 16 * 1024

_LIST = """
SELECT event_id::VARCHAR, key_kind, key, occurred_at, reason, rows_removed
FROM erasures ORDER BY occurred_at DESC, event_id
"""

# Publishes an erasure (user_slug=, session_id=, reason=) and returns something with `event_id` and
# `get(timeout)`: `ingest.publisher.Publisher.request_erasure`.
RequestErasure = Callable[..., Any]


def erasure_routes(request_erasure: RequestErasure, handle: ReadModelHandle, tokens: TokenStore) -> Sequence[BaseRoute]:
    async def create(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return detail(f"The body is larger than {MAX_BODY_BYTES} bytes.", 413)
        try:
            fields = json.loads(body or b"{}")
        except ValueError as exc:
            return detail(f"The body is not valid JSON: {exc}", 400)
        if not isinstance(fields, dict):
            return detail('The body must be a JSON object: {"user_slug": ...} or {"session_id": ...}.', 400)
        errors = request_errors(fields)
        if errors:
            return json_response(errors, 400)
        # On the admin pool, never the reads': without Kafka a publish waits out its bounds there.
        return await _in_pool(_publish, fields)

    def _publish(fields: dict[str, Any]) -> Response:
        try:
            sent = request_erasure(**fields)
        except Exception as exc:  # the publisher's own check, or a producer that cannot send
            return detail(
                f"The erasure could not be published: {type(exc).__name__}: {exc}",
                503,
                {"Retry-After": RETRY_AFTER_BROKER_S},
            )
        try:
            sent.get(ACK_TIMEOUT_SECONDS)
        except Exception as exc:
            return json_response(
                {
                    "detail": f"Kafka did not acknowledge the erasure ({type(exc).__name__}); retry the request.",
                    "event_id": sent.event_id,
                },
                503,
                headers={"Retry-After": RETRY_AFTER_BROKER_S},
            )
        kind = "session_id" if fields.get("session_id") is not None else "user_slug"
        return json_response(
            {"event_id": sent.event_id, "key_kind": kind, "key": fields[kind], "reason": fields.get("reason") or ""},
            202,
        )

    async def listing(request: Request) -> Response:
        return json_response(await _in_pool(_records))

    def _records() -> list[dict[str, Any]]:
        with handle.reading() as cur:
            rows = cur.execute(_LIST).fetchall()
        return [
            {
                "event_id": event_id,
                "key_kind": kind,
                "key": key,
                "occurred_at": at.isoformat() + "Z",
                "reason": reason,
                "rows_removed": int(removed),
            }
            for event_id, kind, key, at, reason, removed in rows
        ]

    return [Route(PATH, _staff_only({"GET": listing, "POST": create}, tokens), methods=_ANY)]


_ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
