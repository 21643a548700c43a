"""The read operations behind the endpoints, each choosing the cheapest table that answers it.

Every function takes a DuckDB cursor already inside a read transaction (see `api.readers`), so a
count and the rows it describes come from the same snapshot even while the projector writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import duckdb

from api import aggregates_sql as agg
from api import conversations_sql as conv
from api import feedbacks_sql as fsql
from api import filter_sql, row_cache
from api import interactions_sql as sql
from api.models import UserAggregate, field_names
from api.params import ConversationFilters, FeedbackFilters, Filters, Pagination
from api.streaming import Rows as Export
from serving.parsed import parsed

SEVERITY_SERIES = ("NONE", "LOW", "MEDIUM", "HIGH", "CRITICAL")
SEVERITY_BY_DAY_DAYS = 14
USER_FIELDS = field_names(UserAggregate)


# Whole lists longer than this are streamed (api.streaming) rather than built, and not remembered.
STREAM_ROWS = 1000
# A streamed list's first rows (the whole conversations list, a long transcript), sent before the others
# are sorted: the fewer, the sooner.
STREAM_HEAD_ROWS = 1024
# A page of a question that a kept count bounds to at most this many rows (a visitor's turns, a
# session's) is read in one statement that counts them too (`interactions_sql.select_few_page_keys`).
# Measured on a million turns (bench/README.md, "A visitor's page through its index"): up to it that
# statement costs 1.2-5.4 ms against 4.4-6.9 ms for a count and a top-N; past DuckDB's limit for reading
# through an index (`index_scan_max_count`, 2,048 rows) it scans, and costs more than both.
FEW_ROWS = 2000


class PageNotFound(Exception):
    """The page asked for lies past the last page."""


@dataclass(frozen=True, slots=True)
class Page:
    total: int
    rows: list[dict[str, Any]]
    pagination: Pagination | None
    last_page: int


@dataclass(frozen=True, slots=True)
class JsonPage:
    """A page whose body DuckDB rendered: the JSON array of `row_count` rows."""

    total: int
    body: bytes
    row_count: int
    pagination: Pagination | None
    last_page: int


def _scalar_value(cur: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] = ()) -> Any:
    row = cur.execute(parsed(query), list(params)).fetchone()
    return row[0] if row else None


def _scalar(cur: duckdb.DuckDBPyConnection, query: str, params: Sequence[Any] = ()) -> int:
    value = _scalar_value(cur, query, params)
    return 0 if value is None else int(value)


def _check_page(total: int, pagination: Pagination | None) -> int:
    """The last page number; raises PageNotFound for a page past it (page 1 of nothing is fine)."""
    if pagination is None:
        return 1
    last = max(1, -(-total // pagination.page_size))
    if pagination.page > last:
        raise PageNotFound
    return last


def _date_bounds(filters: Filters) -> list[date]:
    return [filters.created_from or date.min, filters.created_to or date.max]


# -- interactions ---------------------------------------------------------------------------------


def count_interactions(cur: duckdb.DuckDBPyConnection, filters: Filters) -> int:
    expression = agg.daily_count_expression(filters)
    if expression is not None:
        return _scalar(cur, agg.total_for_days(expression), _date_bounds(filters))
    given = filters.given()
    if given == {"session_id"}:
        return _scalar(cur, agg.SESSION_TURNS, [filters.session_id])
    if given == {"user_slug"}:
        return _scalar(cur, agg.USER_TURNS, [filters.user_slug])
    condition, params = sql.where(filters)
    return _scalar(cur, sql.count(condition), params)


def _kept_bound(cur: duckdb.DuckDBPyConnection, filters: Filters) -> int | None:
    """The most rows `filters` can pass, from a count the fold keeps: the visitor's turns (user_stats)
    or the session's (sessions); None when no such filter is given or the key has no kept row."""
    if filters.user_slug is not None:
        return _scalar_value(cur, agg.USER_TURNS, [filters.user_slug])
    if filters.session_id is not None:
        return _scalar_value(cur, agg.SESSION_TURNS, [filters.session_id])
    return None


def _day_window(by_day: list[tuple[date, int]], offset: int, limit: int) -> tuple[date, date, int] | None:
    """The days that hold rows [offset, offset + limit) of `by_day` (days in the page's order, with the
    rows each holds), and how many rows come before the first of those days: the page query then
    reads only those days."""
    first: date | None = None
    skipped = seen = 0
    day: date | None = None
    for day, n in by_day:
        if first is None and seen + n > offset:
            first, skipped = day, seen
        seen += n
        if first is not None and seen >= offset + limit:
            break
    if first is None or day is None:
        return None
    return min(first, day), max(first, day), skipped


def list_interactions(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters | None,
    ordering: Sequence[str],
    pagination: Pagination | None,
) -> Page:
    """Interactions passing `filters` (None: a contradiction, nothing passes) in `ordering`; all of them
    when `pagination` is None."""
    if filters is None:
        _check_page(0, pagination)
        return Page(0, [], pagination, 1)
    condition, params = sql.where(filters)
    if pagination is None:
        # A whole list counts itself: no separate count statement.
        rows = cur.execute(parsed(sql.select_all(condition, sql.order_by(ordering))), params).fetchall()
        return Page(len(rows), [sql.to_body(r) for r in rows], None, 1)
    bound = _kept_bound(cur, filters)
    if bound is not None and bound <= FEW_ROWS:
        return _few_rows_page(cur, condition, params, sql.order_by(ordering), pagination, bound)
    expression = agg.daily_count_expression(filters)
    by_day: list[tuple[date, int]] | None = None
    if expression is not None and ordering[0].lstrip("-") == "created":
        # The per-day counts give both the total and the page's days: one statement instead of two.
        newest_first = ordering[0] == "-created"
        by_day = cur.execute(
            parsed(agg.per_day(expression, newest_first=newest_first)), _date_bounds(filters)
        ).fetchall()
        total = sum(int(n) for _day, n in by_day)
    else:
        total = count_interactions(cur, filters)
    last = _check_page(total, pagination)
    if total == 0:
        return Page(0, [], pagination, last)
    offset = (pagination.page - 1) * pagination.page_size
    if by_day is not None:
        window = _day_window(by_day, offset, pagination.page_size)
        if window is not None:
            # Redundant with the filters, but lets DuckDB skip every row group outside those days.
            condition += " AND created_date BETWEEN ? AND ?"
            params = [*params, window[0], window[1]]
            offset -= window[2]
    rows = _page_rows(cur, condition, params, sql.order_by(ordering), pagination.page_size, offset)
    return Page(total, [sql.to_body(r) for r in rows], pagination, last)


def _few_rows_page(
    cur: duckdb.DuckDBPyConnection,
    condition: str,
    params: list[Any],
    order: str,
    pagination: Pagination,
    bound: int,
) -> Page:
    """A page of the at most `bound` rows passing `condition`, its keys and their count in one statement.
    No row at the page's offset means page 1 of nothing, or a page past the last (any page but the
    first: its offset is then at least the count), which `_check_page` tells apart with a count of 0.
    An offset past `bound` is not even asked for (it may be past what DuckDB's BIGINT holds)."""
    offset = (pagination.page - 1) * pagination.page_size
    if offset >= bound:
        return Page(0, [], pagination, _check_page(0, pagination))
    found = cur.execute(parsed(sql.select_few_page_keys(condition, order)), [*params, pagination.page_size, offset])
    keyed = found.fetchall()
    total = int(keyed[0][3]) if keyed else 0
    last = _check_page(total, pagination)
    rows = _rows_by_keys(cur, [(uuid, event, version) for uuid, event, version, _total in keyed])
    return Page(total, [sql.to_body(r) for r in rows], pagination, last)


def _page_rows(
    cur: duckdb.DuckDBPyConnection, condition: str, params: list[Any], order: str, limit: int, offset: int
) -> list[tuple[Any, ...]]:
    """The selected rows of one page, in order: the page's keys first, then the rows the row cache does
    not hold for those keys by key (`interactions_sql.select_page_keys`), both in the request's snapshot."""
    keys = cur.execute(parsed(sql.select_page_keys(condition, order)), [*params, limit, offset]).fetchall()
    return _rows_by_keys(cur, keys)


def _rows_by_keys(cur: duckdb.DuckDBPyConnection, keys: list[row_cache.RowKey]) -> list[tuple[Any, ...]]:
    """The selected rows of a page's keys, in order: from the row cache, and the others by uuid."""
    return row_cache.rows(keys, lambda uuids: cur.execute(parsed(sql.SELECT_BY_KEYS), [uuids]).fetchall())


def get_interaction(cur: duckdb.DuckDBPyConnection, value: str) -> dict[str, Any] | None:
    try:
        uuid = UUID(value)
    except ValueError:
        return None
    row = cur.execute(parsed(sql.SELECT_ONE), [uuid]).fetchone()
    return sql.to_body(row) if row else None


def get_interactions(cur: duckdb.DuckDBPyConnection, values: Sequence[str]) -> list[dict[str, Any] | None]:
    """`get_interaction` of each of `values`, in one statement (`api.coalescing`)."""
    wanted: dict[str, str] = {}
    for value in values:
        try:
            wanted[value] = str(UUID(value))
        except ValueError:
            continue
    keys = sorted(set(wanted.values()))
    if len(keys) == 1:  # a lone question (no other was waiting): the point lookup costs ~0.2 ms less
        rows = cur.execute(parsed(sql.SELECT_ONE), [UUID(keys[0])]).fetchall()
    else:
        rows = cur.execute(parsed(sql.SELECT_BY_KEYS), [keys]).fetchall() if keys else []
    found = {row[0]: row for row in rows}
    answers: list[dict[str, Any] | None] = []
    for value in values:
        row = found.get(wanted.get(value, ""))
        answers.append(sql.to_body(row) if row else None)
    return answers


def export_interactions(filters: Filters | None, ordering: Sequence[str]) -> Export:
    """The list's rows (or a transcript's) for `filters` (None: a contradiction), every page at once, as
    the CSV export's columns."""
    order = sql.order_by(ordering)
    if filters is None:
        return Export(lambda cur: 0, sql.select_csv("FALSE", order), [])
    condition, params = sql.where(filters)
    return Export(lambda cur: count_interactions(cur, filters), sql.select_csv(condition, order), params)


def short_whole_list(cur: duckdb.DuckDBPyConnection, filters: Filters | None, ordering: Sequence[str]) -> Page | None:
    """A transcript served whole, when it has at most STREAM_ROWS rows; None when it has more (it is
    then streamed: `stream_transcript`). Counted first (a transcript's count is one kept row), so that a
    long one is not also sorted here for nothing."""
    if filters is None:
        return Page(0, [], None, 1)
    if count_interactions(cur, filters) > STREAM_ROWS:
        return None
    condition, params = sql.where(filters)
    # No LIMIT in the statement: with one, DuckDB does not take the rows of a session from the serving
    # index and the common short transcript became slower.
    rows = cur.execute(parsed(sql.select_all(condition, sql.order_by(ordering))), params).fetchall()
    return Page(len(rows), [sql.to_body(r) for r in rows], None, 1)


def session_transcripts(cur: duckdb.DuckDBPyConnection, sessions: Sequence[str]) -> list[Page | None]:
    """`short_whole_list` of each session's turns in their own order (`created`), in two statements: the
    sessions' counts, then the turns of those short enough to be built (`api.coalescing`)."""
    counts = dict(cur.execute(parsed(agg.SESSIONS_TURNS), [sorted(set(sessions))]).fetchall())
    short = sorted({s for s in sessions if counts.get(s, 0) <= STREAM_ROWS})
    turns: dict[str, list[dict[str, Any]]] = {s: [] for s in short}
    if short:
        for row in cur.execute(parsed(sql.SELECT_SESSIONS_TURNS), [short]).fetchall():
            turns[row[0]].append(sql.to_body(row[1:]))
    return [Page(len(turns[s]), turns[s], None, 1) if s in turns else None for s in sessions]


def stream_transcript(filters: Filters, ordering: Sequence[str]) -> Export:
    """A transcript too long to build (`short_whole_list`), for `api.streaming`: each row's JSON text as
    DuckDB renders it (`interactions_sql.ROW_JSON`), the first rows found by a top-N and sent while the
    others are sorted, counted as `count_interactions` counts."""
    condition, params = sql.where(filters)
    head, rest = filter_sql.first_rows_then_rest(
        "interactions", sql.ROW_JSON, condition, sql.order_by(ordering), STREAM_HEAD_ROWS
    )
    return Export(lambda cur: count_interactions(cur, filters), head, params, rest=rest)


# -- conversations/ -------------------------------------------------------------------------------


def conversations(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters | None,
    stage2: ConversationFilters,
    ordering: Sequence[str],
    pagination: Pagination,
) -> JsonPage:
    """One page of the conversations built from the turns passing `filters` (None: nothing passes),
    kept when they pass `stage2`, in `ordering` (the whole list is streamed: `stream_conversations`)."""
    if filters is None:
        _check_page(0, pagination)
        return JsonPage(0, b"[]", 0, pagination, 1)
    # Without turn-level filters every conversation is whole: the projector keeps those rows ready.
    kept = not filters.given()
    condition, params = sql.where(filters)
    having, having_params = conv.having(stage2, kept=kept)
    rows_from = conv.source(condition, having, kept=kept)
    order = conv.order_by(ordering)
    assert pagination is not None, "a whole list is streamed: stream_conversations"
    offset = (pagination.page - 1) * pagination.page_size
    query = conv.page(rows_from, order)
    rows = cur.execute(parsed(query), [*params, *having_params, pagination.page_size, offset]).fetchall()
    # The window count comes with the rows; a page past the last has none, and is a 404 whatever the total.
    total = int(rows[0][1]) if rows else 0
    last = _check_page(total, pagination)
    body = ("[" + ",".join(row[0] for row in rows) + "]").encode()
    return JsonPage(total, body, len(rows), pagination, last)


def stream_conversations(filters: Filters | None, stage2: ConversationFilters, ordering: Sequence[str]) -> Export:
    """conversations/'s whole list, for `api.streaming`: each row's JSON text, and how many rows there
    are. The kept rows are counted apart (a count of one table is cheap, and a window count holds up
    the first row); turns grouped here are counted in the same pass (`count` None: the query's last
    column), since grouping them twice would cost twice."""
    if filters is None:
        return Export(lambda cur: 0, "SELECT '' WHERE FALSE", [])
    kept = not filters.given()
    condition, params = sql.where(filters)
    having, having_params = conv.having(stage2, kept=kept)
    rows_from = conv.source(condition, having, kept=kept)
    both = [*params, *having_params]
    order = conv.order_by(ordering)
    if kept:
        # The first rows are found by a top-N and sent while the rest are sorted (`Export.rest`).
        head, rest = conv.kept_rows_split(having, order, STREAM_HEAD_ROWS)
        return Export(lambda cur: _scalar(cur, conv.count_rows(rows_from), both), head, both, rest=rest)
    return Export(None, conv.rows(rows_from, order, counted=True), both)


def export_conversations(filters: Filters | None, stage2: ConversationFilters, ordering: Sequence[str]) -> Export:
    """conversations/'s rows for the two stages of filters, every page at once."""
    order = conv.order_by(ordering)
    if filters is None:
        return Export(lambda cur: 0, conv.select_csv("FALSE", "TRUE", order), [])
    condition, params = sql.where(filters)
    having, having_params = conv.having(stage2)
    both = [*params, *having_params]
    count = conv.count(condition, having)
    return Export(lambda cur: _scalar(cur, count, both), conv.select_csv(condition, having, order), both)


# -- anonymous-chat-feedbacks/ ----------------------------------------------------------------------


def list_feedbacks(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    filters: FeedbackFilters,
    ordering: Sequence[str],
    pagination: Pagination,
) -> Page:
    """A page of the feedback records of `table` (`feedbacks_sql.source`)."""
    condition, params = fsql.where(filters, table)
    parts = fsql.parts(ordering)
    recent = next((part.recent for part in parts if part.recent), None)
    row = cur.execute(parsed(fsql.count_parts(table, condition, parts[0], recent)), params).fetchone()
    total, first, newest_recent = (int(row[0]), int(row[1]), row[2]) if row else (0, 0, None)
    last = _check_page(total, pagination)
    if total == 0:
        return Page(0, [], pagination, last)
    # The page's rows from each of the two parts it spans, in order (`feedbacks_sql.parts`).
    skip, wanted, rows = (pagination.page - 1) * pagination.page_size, pagination.page_size, []
    for part, size in zip(parts, (first, total - first), strict=True):
        if skip >= size:
            skip -= size
            continue
        want = min(wanted - len(rows), size - skip)
        found: list[Any] = []
        newest = newest_recent if part.recent else None
        if newest is not None:
            # All the records ranked up to this page's last lie within the window when it holds as many:
            # a page as long as asked for proves it (`feedbacks_sql.RECENT`).
            query = fsql.part_page(table, condition, part, recent=True)
            found = cur.execute(parsed(query), [*params, newest - fsql.RECENT, want, skip]).fetchall()
        if len(found) < want:
            found = cur.execute(
                parsed(fsql.part_page(table, condition, part, recent=False)), [*params, want, skip]
            ).fetchall()
        rows += found
        skip = 0
        if len(rows) >= wanted:
            break
    return Page(total, [fsql.to_body(r) for r in rows], pagination, last)


def get_feedback(
    cur: duckdb.DuckDBPyConnection, table: str, value: str, filters: FeedbackFilters
) -> dict[str, Any] | None:
    """One feedback record of `table`; the list filters apply too (as the reference's retrieve runs them)."""
    try:
        uuid = UUID(value)
    except ValueError:
        return None
    condition, params = fsql.where(filters, table)
    row = cur.execute(parsed(fsql.one(table, condition)), [uuid, *params]).fetchone()
    return fsql.to_body(row) if row else None


# -- by-user/ ---------------------------------------------------------------------------------------


def _user_bodies(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(USER_FIELDS, row, strict=True)) for row in rows]


def list_users(cur: duckdb.DuckDBPyConnection, filters: Filters, pagination: Pagination | None) -> Page:
    given = filters.given()
    if not given:
        total = _scalar(cur, agg.COUNT_USERS)
        last = _check_page(total, pagination)
        if pagination is None:
            rows = cur.execute(parsed(agg.USERS_ALL)).fetchall()
        else:
            offset = (pagination.page - 1) * pagination.page_size
            rows = cur.execute(parsed(agg.USERS_PAGE), [pagination.page_size, offset]).fetchall()
        return Page(total, _user_bodies(rows), pagination, last)
    if given == {"user_slug"}:
        rows = cur.execute(parsed(agg.USER_ONE), [filters.user_slug]).fetchall()
        last = _check_page(len(rows), pagination)
        if pagination is not None and pagination.page > 1:
            rows = []
        return Page(len(rows), _user_bodies(rows), pagination, last)
    condition, params = sql.where(filters)
    total = _scalar(cur, sql.count_users(condition), params)
    last = _check_page(total, pagination)
    if pagination is None:
        rows = cur.execute(parsed(sql.users(condition, limit=False)), params).fetchall()
    else:
        offset = (pagination.page - 1) * pagination.page_size
        rows = cur.execute(parsed(sql.users(condition, limit=True)), [*params, pagination.page_size, offset]).fetchall()
    return Page(total, _user_bodies(rows), pagination, last)


def export_users(filters: Filters) -> Export:
    """by-user/'s rows for `filters`, every page at once, from the same tables as `list_users`."""
    given = filters.given()
    if not given:
        count, query, params = (lambda cur: _scalar(cur, agg.COUNT_USERS)), agg.USERS_ALL, []
    elif given == {"user_slug"}:
        query, params = agg.USER_ONE, [filters.user_slug]
        count = lambda cur: _scalar(cur, f"SELECT count(*) FROM ({agg.USER_ONE})", params)  # noqa: E731
    else:
        condition, params = sql.where(filters)
        query = sql.users(condition, limit=False)
        count = lambda cur: _scalar(cur, sql.count_users(condition), params)  # noqa: E731
    columns = ", ".join(f'"{name}"' for name in USER_FIELDS)
    return Export(count, f"SELECT * FROM ({query}) AS users({columns})", params)


# -- kpi/ -------------------------------------------------------------------------------------------


def _rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def kpi(
    cur: duckdb.DuckDBPyConnection,
    filters: Filters,
    today: date,
    window_days: int,
    stage2: ConversationFilters | None = None,
    records: str = fsql.RECORDS,
    *,
    over_turns: bool = False,
) -> dict[str, Any]:
    """The KPI over the turns passing `filters`; with `stage2` filters, only over the conversations that
    pass them (each with all its turns that pass `filters`). `records`: the table of the file's feedback
    records (`feedbacks_sql.source`), which the unfiltered KPI counts the intents of. `over_turns`: from
    the `interactions` rows alone, never the counters the projector keeps (what the tests compare those
    paths with)."""
    volume_start = today - timedelta(days=window_days - 1)
    severity_start = today - timedelta(days=SEVERITY_BY_DAY_DAYS - 1)
    days = [min(volume_start, severity_start), today]
    per_day: dict[date, dict[str, int]] = {}
    narrowing = stage2 is not None and bool(stage2.given())
    # Each path gives the additive counters (in the order of `sql.kpi_totals`), the distinct counts
    # (visitors, sessions, reviewed sessions, hallucinated sessions), the intents and the days.
    if not over_turns and not narrowing and filters.only("created_from", "created_to"):
        # No filter, or a date range alone: the counters and the days from daily_counters (one read of it);
        # the distinct counts from the kept rows or (in a range) from the turns of its days.
        lo, hi = _date_bounds(filters)
        shown = [max(days[0], lo), min(days[1], hi)]
        if filters.given():
            condition, params = sql.where(filters)
            *totals, day_rows = cur.execute(parsed(agg.kpi_daily(between=True)), [*shown, lo, hi]).fetchone()
            *distinct, intent_rows = cur.execute(parsed(sql.kpi_distinct_and_intents(condition)), params).fetchone()
            intents = dict(sorted(intent_rows or []))
        else:
            *totals, day_rows = cur.execute(parsed(agg.kpi_daily(between=False)), shown).fetchone()
            distinct = cur.execute(parsed(agg.KPI_SESSIONS)).fetchone()
            intents = dict(cur.execute(parsed(fsql.intents(records))).fetchall())
        for day, *counts in day_rows or []:
            per_day[day] = dict(zip(SEVERITY_SERIES, counts, strict=True))
    elif not over_turns and not filters.given():
        # Conversation-level filters alone: whole conversations, summed from their kept rows.
        assert stage2 is not None
        having, params = conv.having(stage2, kept=True)
        counts, users, day_rows, intent_rows = cur.execute(
            parsed(agg.kpi_kept(having)), [*params, *params, *days, *params, *params]
        ).fetchone()
        # The sums are NULL when no conversation passes.
        counts = [0 if n is None else n for n in counts]
        totals, distinct = counts[:13], (users, *counts[13:])
        for day, *by_severity in day_rows or []:
            per_day[day] = dict(zip(SEVERITY_SERIES, by_severity, strict=True))
        intents = dict(sorted(intent_rows or []))
    elif narrowing:
        # Turn-level and conversation-level filters: the narrowed turns, found once (`sql.kpi_once`).
        assert stage2 is not None
        condition, params = sql.where(filters)
        having, having_params = conv.having(stage2)
        condition, params = conv.narrowed(condition, having), [*params, *params, *having_params]
        totals, distinct, day_rows, intent_rows = cur.execute(
            parsed(sql.kpi_once(condition)), [*params, *days]
        ).fetchone()
        for day, severity, n in day_rows or []:
            per_day.setdefault(day, {})[severity.upper()] = n
        intents = dict(sorted(intent_rows or []))
    else:
        condition, params = sql.where(filters)
        totals = cur.execute(parsed(sql.kpi_totals(condition)), params).fetchone()
        for day, severity, n in cur.execute(parsed(sql.per_day_severity(condition)), [*params, *days]).fetchall():
            per_day.setdefault(day, {})[severity.upper()] = n
        if over_turns:
            # The plain statements, which the combined one is compared with.
            distinct = cur.execute(parsed(sql.kpi_sessions(condition)), params).fetchone()
            intents = dict(cur.execute(parsed(sql.intent_distribution(condition)), params).fetchall())
        else:
            *distinct, intent_rows = cur.execute(parsed(sql.kpi_distinct_and_intents(condition)), params).fetchone()
            intents = dict(sorted(intent_rows or []))
    (turns, flagged, up, down, clicks, clarifications, tokens_in, tokens_out, reviewed, score_sum, _hallucinated,
     review_in, review_out) = totals  # fmt: skip
    users, sessions, reviewed_sessions, hallucinated_sessions = distinct

    def day_count(day: date) -> int:
        return sum(per_day.get(day, {}).values())

    volume_days = [volume_start + timedelta(days=i) for i in range(window_days)]
    severity_days = [severity_start + timedelta(days=i) for i in range(SEVERITY_BY_DAY_DAYS)]
    return {
        "interactions_total": turns,
        "sessions_total": sessions,
        "unique_users": users,
        "flagged_total": flagged,
        "feedback_positive": up,
        "feedback_negative": down,
        "satisfaction_rate": _rate(up, up + down),
        "clicks_total": clicks,
        "click_through_rate": _rate(clicks, turns),
        "avg_llm_resolution_score": _rate(score_sum, reviewed),
        "llm_intent_distribution": intents,
        # docs/api.md: both counted in sessions, so the rate never exceeds 1.
        "hallucination_rate": _rate(hallucinated_sessions, reviewed_sessions),
        "review_coverage": _rate(reviewed_sessions, sessions),
        "daily_volume": [{"date": d.isoformat(), "count": day_count(d)} for d in volume_days],
        "clarification_requests_total": clarifications,
        "clarification_rate": _rate(clarifications, turns),
        "input_tokens_total": tokens_in,
        "output_tokens_total": tokens_out,
        "reviewed_total": reviewed_sessions,
        "review_input_tokens_total": review_in,
        "review_output_tokens_total": review_out,
        "severity_by_day": {
            "labels": [d.isoformat() for d in severity_days],
            "series": {s: [per_day.get(d, {}).get(s, 0) for d in severity_days] for s in SEVERITY_SERIES},
        },
    }


# -- budget/ ----------------------------------------------------------------------------------------


def budget(cur: duckdb.DuckDBPyConnection, now: datetime, limit: int) -> dict[str, Any]:
    today = now.date()
    row = cur.execute(parsed(agg.BUDGET_TODAY), [today]).fetchone()
    tokens, requests = (int(row[0]), int(row[1])) if row else (0, 0)
    resets_at = datetime.combine(today + timedelta(days=1), time())
    return {
        "tokens_today": tokens,
        "tokens_limit": max(limit, 0),
        "resets_at": resets_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "requests_today": requests,
    }
