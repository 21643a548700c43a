"""How a request reads the model: its own cursor, in its own read transaction, off the event loop."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

import duckdb
from starlette.concurrency import run_in_threadpool

from api.snapshot_cache import SnapshotCache, snapshot_mark
from schemas.readmodel import ReadModelHandle

T = TypeVar("T")


def _row_count(value: object) -> int:
    count = getattr(value, "row_count", None)
    return int(count) if count is not None else len(getattr(value, "rows", ()))


def _in_snapshot(
    handle: ReadModelHandle,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    cache: SnapshotCache | None,
    key: Hashable,
) -> T:
    # A read lease for the whole unit of work: a blue/green switch waits for it to end, so the file
    # cannot be swapped (or closed) under a request, and the next request reads the new file.
    with handle.reading() as cur:
        if cache is not None:
            # The mark alone, outside a transaction: it is one statement, so one snapshot, and a
            # remembered answer for it is that snapshot's answer. The common case ends here.
            found, value = cache.get(snapshot_mark(cur, handle.generation), key)
            if found:
                return value
        # One transaction, so that a count and the rows it describes see the same projector commit.
        cur.execute("BEGIN TRANSACTION")
        try:
            if cache is None:
                return work(cur)
            # Read again inside the transaction: the answer computed here belongs to this mark.
            mark = snapshot_mark(cur, handle.generation)
            found, value = cache.claim(mark, key)
            if not found:
                try:
                    value = work(cur)
                    cache.put(mark, key, value, rows=_row_count(value))
                finally:
                    cache.release(mark, key)
            return value
        finally:
            cur.execute("ROLLBACK")


async def read(
    handle: ReadModelHandle,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    cache: SnapshotCache | None = None,
    key: Hashable = None,
) -> T:
    """Runs `work(cursor)` in the threadpool: DuckDB calls block, the event loop must not. With a
    `cache`, an answer to the same `key` (everything the answer depends on besides the data) computed
    in the same snapshot is returned instead."""
    return await run_in_threadpool(_in_snapshot, handle, work, cache, key)
