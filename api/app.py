"""`create_app`: the Starlette application serving the staff analytics endpoints from a read model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan, Receive, Scope, Send

import dashboard
from api import openapi
from api.encoding import detail, json_response
from api.endpoints import OPERATIONS, POSITION_STATE, Context, Operation, StatusProvider
from api.headers import SecurityHeaders
from api.metrics import MetricsMiddleware, RequestMetrics
from api.params import POSITION_HEADER, ParameterError
from api.queries import PageNotFound
from api.readers import PositionNotReached
from api.request_id import RequestIdMiddleware
from auth.http import check
from auth.tokens import READ_ROLES, TokenStore
from schemas.settings import (
    DEFAULT_DAILY_TOKEN_BUDGET,
    DEFAULT_DISK_WARN_BYTES,
    DEFAULT_MIN_POSITION_WAIT_MS,
    DEFAULT_READY_MAX_LAG,
    DEFAULT_STALE_AFTER_S,
    DEFAULT_TOPIC,
)
from serving.handle import ReadModelHandle, ReadModelUnavailable

ALLOWED = "GET, HEAD, OPTIONS"
API_TITLE = "chat-analytics staff API"
API_VERSION = "1.0.0"
# Retry-After of a 503 for a min_position not reached: the projector commits several times a second.
POSITION_RETRY_AFTER_S = 1
_POSITION_HEADER = POSITION_HEADER.lower().encode()


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _OperationApp:
    """One operation as a plain ASGI app, so its route takes every method and the 405 body is ours."""

    def __init__(self, op: Operation, ctx: Context) -> None:
        self.op = op
        self.ctx = ctx
        self.__name__ = op.operation_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(Request(scope, receive))
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        op, ctx = self.op, self.ctx
        # As Django REST framework does: authenticate first, then look at the method.
        if op.authenticated:
            denied = check(request, ctx.tokens, READ_ROLES)
            if denied is not None:
                return denied
        method = request.method
        if method == "OPTIONS":
            return json_response({"name": op.summary, "methods": ALLOWED.split(", ")}, headers={"Allow": ALLOWED})
        if method not in ("GET", "HEAD"):
            return json_response({"detail": f'Method "{method}" not allowed.'}, 405, {"Allow": ALLOWED})
        try:
            response = await op.handler(request, ctx)
        except ParameterError as exc:
            response = json_response(exc.errors, 400)
        except PageNotFound:
            response = detail("Invalid page.", 404)
        except ReadModelUnavailable as exc:
            # A start-up rebuild whose old file this release cannot read: come back when it is done.
            response = detail(str(exc), 503, {"Retry-After": "5"})
        except PositionNotReached as exc:
            # Another replica may be there already: a load balancer can retry this one elsewhere.
            response = detail(str(exc), 503, {"Retry-After": str(POSITION_RETRY_AFTER_S)})
        if method == "HEAD":
            # The headers GET would send, Content-Length included, without the body.
            return Response(b"", status_code=response.status_code, headers=dict(response.headers))
        return response


class PositionHeaderMiddleware:
    """Every response carries `X-Read-Model-Position`: a data answer the position of the snapshot it
    was read from (set by the endpoint), any other response the last commit this process knows of."""

    def __init__(self, app: Any, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_position(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if all(name.lower() != _POSITION_HEADER for name, _ in headers):
                    position = scope.get("state", {}).get(POSITION_STATE) or self.ctx.latest_position()
                    headers.append((_POSITION_HEADER, position.token().encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_position)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "Not found." if exc.status_code == 404 else exc.detail
    return detail(message, exc.status_code, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return detail("Internal server error.", 500)


def create_app(
    handle: ReadModelHandle,
    *,
    tokens: TokenStore,
    clock: Callable[[], datetime] = _utc_now,
    budget: int = DEFAULT_DAILY_TOKEN_BUDGET,
    status_provider: StatusProvider | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan: Lifespan[Starlette] | None = None,
    topic: str = DEFAULT_TOPIC,
    min_position_wait_s: float | None = None,
    ready_max_lag: int | None = DEFAULT_READY_MAX_LAG,
    stale_after_s: float | None = DEFAULT_STALE_AFTER_S,
    disk_warn_bytes: int = DEFAULT_DISK_WARN_BYTES,
) -> Starlette:
    """The API over `handle`. `clock` gives "now" (its UTC date is "today"); `budget` is the daily token
    budget (negative: unlimited, served as 0); `status_provider` returns the projector's status for
    /readyz and /metrics (None: no projector in this process); `extra_routes` are mounted as they are.
    `topic` is the one whose offsets make the read-model position; `min_position_wait_s` is how long a
    request waits for its `min_position` (default: DEFAULT_MIN_POSITION_WAIT_MS with a projector, 0
    without one, since then the file never moves); `ready_max_lag`: the lag (records) above which
    /readyz answers 503 (None or negative: no limit); `stale_after_s`: how long the file may lack records
    the projector knew of before /readyz calls it stale (None or negative: never for that);
    `disk_warn_bytes`: free space of the data directory below which /metrics and status warn."""
    metrics = RequestMetrics()
    if min_position_wait_s is None:
        min_position_wait_s = DEFAULT_MIN_POSITION_WAIT_MS / 1000 if status_provider is not None else 0.0
    ctx = Context(
        handle,
        tokens,
        clock,
        budget,
        status_provider,
        metrics,
        topic=topic,
        min_position_wait_s=min_position_wait_s,
        ready_max_lag=ready_max_lag,
        stale_after_s=stale_after_s,
        disk_warn_bytes=disk_warn_bytes,
    )
    ctx.openapi = orjson.dumps(openapi.build(OPERATIONS, title=API_TITLE, version=API_VERSION, topic=topic))
    routes: list[BaseRoute] = [Route(op.path, _OperationApp(op, ctx)) for op in OPERATIONS]
    routes.extend(dashboard.routes())  # the staff dashboard at / and /dashboard/, a client of these routes
    routes.extend(extra_routes)
    exception_handlers: Mapping[Any, Any] = {HTTPException: _http_error, Exception: _server_error}
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(PositionHeaderMiddleware, ctx=ctx),
            Middleware(SecurityHeaders),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
    app.state.context = ctx
    return app
