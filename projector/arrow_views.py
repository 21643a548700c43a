"""Arrow tables lent to DuckDB by name for one statement (the fold's batch rows, deltas), and rows made
into such tables.

`execute_with(con, sql, params, new_turns=table)` runs `sql` with `table` readable in it as `new_turns`.
It uses DuckDB's replacement scan: a name that is no table of the database is looked up among the Python
variables of the frame that runs the statement, and an Arrow table found there is scanned in place. The
statement runs in a small function whose parameters carry the tables' names, so that frame holds exactly
the tables lent, and nothing outlives the call. Registering each table as a view
(`con.register`, then `con.unregister`) did the same through the catalog: ~0.75 ms of CPU more per
statement, ~15 ms of each live batch's ~150-200 (bench/README.md, "Tables lent for one statement").
A real table of the same name would win over a lent one: the names lent are the fold's own and none is
a table of schemas/readmodel.py (the statements would fail or read the wrong rows in the tests).
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa

from serving.parsed import parsed

# The runner's own parameters, which a lent table cannot be named after.
_RUNNER_PARAMETERS = ("call", "sql", "options")


@cache
def _runner(names: tuple[str, ...]) -> Callable[..., Any]:
    """A function `(call, sql, options, *tables)` that calls `call(sql, **options)` with the tables as its
    local variables named `names`: where DuckDB's replacement scan looks for them."""
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name) or name in _RUNNER_PARAMETERS:
            raise ValueError(f"{name!r} cannot name a table lent to a statement")
    namespace: dict[str, Any] = {}
    # Names checked above, and only ever keywords written in this code base, never a user's string.
    exec(f"def lend(call, sql, options, {', '.join(names)}):\n    return call(sql, **options)\n", namespace)  # noqa: S102
    return namespace["lend"]  # type: ignore[no-any-return]


def execute_with(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None, /, **tables: pa.Table
) -> duckdb.DuckDBPyConnection:
    """`con.execute(sql, params)` with each of `tables` readable in `sql` by its keyword's name; returns
    what `execute` does (`.fetchall()` reads the result)."""
    own = getattr(con, "execute_with", None)
    if own is not None:  # a wrapper of a connection (bench.stages.TimedConnection) lends them itself
        return own(sql, params, **tables)  # type: ignore[no-any-return]
    lend = _runner(tuple(tables))
    return lend(con.execute, parsed(sql), {"parameters": params}, *tables.values())  # type: ignore[no-any-return]


def arrow_with(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None, /, **tables: pa.Table
) -> pa.Table:
    """The result of `sql` as an Arrow table, `tables` lent as by `execute_with`. Through a relation
    (`con.sql`), which DuckDB binds as it is made: a DB-API result's Arrow output copies the rows once more."""
    own = getattr(con, "arrow_with", None)
    if own is not None:
        return own(sql, params, **tables)  # type: ignore[no-any-return]
    lend = _runner(tuple(tables))
    return lend(con.sql, parsed(sql), {"params": params}, *tables.values()).to_arrow_table()  # type: ignore[no-any-return]


def rows_table(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    """Rows (tuples in the schema's column order) as an Arrow table of that schema."""
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


def schema_of(row: type[Any], types: Sequence[pa.DataType]) -> pa.Schema:
    """The Arrow schema of a NamedTuple row class: its field names, with these types."""
    return pa.schema(list(zip(row._fields, types, strict=True)))
