"""How a batch's set of keys (session ids) goes into a statement that looks them up in a keyed table.

As an IN list of parameters when the set is short: DuckDB then finds each key in the table's index
(`sessions` and `conversations` are keyed by session_id). As one list parameter, unnested, it joins the
list against the whole key column instead, which grows with the table: at a million events (177,000
sessions) 10 ms for a live batch's hundred sessions, against ~3 ms looked up. A longer list costs more
to bind than it saves (projector/apply.py `_IN_LIST_MAX`), and a catch-up batch's thousands are a join
anyway.
"""

from __future__ import annotations

from typing import Any

import duckdb

IN_LIST_MAX = 300


def where_in(sql: str, keys: list[str]) -> tuple[str, list[Any]]:
    """`sql`, whose `{}` is where the set of `keys` goes (`... IN ({})`), and its parameters."""
    if len(keys) <= IN_LIST_MAX:
        return sql.format(", ".join("?" * len(keys))), list(keys)
    return sql.format("SELECT unnest(?::VARCHAR[])"), [keys]


def execute_in(con: duckdb.DuckDBPyConnection, sql: str, keys: list[str]) -> duckdb.DuckDBPyConnection:
    """Runs `sql` (see `where_in`) over `keys`."""
    statement, params = where_in(sql, keys)
    return con.execute(statement, params)
