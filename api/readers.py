"""How a request reads the model: its own cursor, in its own read transaction, off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import duckdb
from starlette.concurrency import run_in_threadpool

from schemas.readmodel import ReadModelHandle

T = TypeVar("T")


def _in_snapshot(handle: ReadModelHandle, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    # A read lease for the whole unit of work: a blue/green switch waits for it to end, so the file
    # cannot be swapped (or closed) under a request, and the next request reads the new file.
    with handle.reading() as cur:
        # One transaction, so that a count and the rows it describes see the same projector commit.
        cur.execute("BEGIN TRANSACTION")
        try:
            return work(cur)
        finally:
            cur.execute("ROLLBACK")


async def read(handle: ReadModelHandle, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """Runs `work(cursor)` in the threadpool: DuckDB calls block, the event loop must not."""
    return await run_in_threadpool(_in_snapshot, handle, work)
