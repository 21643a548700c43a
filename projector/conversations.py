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

A rebuild defers the table instead (`defer`, then `settle`): its file is not served until it is done,
and one statement over every turn at the end costs less than keeping the rows batch by batch, where a
session spread over several transactions is computed again in each. Whether a file's rows are
deferred is stored in it (`meta`), committed with the batches folded so, so a rebuild that stops half
way stays deferred; `settle` computes the whole table and clears the mark in one transaction, and a
projector service made on a deferred file (`serve` on what an interrupted rebuild left) settles it
before it folds anything (projector/service.py). `serve --no-projector` refuses such a file: nothing
would ever complete it, and its conversations would be missing.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from projector.keysets import execute_in, range_params, ranges
from projector.transaction import transaction
from schemas.conversation_rows import REFRESH, REFRESH_ALL, refresh_sql
from serving.parsed import parsed

# meta: present while the table is deferred (see the module docstring)
DEFERRED_KEY = "conversations_deferred"
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
        con.execute(parsed(refresh_sql(len(created))), [sorted(spans), *range_params(created)])
    unspanned = [s for s in touched if s not in spans]
    if unspanned:
        con.execute(parsed(REFRESH), [unspanned])


def defer(con: duckdb.DuckDBPyConnection) -> None:
    """Marks the file's conversations as deferred: the fold leaves the table alone until `settle`. For a
    file that is being built and not served (a rebuild)."""
    con.execute(parsed("INSERT INTO meta VALUES (?, 'true') ON CONFLICT (key) DO NOTHING"), [DEFERRED_KEY])


def is_deferred(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the file's conversations are deferred: a rebuild made it and has not settled it (yet)."""
    return bool(con.execute(parsed("SELECT 1 FROM meta WHERE key = ?"), [DEFERRED_KEY]).fetchall())


def settle(con: duckdb.DuckDBPyConnection) -> bool:
    """If the file's conversations are deferred, computes the whole table from the turns and clears the
    mark, in one transaction of its own; returns whether it did."""
    with transaction(con):
        if not is_deferred(con):
            return False
        con.execute(parsed("DELETE FROM conversations"))
        con.execute(parsed(REFRESH_ALL))
        con.execute(parsed("DELETE FROM meta WHERE key = ?"), [DEFERRED_KEY])
    return True
