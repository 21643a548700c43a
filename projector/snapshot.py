"""The comparable content of a read-model file: what two folds of the same log must agree on.

Three columns are left out because they record when or in which order the projector happened to see
something, not what the log says: `dead_letters.dead_lettered_at` (wall clock), `pending_events.seq`
(arrival order) and `erasures.rows_removed` (the turns an erasure removed or dropped: where two
erasures cover one turn, the one folded first counts it). Everything else in PROJECTION_TABLES must be
equal row for row.
"""

from __future__ import annotations

from typing import Any

import duckdb

from schemas.readmodel import PROJECTION_TABLES

EXCLUDED_COLUMNS: dict[str, frozenset[str]] = {
    "dead_letters": frozenset({"dead_lettered_at"}),
    "pending_events": frozenset({"seq"}),
    "erasures": frozenset({"rows_removed"}),
}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", [table]
    ).fetchall()
    skip = EXCLUDED_COLUMNS.get(table, frozenset())
    return [name for (name,) in rows if name not in skip]


def table_rows(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection table's rows, sorted, without the arrival-dependent columns."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in PROJECTION_TABLES:
        columns = ", ".join(f'"{c}"' for c in _columns(con, table))
        # Table and column names come from the schema itself, never from a user.
        out[table] = con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
    return out


def diff(left: dict[str, list[tuple[Any, ...]]], right: dict[str, list[tuple[Any, ...]]]) -> dict[str, str]:
    """A short description, per table, of how two snapshots differ (empty when they are equal)."""
    out: dict[str, str] = {}
    for table in sorted(set(left) | set(right)):
        a, b = left.get(table, []), right.get(table, [])
        if a == b:
            continue
        only_a = [r for r in a if r not in b][:3]
        only_b = [r for r in b if r not in a][:3]
        out[table] = f"{len(a)} vs {len(b)} rows; only left: {only_a}; only right: {only_b}"
    return out
