"""Keeps `conversations` up to date with each batch, inside its transaction: the row of every session a
batch touched (a new turn, or a feedback, click or review applied to one of its turns) is computed again
from all its turns (`schemas.conversation_rows`), JSON included.

So the API serves the unfiltered conversations list, and lists narrowed only by conversation-level
filters, from one row per session instead of grouping every turn and rendering every row per request.
The rows are a pure function of `interactions`, so a rebuild, which runs the same fold, reaches the same
table. Whoever deletes turns calls `refresh` with their sessions too: a session without turns left loses
its row.

Finding the sessions' turns is the cost that grows with the file: DuckDB reads a session list against
every row's session_id. So the read is also bounded by when the sessions' turns were created, which
DuckDB checks against each row group's min/max of `created` and so skips most of the file (turns are
stored about in arrival order, and a batch touches sessions of a few periods). The bounds are each
session's first and last turn as `sessions` holds them, which the caller has already brought up to date
with the batch (`aggregates.refresh`, `aggregates.recount`); they are exact by definition, so the row
is the same as from the unbounded read. A touched session without a `sessions` row (its turns were
all deleted) is read unbounded, so that a row never depends on `sessions` being right. The old rows
and the spans are looked up by key (`projector.keysets`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import duckdb

from projector.keysets import execute_in
from schemas.conversation_rows import REFRESH, refresh_sql

_DELETE = "DELETE FROM conversations WHERE session_id IN ({})"
_SPANS = "SELECT session_id, first_created, last_created FROM sessions WHERE session_id IN ({})"
# The sessions' spans merged into at most this many ranges of `created` (the closest ones first): each
# range is one more comparison per row read, and a batch's sessions mostly lie in one or two periods.
MAX_RANGES = 8


def refresh(con: duckdb.DuckDBPyConnection, sessions: Iterable[str]) -> None:
    """Recomputes the rows of `sessions` from their turns; call inside the batch's transaction, after
    `sessions` is up to date with it."""
    touched = sorted(set(sessions))
    if not touched:
        return
    execute_in(con, _DELETE, touched)
    spans = {s: (first, last) for s, first, last in execute_in(con, _SPANS, touched).fetchall()}
    if spans:
        ranges = created_ranges(list(spans.values()))
        con.execute(refresh_sql(len(ranges)), [sorted(spans), *(bound for r in ranges for bound in r)])
    unspanned = [s for s in touched if s not in spans]
    if unspanned:
        con.execute(REFRESH, [unspanned])


def created_ranges(spans: list[tuple[datetime, datetime]], limit: int = MAX_RANGES) -> list[tuple[datetime, datetime]]:
    """The spans (first, last) merged into at most `limit` ranges covering all of them: overlapping
    ones first, then the two with the shortest gap between them, until `limit` are left."""
    merged: list[tuple[datetime, datetime]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    while len(merged) > limit:
        i = min(range(len(merged) - 1), key=lambda j: merged[j + 1][0] - merged[j][1])
        merged[i : i + 2] = [(merged[i][0], max(merged[i][1], merged[i + 1][1]))]
    return merged
