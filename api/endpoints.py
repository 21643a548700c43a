"""The endpoints: one handler each, and the table (`OPERATIONS`) that both the router and the OpenAPI
document are built from, so a path, its parameters and its response model are written once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import duckdb
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from api import csv_export, models, pagination, queries
from api.encoding import detail, json_response
from api.metrics import CONTENT_TYPE, RequestMetrics, render
from api.params import (
    CONVERSATION_ORDERINGS,
    FEEDBACK_ORDERINGS,
    Filters,
    parse_conversation_filters,
    parse_feedback_filters,
    parse_filters,
    parse_min_position,
    parse_ordering,
    parse_pagination,
    parse_window_days,
    raise_if_any,
)
from api.readers import PositionNotReached, read
from api.snapshot_cache import SnapshotCache
from auth.tokens import TokenStore
from schemas.position import Position
from schemas.readmodel import ReadModelHandle
from schemas.settings import DEFAULT_TOPIC

StatusProvider = Callable[[], Mapping[str, Any]]
PREFIX = "/api/anonymous-chat-interactions"
FEEDBACKS = "/api/anonymous-chat-feedbacks"


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
    topic: str = DEFAULT_TOPIC  # whose offsets make the read-model position
    min_position_wait_s: float = 0.0  # how long a request waits for its min_position

    def latest_position(self) -> Position:
        """The position of the served file's last commit this process knows of (for responses that
        read no data: an answer's own header is the position of the snapshot it was read from)."""
        return Position.of(self.handle.version, self.topic, self.handle.positions.offsets(self.topic))

    def now(self) -> datetime:
        now = self.clock()
        # A naive clock is taken to be UTC; "today" is always the UTC date of the server clock.
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


Handler = Callable[[Request, Context], Awaitable[Response]]
T = TypeVar("T")
# Where a data response's own position is kept for the header middleware (api.app).
POSITION_STATE = "read_model_position"


def _minimum(request: Request, ctx: Context, errors: dict[str, list[str]]) -> Position | None:
    return parse_min_position(request.query_params, request.headers, ctx.topic, errors)


async def _read(
    request: Request,
    ctx: Context,
    minimum: Position | None,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    key: Hashable,
) -> T:
    """`work` over one snapshot at `minimum` or later; the snapshot's position goes into the response."""
    answer = await read(
        ctx.handle,
        work,
        topic=ctx.topic,
        cache=ctx.answers,
        key=key,
        minimum=minimum,
        wait_s=ctx.min_position_wait_s,
    )
    request.state.read_model_position = answer.position
    if not answer.reached:
        assert minimum is not None
        raise PositionNotReached(answer.position, minimum, ctx.min_position_wait_s)
    return answer.value  # type: ignore[return-value]  # reached: the work's own value


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
        topic=ctx.topic,
    )


def _page_response(request: Request, page: queries.Page) -> Response:
    position = getattr(request.state, POSITION_STATE, None)
    headers = pagination.headers(request.url, page.total, page.pagination, page.last_page, position)
    return json_response(page.rows, headers=headers)


async def list_interactions(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters, ordering = _filters_and_ordering(request, errors)
    order = ordering or ("-created",)
    minimum = _minimum(request, ctx, errors)
    if csv_export.wants_csv(request, errors):
        return await _csv(request, ctx, queries.export_interactions(filters, order), "interactions.csv", errors)
    paging = parse_pagination(request.query_params, errors, optional=False)
    raise_if_any(errors)
    page = await _read(
        request,
        ctx,
        minimum,
        lambda cur: queries.list_interactions(cur, filters, order, paging),
        ("list", filters, order, paging),
    )
    return _page_response(request, page)


async def retrieve_interaction(request: Request, ctx: Context) -> Response:
    value = request.path_params["uuid"]
    errors: dict[str, list[str]] = {}
    minimum = _minimum(request, ctx, errors)
    raise_if_any(errors)
    body = await _read(request, ctx, minimum, lambda cur: queries.get_interaction(cur, value), ("retrieve", value))
    return detail("Not found.", 404) if body is None else json_response(body)


async def _transcript(request: Request, ctx: Context, **path_filter: str) -> Response:
    errors: dict[str, list[str]] = {}
    filters, ordering = _filters_and_ordering(request, errors)
    narrowed = filters.narrowed(**path_filter)
    order = ordering or ("created",)
    minimum = _minimum(request, ctx, errors)
    if csv_export.wants_csv(request, errors):
        return await _csv(request, ctx, queries.export_interactions(narrowed, order), "transcript.csv", errors)
    paging = parse_pagination(request.query_params, errors, optional=True)
    raise_if_any(errors)
    page = await _read(
        request,
        ctx,
        minimum,
        lambda cur: queries.list_interactions(cur, narrowed, order, paging),
        ("list", narrowed, order, paging),
    )
    return _page_response(request, page)


async def by_session(request: Request, ctx: Context) -> Response:
    return await _transcript(request, ctx, session_id=request.path_params["session_id"])


async def by_user_list(request: Request, ctx: Context) -> Response:
    return await _transcript(request, ctx, user_slug=request.path_params["user_slug"])


async def by_user_aggregate(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters, _ordering = _filters_and_ordering(request, errors)  # validated, but the order here is fixed
    minimum = _minimum(request, ctx, errors)
    if csv_export.wants_csv(request, errors):
        return await _csv(request, ctx, queries.export_users(filters), "users.csv", errors)
    paging = parse_pagination(request.query_params, errors, optional=True)
    raise_if_any(errors)
    page = await _read(
        request, ctx, minimum, lambda cur: queries.list_users(cur, filters, paging), ("by-user", filters, paging)
    )
    return _page_response(request, page)


async def conversations(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters = parse_filters(request.query_params, errors)
    stage2 = parse_conversation_filters(request.query_params, errors)
    ordering = parse_ordering(request.query_params, errors, CONVERSATION_ORDERINGS)
    order = ordering or ("-last_active",)
    minimum = _minimum(request, ctx, errors)
    if csv_export.wants_csv(request, errors):
        export = queries.export_conversations(filters, stage2, order)
        return await _csv(request, ctx, export, "conversations.csv", errors)
    paging = parse_pagination(request.query_params, errors, optional=True)
    raise_if_any(errors)
    page = await _read(
        request,
        ctx,
        minimum,
        lambda cur: queries.conversations(cur, filters, stage2, order, paging),
        ("conversations", filters, stage2, order, paging),
    )
    position = getattr(request.state, POSITION_STATE, None)
    headers = pagination.headers(request.url, page.total, page.pagination, page.last_page, position)
    return Response(page.body, media_type="application/json", headers=headers)


async def kpi(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters, _ordering = _filters_and_ordering(request, errors)
    stage2 = parse_conversation_filters(request.query_params, errors)
    minimum = _minimum(request, ctx, errors)
    raise_if_any(errors)
    window_days = parse_window_days(request.query_params)
    today = ctx.now().date()
    body = await _read(
        request,
        ctx,
        minimum,
        lambda cur: models.Kpi.model_validate(queries.kpi(cur, filters, today, window_days, stage2)).model_dump(
            mode="json"
        ),
        ("kpi", filters, stage2, today, window_days),
    )
    return json_response(body)


async def list_feedbacks(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters = parse_feedback_filters(request.query_params, errors)
    ordering = parse_ordering(request.query_params, errors, FEEDBACK_ORDERINGS)
    paging = parse_pagination(request.query_params, errors, optional=False)
    minimum = _minimum(request, ctx, errors)
    raise_if_any(errors)
    assert paging is not None
    order = ordering or ("-submitted_at",)
    page = await _read(
        request,
        ctx,
        minimum,
        lambda cur: queries.list_feedbacks(cur, filters, order, paging),
        ("feedbacks", filters, order, paging),
    )
    return _page_response(request, page)


async def retrieve_feedback(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters = parse_feedback_filters(request.query_params, errors)
    parse_ordering(request.query_params, errors, FEEDBACK_ORDERINGS)  # validated, as the reference does
    minimum = _minimum(request, ctx, errors)
    raise_if_any(errors)
    value = request.path_params["interaction_uuid"]
    body = await _read(
        request, ctx, minimum, lambda cur: queries.get_feedback(cur, value, filters), ("feedback", value, filters)
    )
    return detail("Not found.", 404) if body is None else json_response(body)


async def budget(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    minimum = _minimum(request, ctx, errors)
    raise_if_any(errors)
    now = ctx.now()
    # The answer depends on the clock only through today's date.
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    body = await _read(
        request,
        ctx,
        minimum,
        lambda cur: models.Budget.model_validate(queries.budget(cur, today, ctx.budget)).model_dump(mode="json"),
        ("budget", today.date(), ctx.budget),
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


_ALL_QUERY = ("filters", "ordering", "pagination", "position", "format")
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
        query=("position",),
    ),
    Operation(
        f"{PREFIX}/kpi/",
        "anonymous_chat_interactions_kpi_retrieve",
        "Aggregate KPI roll-up over the filtered interactions",
        kpi,
        models.Kpi,
        query=("filters", "conversation_filters", "ordering", "window", "position"),
    ),
    Operation(
        f"{PREFIX}/conversations/",
        "anonymous_chat_interactions_conversations_list",
        "One row per conversation (session), built from its turns that pass the turn-level filters, kept when it"
        " passes the conversation-level filters; default order -last_active; paginated only when page or"
        " page_size is given",
        conversations,
        models.Conversation,
        many=True,
        query=("filters", "conversation_filters", "conversation_ordering", "pagination", "position", "format"),
        paginated=True,
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
        query=("position",),
        path_params={"uuid": {"type": "string", "format": "uuid"}},
    ),
    Operation(
        f"{FEEDBACKS}/",
        "anonymous_chat_feedbacks_list",
        "Feedback records (human feedback and/or LLM review), one per interaction; default order -submitted_at",
        list_feedbacks,
        models.Feedback,
        many=True,
        query=("feedback_filters", "feedback_ordering", "pagination", "position"),
        paginated=True,
    ),
    Operation(
        f"{FEEDBACKS}/{{interaction_uuid}}/",
        "anonymous_chat_feedbacks_retrieve",
        "One interaction's feedback record; 404 when it has neither feedback nor a review",
        retrieve_feedback,
        models.Feedback,
        query=("feedback_filters", "feedback_ordering", "position"),
        path_params={"interaction_uuid": {"type": "string", "format": "uuid"}},
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
