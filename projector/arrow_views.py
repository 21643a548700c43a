"""Arrow tables lent to DuckDB by name for the statements of one block (the fold's batch rows, deltas)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
