"""The endpoints: one handler each, and the table (`OPERATIONS`) that both the router and the OpenAPI
document are built from, so a path, its parameters and its response model are written once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import duckdb
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from api import csv_export, feedbacks_sql, models, pagination, queries, streaming
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
from api.readers import PositionNotReached, Together, read
from api.row_cache import RowCache
from api.snapshot_cache import SnapshotCache
from auth.tokens import TokenStore
from schemas.position import Position
from schemas.settings import DEFAULT_DISK_WARN_BYTES, DEFAULT_READY_MAX_LAG, DEFAULT_STALE_AFTER_S, DEFAULT_TOPIC
from schemas.storage import disk_figures
from serving.changes import INTERACTION, SESSION, USER, Key
from serving.handle import ReadModelHandle

StatusProvider = Callable[[], Mapping[str, Any]]
# The most questions one read answers together: at 8-16 keys a statement costs ~1.5-2x one key's.
MAX_TOGETHER = 16
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
    rows: RowCache = field(default_factory=RowCache)
    # Misses of a retrieve, and of a session's whole transcript, answered together (`api.coalescing`).
    retrieves: Together = field(default_factory=lambda: Together(queries.get_interactions, MAX_TOGETHER))
    transcripts: Together = field(default_factory=lambda: Together(queries.session_transcripts, MAX_TOGETHER))
    topic: str = DEFAULT_TOPIC  # whose offsets make the read-model position
    min_position_wait_s: float = 0.0  # how long a request waits for its min_position
    ready_max_lag: int | None = DEFAULT_READY_MAX_LAG
    stale_after_s: float | None = DEFAULT_STALE_AFTER_S
    disk_warn_bytes: int = DEFAULT_DISK_WARN_BYTES

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
    depends: Key | None = None,
    together: tuple[Together, Any] | None = None,
) -> T:
    """`work` over one snapshot at `minimum` or later; the snapshot's position goes into the response.
    `depends`: the one key of `serving.changes` the answer depends on, if any; `together`: the kind of
    question it is and its argument, when misses of that kind are answered together (`api.readers.read`)."""
    answer = await read(
        ctx.handle,
        work,
        topic=ctx.topic,
        cache=ctx.answers,
        key=key,
        minimum=minimum,
        wait_s=ctx.min_position_wait_s,
        rows=ctx.rows,
        depends=depends,
        together=together,
    )
    request.state.read_model_position = answer.position
    if not answer.reached:
        assert minimum is not None
        raise PositionNotReached(answer.position, minimum, ctx.min_position_wait_s)
    return answer.value  # type: ignore[return-value]  # reached: the work's own value


async def _answer(
    request: Request,
    ctx: Context,
    minimum: Position | None,
    work: Callable[..., T],
    *args: Hashable,
    depends: Key | None = None,
    together: tuple[Together, Any] | None = None,
) -> T:
    """`work(cursor, *args)` over one snapshot (`_read`), remembered for that snapshot under `work` and
    `args`: the arguments are all an answer depends on besides the data. `depends`: the one key of the
    data the answer depends on, if it reads the turns of one interaction, session or visitor only; it is
    then also remembered across commits that did not touch that key (`api.snapshot_cache`)."""
    return await _read(request, ctx, minimum, lambda cur: work(cur, *args), (work, *args), depends, together)


def _turns_of(filters: Filters | None) -> Key | None:
    """What a list of turns narrowed by `filters` depends on: every filter is a condition on each turn, so
    a list narrowed to one session (or one visitor) reads that session's (or visitor's) turns only."""
    if filters is None:
        return None
    if filters.session_id is not None:
        return (SESSION, filters.session_id)
    if filters.user_slug is not None:
        return (USER, filters.user_slug)
    return None


def _interaction(value: str) -> Key | None:
    try:
        return (INTERACTION, str(UUID(value)))  # as the fold names it; any spelling the retrieve takes
    except ValueError:
        return None  # no turn has it: the answer is a 404, which is not remembered


def _kpi_body(cur: duckdb.DuckDBPyConnection, *args: Any) -> dict[str, Any]:
    return models.Kpi.model_validate(queries.kpi(cur, *args)).model_dump(mode="json")


def _budget_body(cur: duckdb.DuckDBPyConnection, *args: Any) -> dict[str, Any]:
    return models.Budget.model_validate(queries.budget(cur, *args)).model_dump(mode="json")


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
    request: Request,
    ctx: Context,
    export: streaming.Rows,
    filename: str,
    errors: dict[str, list[str]],
    minimum: Position | None,
) -> Response:
    raise_if_any(errors)
    if minimum is not None:
        # Wait (or 503) here; the export's own transaction starts later, so it reads at least as far.
        await _read(request, ctx, minimum, lambda cur: None, ("position-reached",))
    return await csv_export.respond(
        request,
        ctx.handle,
        export,
        filename=filename,
        errors=errors,
        topic=ctx.topic,
    )


async def _streamed(ctx: Context, export: streaming.Rows, renderer: streaming.Renderer) -> Response:
    """A whole list too long to build: streamed from its own snapshot (at least as new as the one that
    found it too long, so at least at the request's `min_position`)."""
    return await streaming.respond(
        ctx.handle, export, topic=ctx.topic, renderer=renderer, media_type="application/json"
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
        return await _csv(
            request, ctx, queries.export_interactions(filters, order), "interactions.csv", errors, minimum
        )
    paging = parse_pagination(request.query_params, errors, optional=False)
    raise_if_any(errors)
    page = await _answer(
        request, ctx, minimum, queries.list_interactions, filters, order, paging, depends=_turns_of(filters)
    )
    return _page_response(request, page)


async def retrieve_interaction(request: Request, ctx: Context) -> Response:
    value = request.path_params["uuid"]
    errors: dict[str, list[str]] = {}
    minimum = _minimum(request, ctx, errors)
    raise_if_any(errors)
    body = await _answer(
        request,
        ctx,
        minimum,
        queries.get_interaction,
        value,
        depends=_interaction(value),
        together=(ctx.retrieves, value),
    )
    return detail("Not found.", 404) if body is None else json_response(body)


async def _transcript(request: Request, ctx: Context, **path_filter: str) -> Response:
    errors: dict[str, list[str]] = {}
    filters, ordering = _filters_and_ordering(request, errors)
    narrowed = filters.narrowed(**path_filter)
    order = ordering or ("created",)
    minimum = _minimum(request, ctx, errors)
    if csv_export.wants_csv(request, errors):
        return await _csv(request, ctx, queries.export_interactions(narrowed, order), "transcript.csv", errors, minimum)
    paging = parse_pagination(request.query_params, errors, optional=True)
    raise_if_any(errors)
    if paging is None:
        # A session's whole transcript in its own order, the dashboard's question: answered together.
        together = None
        if narrowed is not None and narrowed.given() == {"session_id"} and order == ("created",):
            together = (ctx.transcripts, narrowed.session_id)
        whole = await _answer(
            request,
            ctx,
            minimum,
            queries.short_whole_list,
            narrowed,
            order,
            depends=_turns_of(narrowed),
            together=together,
        )
        if whole is None:
            assert narrowed is not None  # a contradiction has no rows, so it is short
            return await _streamed(ctx, queries.stream_transcript(narrowed, order), streaming.JsonTextArray())
        return _page_response(request, whole)
    page = await _answer(
        request, ctx, minimum, queries.list_interactions, narrowed, order, paging, depends=_turns_of(narrowed)
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
        return await _csv(request, ctx, queries.export_users(filters), "users.csv", errors, minimum)
    paging = parse_pagination(request.query_params, errors, optional=True)
    raise_if_any(errors)
    page = await _answer(request, ctx, minimum, queries.list_users, filters, paging)
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
        return await _csv(request, ctx, export, "conversations.csv", errors, minimum)
    paging = parse_pagination(request.query_params, errors, optional=True)
    raise_if_any(errors)
    if paging is None:
        # The dashboard's whole list: every conversation of the file, streamed (not remembered).
        if minimum is not None:
            await _read(request, ctx, minimum, lambda cur: None, ("position-reached",))
        return await _streamed(ctx, queries.stream_conversations(filters, stage2, order), streaming.JsonTextArray())
    page = await _answer(request, ctx, minimum, queries.conversations, filters, stage2, order, paging)
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
    records = feedbacks_sql.source(ctx.handle.version)  # chosen outside the read lease: see list_feedbacks
    body = await _answer(request, ctx, minimum, _kpi_body, filters, today, window_days, stage2, records)
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
    # Chosen outside the read lease: a switch meanwhile goes to a newer file, whose `interactions` gives
    # the same answer as its `feedback_records`.
    table = feedbacks_sql.source(ctx.handle.version)
    page = await _answer(request, ctx, minimum, queries.list_feedbacks, table, filters, order, paging)
    return _page_response(request, page)


async def retrieve_feedback(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    filters = parse_feedback_filters(request.query_params, errors)
    parse_ordering(request.query_params, errors, FEEDBACK_ORDERINGS)  # validated, as the reference does
    minimum = _minimum(request, ctx, errors)
    raise_if_any(errors)
    value = request.path_params["interaction_uuid"]
    table = feedbacks_sql.source(ctx.handle.version)
    body = await _answer(request, ctx, minimum, queries.get_feedback, table, value, filters)
    return detail("Not found.", 404) if body is None else json_response(body)


async def budget(request: Request, ctx: Context) -> Response:
    errors: dict[str, list[str]] = {}
    minimum = _minimum(request, ctx, errors)
    raise_if_any(errors)
    now = ctx.now()
    # The answer depends on the clock only through today's date.
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    body = await _answer(request, ctx, minimum, _budget_body, today, ctx.budget)
    return json_response(body)


async def schema(request: Request, ctx: Context) -> Response:
    return Response(ctx.openapi, media_type="application/json")


async def healthz(request: Request, ctx: Context) -> Response:
    # Liveness: fails only when this process can no longer serve (DuckDB invalidated the database);
    # then `serve` exits too, so a supervisor restarts it and the restart replays the write-ahead log.
    if ctx.handle.failure is not None:
        return json_response({"status": "failed", "detail": "the read model failed; the process exits"}, 503)
    return json_response({"status": "ok"})


PARTITION_KEYS = ("partition", "end_offset", "position", "lag")


def _age_s(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(max(0.0, (now - then).total_seconds()), 3)


def readiness(
    status: Mapping[str, Any] | None,
    *,
    failure: str | None = None,
    unavailable: str | None = None,
    max_lag: int | None = None,
    stale_after_s: float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """/readyz: whether to send this process traffic. Serving from the file is what counts; freshness
    (lag, age of the newest folded event, whether the projector folds) is reported beside it, and only
    a lag over `max_lag` (or never having caught up since start-up) makes it unready. `stale` says the
    answers lack more than live ingest's moment of lag: the projector is not folding, has not caught up,
    is over `max_lag`, or the file has lacked records it knew of for over `stale_after_s` seconds. Raw
    error text stays out of this public body: `error` is one word, the details are in the log and admin
    status."""
    now = now or datetime.now(UTC)
    serving = failure is None and unavailable is None
    status = status or {}
    partitions = [{k: p.get(k) for k in PARTITION_KEYS} for p in status.get("partitions") or []]
    lag = sum(int(p.get("lag") or 0) for p in partitions)
    projector_present = bool(status)
    error_kind = status.get("error_kind") or ("projector_failed" if status.get("error") else None)
    if failure is not None:
        error_kind = "database_invalidated"
    caught_up = bool(status.get("caught_up")) if projector_present else True
    # A start-up rebuild serving the previous file: stale but consistent answers beat none.
    serving_previous = bool(status.get("serving_previous_file"))
    # Started while Kafka is down: a file that holds data is served as it is (its lag is unknown); an
    # empty one is not ready, so that a new replica gets no traffic before its first fold. Only once a
    # try to reach Kafka failed (`error`): in the moment before the first try, the lag is unknown as
    # well, and a file far behind a reachable topic would have been ready until the try ended.
    unconnected_with_data = (
        status.get("connected_once") is False
        and bool(status.get("error"))
        and any(p.get("position") for p in partitions)
    )
    within = max_lag is None or max_lag < 0 or lag <= max_lag
    lag_s = status.get("lag_s")
    stale_limit = stale_after_s if stale_after_s is not None and stale_after_s >= 0 else None
    late = lag_s is not None and stale_limit is not None and lag > 0 and lag_s > stale_limit
    projector = error_kind or ("ok" if projector_present else "not_running")
    freshness = {
        "lag": lag,
        "max_lag": max_lag if max_lag is not None and max_lag >= 0 else None,
        "lag_s": lag_s,
        "stale_after_s": stale_limit,
        "last_batch_at": status.get("last_batch_at"),
        "newest_event_at": status.get("newest_record_at"),
        "newest_event_age_s": _age_s(status.get("newest_record_at"), now),
        "projector": projector,
        "stale": projector_present and (error_kind is not None or not caught_up or not within or late),
    }
    body: dict[str, Any] = {
        "ready": serving and (caught_up or serving_previous or unconnected_with_data) and within,
        "serving": serving,
        "caught_up": caught_up,
        "partitions": partitions,
        "pending_events": int(status.get("pending_events") or 0),
        "error": error_kind,
        "freshness": freshness,
    }
    if serving_previous:
        body["serving_previous_file"] = True
    if status.get("rebuild"):
        rebuild = dict(status["rebuild"])
        if rebuild.get("error"):
            rebuild["error"] = "rebuild_failed"  # the text is in GET /api/admin/rebuild/ (staff only)
        body["rebuild"] = rebuild
    return body


async def readyz(request: Request, ctx: Context) -> Response:
    body = readiness(
        ctx.status_provider() if ctx.status_provider is not None else None,
        failure=ctx.handle.failure,
        unavailable=ctx.handle.unavailable,
        max_lag=ctx.ready_max_lag,
        stale_after_s=ctx.stale_after_s,
        now=ctx.now(),
    )
    return json_response(body, status_code=200 if body["ready"] else 503)


async def metrics(request: Request, ctx: Context) -> Response:
    disk = disk_figures(ctx.handle.path, ctx.disk_warn_bytes)
    body = render(
        ctx.metrics,
        ctx.status_provider,
        disk=disk,
        failed=ctx.handle.failure is not None,
        cache_counts=(ctx.answers.hits, ctx.answers.misses),
        row_counts=(ctx.rows.hits, ctx.rows.misses),
        together={
            "retrieve": ctx.retrieves.coalescer.counts(),
            "session_transcript": ctx.transcripts.coalescer.counts(),
        },
    )
    return Response(body, media_type=CONTENT_TYPE)


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
    Operation(
        "/livez",
        "livez",
        "Liveness: 200 while the process can serve; 503 once DuckDB invalidated the read model (it then exits)",
        healthz,
        models.Health,
        authenticated=False,
        extra_statuses={503: "the read model failed; the process is exiting so that it is restarted"},
    ),
    Operation(
        "/healthz",
        "healthz",
        "Liveness (same as /livez)",
        healthz,
        models.Health,
        authenticated=False,
        extra_statuses={503: "the read model failed; the process is exiting so that it is restarted"},
    ),
    Operation(
        "/readyz",
        "readyz",
        "Readiness: 200 while the file is served, the projector caught up once since start-up and its lag is "
        "within the configured maximum; freshness reported beside it",
        readyz,
        models.Readiness,
        authenticated=False,
        extra_statuses={503: "not serving, not caught up yet, or lagging more than the configured maximum"},
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
