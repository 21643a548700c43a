"""How a batch's set of keys (session ids, interaction uuids) goes into a statement that looks them up.

As an IN list of parameters when the set is short: DuckDB then finds each key in the table's index
(`sessions` and `conversations` are keyed by session_id, `interactions` by uuid). As one list parameter,
unnested, it joins the list against the whole key column instead, which grows with the table: at a
million events (177,000 sessions) 10 ms for a live batch's hundred sessions, against ~3 ms looked up,
and a live batch's hundred uuids were 1.5-3x slower to find in `interactions` that way. A longer list
costs more to bind than it saves, and a catch-up batch's thousands are a join anyway (a table without
an index on the key, such as a million applied event ids, is scanned whatever the form: its callers ask
for no placeholders).
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

IN_LIST_MAX = 300


def where_in(
    sql: str, keys: list[str], *, key_type: str = "VARCHAR", max_placeholders: int = IN_LIST_MAX
) -> tuple[str, list[Any]]:
    """`sql`, whose `{}` is where the set of `keys` goes (`... IN ({})`), and its parameters: up to
    `max_placeholders` keys as one placeholder each, more as one list of `key_type` (a fixed SQL type
    name), unnested."""
    if len(keys) <= max_placeholders:
        return sql.format(", ".join("?" * len(keys))), list(keys)
    return sql.format(f"SELECT unnest(?::{key_type}[])"), [keys]


def narrowed(
    sql: str, column: str, keys: list[str] | pa.Array | pa.ChunkedArray, *, max_placeholders: int = IN_LIST_MAX
) -> tuple[str, list[Any]]:
    """`sql`, a statement that joins a batch's rows to a table by key and ends with its WHERE clause, with
    `AND column IN (?, ...)` over `keys` when they are few, and its parameters: the join alone scans
    the table's whole key column, the list lets DuckDB find those keys in the index first. Unchanged
    for a longer set, which the join is cheaper for."""
    if not len(keys) or len(keys) > max_placeholders:
        return sql, []
    values = keys if isinstance(keys, list) else keys.to_pylist()
    return f"{sql} AND {column} IN ({', '.join('?' * len(values))})", values


def execute_in(con: duckdb.DuckDBPyConnection, sql: str, keys: list[str]) -> duckdb.DuckDBPyConnection:
    """Runs `sql` (see `where_in`) over `keys`."""
    statement, params = where_in(sql, keys)
    return con.execute(statement, params)
