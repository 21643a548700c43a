"""The rows the projector keeps (`conversations`, `feedback_records`), against the same rows recomputed
from every turn now."""

from __future__ import annotations

from typing import Any

import duckdb

from schemas.conversation_rows import REFRESH
from schemas.readmodel import FEEDBACK_RECORD_COLUMNS, IS_FEEDBACK_RECORD


def kept_and_recomputed(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every kept row (each column, the KPI's counters, days and intents included), and the rows a
    recomputation of every session from the turns that are left gives (in a transaction rolled back)."""
    cur = con.cursor()
    try:
        kept = cur.execute("SELECT * FROM conversations ORDER BY session_id").fetchall()
        cur.execute("BEGIN")
        sessions = [s for (s,) in cur.execute("SELECT DISTINCT session_id FROM interactions").fetchall()]
        cur.execute("DELETE FROM conversations")
        cur.execute(REFRESH, [sessions])
        fresh = cur.execute("SELECT * FROM conversations ORDER BY session_id").fetchall()
        cur.execute("ROLLBACK")
    finally:
        cur.close()
    return kept, fresh


def kept_and_copied_records(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every kept `feedback_records` row, and the same columns of every turn with a score or a review now."""
    columns = ", ".join(FEEDBACK_RECORD_COLUMNS)
    cur = con.cursor()
    try:
        kept = cur.execute(f"SELECT {columns} FROM feedback_records ORDER BY uuid").fetchall()
        copied = cur.execute(f"SELECT {columns} FROM interactions WHERE {IS_FEEDBACK_RECORD} ORDER BY uuid").fetchall()
    finally:
        cur.close()
    return kept, copied
