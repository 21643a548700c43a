"""Arrow tables lent to DuckDB by name for the statements of one block (the fold's batch rows, deltas),
and rows made into such tables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[str]:
    """`table` readable as `name` inside the block, and gone after it, even when a statement fails."""
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def rows_table(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    """Rows (tuples in the schema's column order) as an Arrow table of that schema."""
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


def schema_of(row: type[Any], types: Sequence[pa.DataType]) -> pa.Schema:
    """The Arrow schema of a NamedTuple row class: its field names, with these types."""
    return pa.schema(list(zip(row._fields, types, strict=True)))
