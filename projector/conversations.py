"""Keeps `conversations` up to date with each batch, inside its transaction: the row of every session a
batch touched (a new turn, or a feedback, click or review applied to one of its turns) is computed again
from all its turns (`schemas.conversation_rows`), JSON included.

So the API serves the unfiltered conversations list, and lists narrowed only by conversation-level
filters, from one row per session instead of grouping every turn and rendering every row per request.
The rows are a pure function of `interactions`, so a rebuild, which runs the same fold, reaches the same
table. Whoever deletes turns calls `refresh` with their sessions too: a session without turns left loses
its row.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from schemas.conversation_rows import REFRESH

_DELETE = "DELETE FROM conversations WHERE session_id IN (SELECT unnest(?::VARCHAR[]))"


def refresh(con: duckdb.DuckDBPyConnection, sessions: Iterable[str]) -> None:
    """Recomputes the rows of `sessions` from their turns; call inside the batch's transaction."""
    touched = sorted(set(sessions))
    if not touched:
        return
    con.execute(_DELETE, [touched])
    con.execute(REFRESH, [touched])
