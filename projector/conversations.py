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

import duckdb

from projector.keysets import execute_in, range_params, ranges
from schemas.conversation_rows import REFRESH, refresh_sql

_DELETE = "DELETE FROM conversations WHERE session_id IN ({})"
_SPANS = "SELECT session_id, first_created, last_created FROM sessions WHERE session_id IN ({})"


def refresh(con: duckdb.DuckDBPyConnection, sessions: Iterable[str]) -> None:
    """Recomputes the rows of `sessions` from their turns; call inside the batch's transaction, after
    `sessions` is up to date with it."""
    touched = sorted(set(sessions))
    if not touched:
        return
    execute_in(con, _DELETE, touched)
    spans = {s: (first, last) for s, first, last in execute_in(con, _SPANS, touched).fetchall()}
    if spans:
        created = ranges(list(spans.values()))  # at most keysets.MAX_RANGES
        con.execute(refresh_sql(len(created)), [sorted(spans), *range_params(created)])
    unspanned = [s for s in touched if s not in spans]
    if unspanned:
        con.execute(REFRESH, [unspanned])
