"""The endpoints: one handler each, and the table (`OPERATIONS`) that both the router and the OpenAPI
document are built from, so a path, its parameters and its response model are written once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from api import csv_export, models, pagination, queries
from api.encoding import detail, json_response
from api.metrics import CONTENT_TYPE, RequestMetrics, render
from api.params import (
    Filters,
    parse_filters,
    parse_ordering,
    parse_pagination,
    parse_window_days,
    raise_if_any,
)
from api.readers import read
from api.snapshot_cache import SnapshotCache
from auth.tokens import TokenStore
from schemas.readmodel import ReadModelHandle

StatusProvider = Callable[[], Mapping[str, Any]]
PREFIX = "/api/anonymous-chat-interactions"


@dataclass
class Context:
    """What the handlers share: set once by `api.app.create_app`."""

    handle: ReadModelHandle
    tokens: TokenStore
    clock: Callable[[], datetime]
    budget: int
    status_provider: StatusProvider | None
    metrics: RequestMetrics
    openapi: bytes = b""
    answers: SnapshotCache = field(default_factory=SnapshotCache)

    def now(self) -> datetime:
        now = self.clock()
        # A naive clock is taken to be UTC; "today" is always the UTC date of the server clock.
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


Handler = Callable[[Request, Context], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    path: str
    operation_id: str
    summary: str
    handler: Handler
    response: type[BaseModel] | None
    many: bool = False
    query: tuple[str, ...] = ()  # groups of query parameters: filters, ordering, pagination, window, format
    path_params: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    paginated: bool = False
    authenticated: bool = True
    media_type: str = "application/json"
    extra_statuses: Mapping[int, str] = field(default_factory=dict)


def _filters_and_ordering(request: Request, errors: dict[str, list[str]]) -> tuple[Filters, tuple[str, ...]]:
    return parse_filters(request.query_params, errors), parse_ordering(request.query_params, errors)


async def _csv(
    request: Request, ctx: Context, export: queries.Export, filename: str, errors: dict[str, list[str]]
) -> Response:
    return await csv_export.respond(
        request,
        ctx.handle,
        count=export.count,
        query=export.query,
        params=export.params,
        filename=filename,
        errors=errors,
    )


def _page_response(request: Request, page: queries.Page) -> Response:
    headers = pagination.headers(request.url, page.total, page.pagination, page.last_page)
    return json_response(page.rows, headers=headers)


async def list_interactions(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters, ordering = _filters_and_ordering(request, errors)
    order = ordering or ("-created",)
    if csv_export.wants_csv(request, errors):
        return await _csv(request, ctx, queries.export_interactions(filters, order), "interactions.csv", errors)
    paging = parse_pagination(request.query_params, errors, optional=False)
    raise_if_any(errors)
    page = await read(
        ctx.handle,
        lambda cur: queries.list_interactions(cur, filters, order, paging),
        cache=ctx.answers,
        key=("list", filters, order, paging),
    )
    return _page_response(request, page)


async def retrieve_interaction(request: Request, ctx: Context) -> Response:
    value = request.path_params["uuid"]
    body = await read(
        ctx.handle, lambda cur: queries.get_interaction(cur, value), cache=ctx.answers, key=("retrieve", value)
    )
    return detail("Not found.", 404) if body is None else json_response(body)


async def _transcript(request: Request, ctx: Context, **path_filter: str) -> Response:
    errors: dict[str, list[str]] = {}
    filters, ordering = _filters_and_ordering(request, errors)
    narrowed = filters.narrowed(**path_filter)
    order = ordering or ("created",)
    if csv_export.wants_csv(request, errors):
        return await _csv(request, ctx, queries.export_interactions(narrowed, order), "transcript.csv", errors)
    paging = parse_pagination(request.query_params, errors, optional=True)
    raise_if_any(errors)
    page = await read(
        ctx.handle,
        lambda cur: queries.list_interactions(cur, narrowed, order, paging),
        cache=ctx.answers,
        key=("list", narrowed, order, paging),
    )
    return _page_response(request, page)


async def by_session(request: Request, ctx: Context) -> Response:
    return await _transcript(request, ctx, session_id=request.path_params["session_id"])


async def by_user_list(request: Request, ctx: Context) -> Response:
    return await _transcript(request, ctx, user_slug=request.path_params["user_slug"])


async def by_user_aggregate(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters, _ordering = _filters_and_ordering(request, errors)  # validated, but the order here is fixed
    if csv_export.wants_csv(request, errors):
        return await _csv(request, ctx, queries.export_users(filters), "users.csv", errors)
    paging = parse_pagination(request.query_params, errors, optional=True)
    raise_if_any(errors)
    page = await read(
        ctx.handle,
        lambda cur: queries.list_users(cur, filters, paging),
        cache=ctx.answers,
        key=("by-user", filters, paging),
    )
    return _page_response(request, page)


async def kpi(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters, _ordering = _filters_and_ordering(request, errors)
    raise_if_any(errors)
    window_days = parse_window_days(request.query_params)
    today = ctx.now().date()
    body = await read(
        ctx.handle,
        lambda cur: models.Kpi.model_validate(queries.kpi(cur, filters, today, window_days)).model_dump(mode="json"),
        cache=ctx.answers,
        key=("kpi", filters, today, window_days),
    )
    return json_response(body)


async def budget(request: Request, ctx: Context) -> Response:
    now = ctx.now()
    # The answer depends on the clock only through today's date.
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    body = await read(
        ctx.handle,
        lambda cur: models.Budget.model_validate(queries.budget(cur, today, ctx.budget)).model_dump(mode="json"),
        cache=ctx.answers,
        key=("budget", today.date(), ctx.budget),
    )
    return json_response(body)


async def schema(request: Request, ctx: Context) -> Response:
    return Response(ctx.openapi, media_type="application/json")


async def healthz(request: Request, ctx: Context) -> Response:
    return json_response({"status": "ok"})


PARTITION_KEYS = ("partition", "end_offset", "position", "lag")


def readiness(status: Mapping[str, Any] | None) -> dict[str, Any]:
    if status is None:
        # No projector in this process (a server over a finished file): nothing to wait for.
        return {"ready": True, "caught_up": True, "partitions": [], "pending_events": 0, "error": None}
    caught_up = bool(status.get("caught_up"))
    error = status.get("error")
    # A start-up rebuild serving the previous file: stale but consistent answers beat none.
    serving_previous = bool(status.get("serving_previous_file"))
    body: dict[str, Any] = {
        "ready": (caught_up or serving_previous) and error is None,
        "caught_up": caught_up,
        "partitions": [{k: p.get(k) for k in PARTITION_KEYS} for p in status.get("partitions") or []],
        "pending_events": int(status.get("pending_events") or 0),
        "error": None if error is None else str(error),
    }
    if serving_previous:
        body["serving_previous_file"] = True
    if status.get("rebuild"):
        body["rebuild"] = dict(status["rebuild"])
    return body


async def readyz(request: Request, ctx: Context) -> Response:
    body = readiness(ctx.status_provider() if ctx.status_provider is not None else None)
    return json_response(body, status_code=200 if body["ready"] else 503)


async def metrics(request: Request, ctx: Context) -> Response:
    return Response(render(ctx.metrics, ctx.status_provider), media_type=CONTENT_TYPE)


_ALL_QUERY = ("filters", "ordering", "pagination", "format")
_STRING = {"type": "string"}

# Fixed paths come before `{uuid}/`, which would otherwise match `budget/` and `kpi/`.
OPERATIONS: tuple[Operation, ...] = (
    Operation(
        f"{PREFIX}/",
        "anonymous_chat_interactions_list",
        "List anonymous chat interactions (default order -created, then uuid)",
        list_interactions,
        models.Interaction,
        many=True,
        query=_ALL_QUERY,
        paginated=True,
    ),
    Operation(
        f"{PREFIX}/budget/",
        "anonymous_chat_interactions_budget_retrieve",
        "Today's global token budget snapshot",
        budget,
        models.Budget,
    ),
    Operation(
        f"{PREFIX}/kpi/",
        "anonymous_chat_interactions_kpi_retrieve",
        "Aggregate KPI roll-up over the filtered interactions",
        kpi,
        models.Kpi,
        query=("filters", "ordering", "window"),
    ),
    Operation(
        f"{PREFIX}/by-user/",
        "anonymous_chat_interactions_by_user_aggregate",
        "One row per non-empty user_slug over the filtered interactions",
        by_user_aggregate,
        models.UserAggregate,
        many=True,
        query=_ALL_QUERY,
        paginated=True,
    ),
    Operation(
        f"{PREFIX}/by-session/{{session_id}}/",
        "anonymous_chat_interactions_by_session_list",
        "One session's turns, oldest first; paginated only when page or page_size is given",
        by_session,
        models.Interaction,
        many=True,
        query=_ALL_QUERY,
        path_params={"session_id": _STRING},
        paginated=True,
    ),
    Operation(
        f"{PREFIX}/by-user/{{user_slug}}/",
        "anonymous_chat_interactions_by_user_list",
        "One pseudonymous user's turns across sessions, oldest first; paginated only when asked",
        by_user_list,
        models.Interaction,
        many=True,
        query=_ALL_QUERY,
        path_params={"user_slug": _STRING},
        paginated=True,
    ),
    Operation(
        f"{PREFIX}/{{uuid}}/",
        "anonymous_chat_interactions_retrieve",
        "One interaction",
        retrieve_interaction,
        models.Interaction,
        path_params={"uuid": {"type": "string", "format": "uuid"}},
    ),
    Operation("/api/schema/", "schema_retrieve", "This OpenAPI document", schema, None, authenticated=False),
    Operation("/healthz", "healthz", "Liveness: the process serves HTTP", healthz, models.Health, authenticated=False),
    Operation(
        "/readyz",
        "readyz",
        "Readiness: 200 once the projector caught up with the topic's end offsets as of start-up, else 503",
        readyz,
        models.Readiness,
        authenticated=False,
        extra_statuses={503: "the projector has not caught up yet (or stopped with an error)"},
    ),
    Operation(
        "/metrics",
        "metrics",
        "Prometheus metrics (text exposition format 0.0.4)",
        metrics,
        None,
        authenticated=False,
        media_type=CONTENT_TYPE,
    ),
)
