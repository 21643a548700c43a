"""The shortcuts through the incremental aggregates give the same answers as scanning the turns.

On a few thousand generated events over four days (with feedback, clicks, reviews, duplicates and bad
events), every answer the API takes from daily_counters / sessions / user_stats is compared with the
same answer computed from the `interactions` rows alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pytest

from api import encoding, interactions_sql, queries
from api.params import Filters, Pagination
from projector.fold import apply_batch
from schemas.readmodel import connect
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, PREFIX, make_client
from tests.support.events import stream, to_records

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
TODAY = date(2026, 11, 25)
EVERYTHING = Filters(created_from=date(1, 1, 1))  # a filter that keeps every turn (by-user: the scan path)


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadModelHandle]:
    con = connect(tmp_path_factory.mktemp("aggregates") / "rm.duckdb")
    events: list[Any] = []
    for day in range(4):
        events += stream(700, seed=day + 1, sessions=60, start=START + timedelta(days=day))
    offset = 0
    for i in range(0, len(events), 400):
        batch = to_records(events[i : i + 400], start=offset)
        offset += len(batch)
        apply_batch(con, batch)
    yield ReadModelHandle(con)
    con.close()


@pytest.fixture
def cur(handle: ReadModelHandle) -> Iterator[duckdb.DuckDBPyConnection]:
    cursor = handle.cursor()
    yield cursor
    cursor.close()


def scan_count(cur: duckdb.DuckDBPyConnection, filters: Filters) -> int:
    condition, params = interactions_sql.where(filters)
    return cur.execute(f"SELECT count(*) FROM interactions WHERE {condition}", params).fetchone()[0]


def test_the_data_spans_several_days(cur: duckdb.DuckDBPyConnection) -> None:
    (n_days,) = cur.execute("SELECT count(DISTINCT created_date) FROM interactions").fetchone()
    assert n_days >= 4


def some_filters(cur: duckdb.DuckDBPyConnection) -> list[Filters]:
    session, slug = cur.execute(
        "SELECT session_id, user_slug FROM interactions WHERE user_slug <> '' LIMIT 1"
    ).fetchone()
    return [
        Filters(),
        *(Filters(severity=s) for s in ("none", "low", "medium", "high", "critical")),
        Filters(is_flagged=True),
        Filters(is_flagged=False),
        Filters(created_from=date(2026, 11, 21)),
        Filters(created_from=date(2026, 11, 21), created_to=date(2026, 11, 22), severity="high"),
        Filters(created_to=date(2026, 11, 22), is_flagged=False),
        Filters(session_id=session),
        Filters(user_slug=slug),
        Filters(session_id="no-such-session"),
        Filters(user_slug="no-such-user"),
    ]


def test_counts_from_aggregates_equal_counts_of_the_rows(cur: duckdb.DuckDBPyConnection) -> None:
    for filters in some_filters(cur):
        assert queries.count_interactions(cur, filters) == scan_count(cur, filters), filters


def test_pages_read_through_day_windows_equal_the_whole_ordered_list(cur: duckdb.DuckDBPyConnection) -> None:
    # A page is read as its uuids, then their rows by key (queries._page_rows); the whole list in one
    # statement. Same rows, same order, every field (result_count has many ties: the uuid breaks them).
    for filters in some_filters(cur):
        for ordering in (("-created",), ("created",), ("created", "-result_count"), ("-result_count",)):
            whole = queries.list_interactions(cur, filters, ordering, None).rows
            # Every page of 97, and the first 30 pages of one row.
            for page_size, pages in ((97, max(1, -(-len(whole) // 97))), (1, min(len(whole), 30))):
                paged: list[dict[str, Any]] = []
                for n in range(1, pages + 1):
                    paged += queries.list_interactions(cur, filters, ordering, Pagination(n, page_size)).rows
                expected = whole[: pages * page_size]
                assert encoding.dumps(paged) == encoding.dumps(expected), (filters, ordering, page_size)


def test_kpi_from_aggregates_equals_kpi_from_the_rows(cur: duckdb.DuckDBPyConnection) -> None:
    # The unfiltered KPI (kept rows and counters) and date ranges (daily_counters and the range's turns)
    # against the same KPI from the turns alone. (tests/api/test_api_conversations_scan.py compares every
    # path with a plain Python scan too.)
    from_aggregates = queries.kpi(cur, Filters(), TODAY, 30)
    assert from_aggregates["interactions_total"] > 1000 and from_aggregates["reviewed_total"] > 50
    assert from_aggregates == queries.kpi(cur, Filters(), TODAY, 30, over_turns=True)
    for filters in (EVERYTHING, Filters(created_from=date(2026, 11, 21), created_to=date(2026, 11, 22))):
        assert queries.kpi(cur, filters, TODAY, 30) == queries.kpi(cur, filters, TODAY, 30, over_turns=True), filters


def test_the_filtered_kpi_equals_the_kpi_from_the_plain_statements(cur: duckdb.DuckDBPyConnection) -> None:
    # The distinct counts and the intents of a KPI over filtered turns come from one statement; the
    # reference reads them with the two plain ones (and an unfiltered KPI from the turns alone).
    for filters in [
        *some_filters(cur),
        EVERYTHING,
        Filters(created_from=date(2026, 11, 23), created_to=date(2026, 11, 21)),
    ]:
        assert queries.kpi(cur, filters, TODAY, 30) == queries.kpi(cur, filters, TODAY, 30, over_turns=True), filters
    assert queries.kpi(cur, Filters(user_slug="no-such-user"), TODAY, 7)["llm_intent_distribution"] == {}


def test_by_user_from_user_stats_equals_by_user_from_the_rows(cur: duckdb.DuckDBPyConnection) -> None:
    from_stats = queries.list_users(cur, Filters(), None)
    from_rows = queries.list_users(cur, EVERYTHING, None)
    assert from_stats.total == from_rows.total > 10
    assert from_stats.rows == from_rows.rows
    slug = from_stats.rows[3]["user_slug"]
    assert queries.list_users(cur, Filters(user_slug=slug), None).rows == [from_stats.rows[3]]


def test_the_api_pages_agree_with_the_total(handle: ReadModelHandle) -> None:
    with make_client(handle, clock=lambda: datetime(2026, 11, 25, 12, tzinfo=UTC)) as c:
        first = c.get(f"{PREFIX}/", params={"page_size": 300, "severity": "critical"}, headers=AUTH)
        total = int(first.headers["x-result-count"])
        seen = len(first.json())
        page = 2
        while 'rel="next"' in first.headers["link"]:
            first = c.get(f"{PREFIX}/", params={"page_size": 300, "severity": "critical", "page": page}, headers=AUTH)
            seen += len(first.json())
            page += 1
        assert seen == total > 0
        assert (
            c.get(f"{PREFIX}/kpi/", params={"severity": "critical"}, headers=AUTH).json()["interactions_total"] == total
        )


def _pages(cur: duckdb.DuckDBPyConnection, filters: Filters, ordering: tuple[str, ...], size: int) -> list[Any]:
    """Every page of `filters` in `ordering` by `size`, and the page past the last: (count, last page,
    rows as served) of each, or "not found"."""
    pages: list[Any] = []
    n = 1
    while True:
        try:
            page = queries.list_interactions(cur, filters, ordering, Pagination(n, size))
        except queries.PageNotFound:
            pages.append("not found")
            return pages
        pages.append((page.total, page.last_page, encoding.dumps(page.rows)))
        n += 1


def test_a_page_of_few_turns_counted_with_its_keys_equals_the_count_then_the_page(
    cur: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A visitor's or a session's page, when their kept count is small, is read in one statement that
    # also counts (queries._few_rows_page); otherwise by a count and a top-N. Every page of every
    # visitor, of some sessions, narrowed by other filters too, and the page past the last.
    visitors = [u for (u,) in cur.execute("SELECT user_slug FROM user_stats ORDER BY user_slug").fetchall()]
    sessions = [s for (s,) in cur.execute("SELECT session_id FROM sessions ORDER BY turns DESC LIMIT 8").fetchall()]
    assert len(visitors) >= 5 and max(queries._kept_bound(cur, Filters(user_slug=u)) or 0 for u in visitors) > 20
    cases = [
        *(Filters(user_slug=u) for u in visitors),
        *(Filters(user_slug=u, created_from=date(2026, 11, 21), created_to=date(2026, 11, 22)) for u in visitors[:5]),
        *(Filters(user_slug=u, severity="none") for u in visitors[:5]),
        *(Filters(session_id=s) for s in sessions),
        Filters(session_id=sessions[0], is_flagged=False),
        Filters(user_slug=visitors[0], created_from=date(2030, 1, 1)),  # a visitor with nothing in range
    ]
    for filters in cases:
        assert queries._kept_bound(cur, filters) is not None, filters
        for ordering, size in ((("-created",), 7), (("created", "-result_count"), 3), (("-result_count",), 50)):
            monkeypatch.setattr(queries, "FEW_ROWS", 0)
            general = _pages(cur, filters, ordering, size)
            monkeypatch.setattr(queries, "FEW_ROWS", 10**9)
            counted = _pages(cur, filters, ordering, size)
            assert counted == general, (filters, ordering, size)
            assert general[-1] == "not found"
