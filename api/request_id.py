"""A request id for every HTTP request: taken from the client's `X-Request-ID` when it is sane, else
made here, returned as `X-Request-ID`, and available to every log record written while the request runs.

A client's id is kept only if it is short and made of URL-safe characters (a load balancer's or a
tracing system's id is), so that whatever a client sends cannot forge or break a log line.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
SANE = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
current: ContextVar[str | None] = ContextVar("chat_analytics_request_id", default=None)


def choose(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == HEADER and SANE.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose(scope.get("headers", []))
        pair = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER]
                message = {**message, "headers": [*headers, pair]}
            await send(message)

        token = current.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current.reset(token)
