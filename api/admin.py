"""Staff-only admin endpoints of a running `serve`: blue/green rebuild, status, dead letters.

    POST /api/admin/rebuild/                 start a rebuild (202; 409 while one runs)
    GET  /api/admin/rebuild/                 its progress
    GET  /api/admin/status/                  `chat-analytics status --json` of the served file
    GET  /api/admin/dead-letters/            ?reason=R&limit=N, in log order, raw bytes as base64 (streamed)
    POST /api/admin/dead-letters/retry/      ?reason=R: re-offer them to the fold
    GET  /api/admin/snapshot/                a consistent copy of the served file (a DuckDB file)

The work is done by an `AdminBackend` the command line hands in (the projector's `LiveProjection`),
so this package never imports the projector. The work runs on a small thread pool of its own, so an
admin action never holds a thread the read endpoints need; every call is logged with the id of the
token that made it (never the token).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from api import feedbacks_sql, queries
from api.encoding import detail, json_response
from api.params import POSITION_HEADER, ConversationFilters, FeedbackFilters, Filters, Pagination
from auth.http import check
from auth.tokens import TokenStore
from schemas.position import Position
from schemas.registry import DEAD_LETTER_REASONS
from serving.handle import ReadModelHandle, ReadModelUnavailable

log = logging.getLogger("chat_analytics.admin")

ADMIN_ROLES = frozenset({"staff"})
PREFIX = "/api/admin"
MAX_LIMIT = 100_000
# Dead letters are read and sent this many at a time: memory holds one page, whatever the total.
DEAD_LETTER_PAGE = 500
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="admin")


async def _in_pool(work: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_POOL, work, *args)


# The reasons of docs/events.md; a filter on anything else is a typo worth a 400.
REASONS = frozenset(DEAD_LETTER_REASONS)


class AdminBackend(Protocol):
    def start_rebuild(self) -> tuple[bool, Mapping[str, Any]]: ...
    def rebuild_progress(self) -> Mapping[str, Any]: ...
    def admin_status(self) -> Mapping[str, Any]: ...
    def dead_letters(
        self, reason: str | None, limit: int | None, after: tuple[str, int, int] | None = None
    ) -> list[dict[str, Any]]: ...
    def retry_dead_letters(self, reason: str | None) -> tuple[bool, Mapping[str, Any]]: ...
    def snapshot(self) -> tuple[Path, Position]: ...


Handler = Callable[[Request], Awaitable[Response]]
# Every method reaches the endpoint, so that the wrong one gets our 405 body rather than Starlette's.
_ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _staff_only(methods: Mapping[str, Handler], tokens: TokenStore) -> Callable[[Request], Awaitable[Response]]:
    allowed = ", ".join(sorted({*methods, "OPTIONS"}))

    async def endpoint(request: Request) -> Response:
        denied = check(request, tokens, ADMIN_ROLES)
        if denied is not None:
            return denied
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            log.info(
                "admin %s %s?%s by token %s",
                request.method,
                request.url.path,
                request.url.query,
                request.state.token_id,
            )
        if request.method == "OPTIONS":
            return json_response({"methods": allowed.split(", ")}, headers={"Allow": allowed})
        handler = methods.get(request.method)
        if handler is None:
            return json_response({"detail": f'Method "{request.method}" not allowed.'}, 405, {"Allow": allowed})
        try:
            return await handler(request)
        except ReadModelUnavailable as exc:
            return detail(str(exc), 503, {"Retry-After": "5"})

    return endpoint


def _reason(request: Request, errors: dict[str, list[str]]) -> str | None:
    value = request.query_params.get("reason")
    if value is None or value == "":
        return None
    if value not in REASONS:
        errors["reason"] = [f'"{value}" is not a dead-letter reason; one of {", ".join(sorted(REASONS))}.']
        return None
    return value


def _limit(request: Request, errors: dict[str, list[str]]) -> int | None:
    value = request.query_params.get("limit")
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        errors["limit"] = ["A positive integer is required."]
        return None
    return min(int(value), MAX_LIMIT)


def admin_routes(backend: AdminBackend, tokens: TokenStore) -> Sequence[BaseRoute]:
    async def start_rebuild(request: Request) -> Response:
        started, progress = await _in_pool(backend.start_rebuild)
        if not started and progress.get("insufficient_storage"):
            return json_response(dict(progress), 507)
        if not started:
            return json_response({"detail": "A rebuild is already running.", "rebuild": dict(progress)}, 409)
        return json_response(dict(progress), 202)

    async def rebuild_progress(request: Request) -> Response:
        return json_response(dict(backend.rebuild_progress()))

    async def status(request: Request) -> Response:
        return json_response(dict(await _in_pool(backend.admin_status)))

    async def list_dead_letters(request: Request) -> Response:
        errors: dict[str, list[str]] = {}
        reason, limit = _reason(request, errors), _limit(request, errors)
        if errors:
            return json_response(errors, 400)
        # The first page before answering: an unavailable file is still a clean 503.
        first = await _in_pool(backend.dead_letters, reason, _page(limit, 0), None)
        return StreamingResponse(_stream(backend, reason, limit, first), media_type="application/json")

    async def retry(request: Request) -> Response:
        errors: dict[str, list[str]] = {}
        reason = _reason(request, errors)
        if errors:
            return json_response(errors, 400)
        done, body = await _in_pool(backend.retry_dead_letters, reason)
        return json_response(dict(body), 200 if done else 409)

    async def snapshot(request: Request) -> Response:
        path, position = await _in_pool(backend.snapshot)
        return FileResponse(
            path,
            media_type="application/octet-stream",
            filename="chat-analytics-snapshot.duckdb",
            # The position of the copy itself: what a replica seeded from it starts at.
            headers={POSITION_HEADER: position.token()},
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    return [
        Route(f"{PREFIX}/snapshot/", _staff_only({"GET": snapshot}, tokens), methods=_ANY),
        Route(
            f"{PREFIX}/rebuild/", _staff_only({"GET": rebuild_progress, "POST": start_rebuild}, tokens), methods=_ANY
        ),
        Route(f"{PREFIX}/status/", _staff_only({"GET": status}, tokens), methods=_ANY),
        Route(f"{PREFIX}/dead-letters/", _staff_only({"GET": list_dead_letters}, tokens), methods=_ANY),
        Route(f"{PREFIX}/dead-letters/retry/", _staff_only({"POST": retry}, tokens), methods=_ANY),
    ]


def _page(limit: int | None, sent: int) -> int:
    return DEAD_LETTER_PAGE if limit is None else min(DEAD_LETTER_PAGE, limit - sent)


async def _stream(
    backend: AdminBackend, reason: str | None, limit: int | None, first: list[dict[str, Any]]
) -> AsyncIterator[bytes]:
    """One JSON array, written a page at a time; each page is read in its own short read lease
    (keyset on the log position), so a slow client holds neither memory nor the file."""
    yield b"["
    page, sent = first, 0
    while page:
        yield (b"," if sent else b"") + b",".join(orjson.dumps(letter) for letter in page)
        sent += len(page)
        if (limit is not None and sent >= limit) or len(page) < DEAD_LETTER_PAGE:
            break
        last = page[-1]
        after = (last["topic"], last["partition"], last["offset"])
        page = await _in_pool(backend.dead_letters, reason, _page(limit, sent), after)
    yield b"]"


def can_serve(handle: ReadModelHandle) -> bool:
    """Whether this release's queries run on the file behind `handle` (an older read-model version may
    still be readable): each endpoint's query once, with no filter and with every filter."""
    now = datetime.now(UTC)
    # Every filter at once as well as none, so that each column a filter reads is touched.
    every = Filters(
        created_from=now.date(),
        created_to=now.date(),
        has_feedback=True,
        has_negative_feedback=True,
        is_flagged=True,
        query="probe",
        severity="high",
        session_id="probe",
        user_slug="probe",
    )
    every_conversation = ConversationFilters(
        input_tokens_min=0,
        input_tokens_max=1,
        output_tokens_min=0,
        output_tokens_max=1,
        total_tokens_min=0,
        total_tokens_max=1,
        last_active_after=now.date(),
        last_active_before=now.date(),
        is_reviewed=True,
        max_severity="high",
    )
    every_feedback = FeedbackFilters(
        score=1, category="other", submitted_from=now.date(), submitted_to=now.date(), has_comment=True
    )
    # The feedbacks endpoints read the narrow table from its version on, `interactions` before it.
    records = feedbacks_sql.source(handle.version)
    probe_uuid = "00000000-0000-4000-8000-000000000000"
    one = Pagination(1, 1)
    probes: list[Callable[[Any], object]] = [
        lambda cur: queries.get_interaction(cur, probe_uuid),
        lambda cur: queries.budget(cur, now, 0),
    ]
    # The KPI also reads the feedback records (unfiltered) and has a path of its own for a date range.
    probes.append(lambda cur: queries.kpi(cur, Filters(created_from=now.date()), now.date(), 30, None, records))
    for filters in (Filters(), every):
        probes += [
            lambda cur, f=filters: queries.list_interactions(cur, f, ("-created", "result_count"), one),
            lambda cur, f=filters: queries.list_users(cur, f, one),
            lambda cur, f=filters: queries.kpi(cur, f, now.date(), 30, None, records),
        ]
        # Without turn-level filters the conversations come from the kept rows, with them from the turns.
        for stage2 in (ConversationFilters(), every_conversation):
            probes += [
                lambda cur, f=filters, c=stage2: queries.conversations(cur, f, c, ("-last_active",), one),
                lambda cur, f=filters, c=stage2: queries.kpi(cur, f, now.date(), 30, c, records),
            ]
    for feedback in (FeedbackFilters(), every_feedback):
        probes += [
            lambda cur, f=feedback: queries.list_feedbacks(cur, records, f, ("-submitted_at",), one),
            lambda cur, f=feedback: queries.get_feedback(cur, records, probe_uuid, f),
        ]
    try:
        with handle.reading() as cur:
            for probe in probes:
                probe(cur)
    except Exception as exc:
        log.warning("this release cannot answer from the served file (%s: %s)", type(exc).__name__, exc)
        return False
    return True
