"""How a request reads the model: its own cursor, in its own read transaction, off the event loop, at
a read-model position of at least the one the client asked for."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import duckdb
from starlette.concurrency import run_in_threadpool

from api import row_cache
from api.row_cache import RowCache
from api.snapshot_cache import SnapshotCache, snapshot_state, state_of
from schemas.position import Position
from serving.changes import Key, MarkRows
from serving.handle import ReadModelHandle
from serving.parsed import parsed

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """What `work` returned (None when not `reached`) and the position of the snapshot it read."""

    value: T | None
    position: Position
    reached: bool = True


class PositionNotReached(Exception):
    """The served file did not reach the requested position in time (a 503 with Retry-After)."""

    def __init__(self, position: Position, minimum: Position, waited_s: float) -> None:
        super().__init__(
            f"This replica's read model is at {position.token()}, behind min_position {minimum.token()},"
            f" after waiting {waited_s * 1000:.0f} ms; retry shortly."
        )
        self.position = position


def _row_count(value: object) -> int:
    count = getattr(value, "row_count", None)
    return int(count) if count is not None else len(getattr(value, "rows", ()))


def _snapshot(
    cur: duckdb.DuckDBPyConnection,
    handle: ReadModelHandle,
    topic: str,
    minimum: Position | None,
    published: MarkRows | None = None,
) -> tuple[tuple[int, int], Position, bool, int]:
    """The snapshot's mark, its read-model position, whether that covers the client's `minimum`, and
    its count of what removed turns (`snapshot_state`); from the mark's rows the last commit `published`
    when given (`serving.changes.ChangeLog.current`), else read with `cur`."""
    if published is None:
        mark, offsets, forgets = snapshot_state(cur, handle.generation, topic)
    else:
        mark, offsets, forgets = state_of(published, handle.generation, topic)
    position = Position.of(handle.version, topic, offsets)
    return mark, position, minimum is None or position.covers(minimum), forgets


def _in_snapshot(
    handle: ReadModelHandle,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    cache: SnapshotCache | None,
    key: Hashable,
    topic: str,
    minimum: Position | None,
    rows: RowCache | None = None,
    depends: Key | None = None,
) -> Answer[T]:
    # A read lease for the whole unit of work: a blue/green switch waits for it to end, so the file
    # cannot be swapped (or closed) under a request, and the next request reads the new file.
    with handle.reading() as cur:
        # What this process saw of the projector's commits: a hint of whether the answer remembered for
        # `key` can still be current. It only picks which of two exact paths to take (the mark decides).
        commits = handle.positions.commits
        if cache is not None and cache.may_hold(key, commits):
            # The common case, a remembered answer, costs at most one statement and no transaction: the
            # mark alone is one statement, so one snapshot, and the answer remembered for it is that
            # snapshot's. Between a live commit and the next commit of the process not even that: the
            # projector published the mark its commit left (`serving.changes`). A miss reads the mark
            # again inside its transaction, one statement more on a query that costs far more, where a
            # BEGIN and a ROLLBACK on every hit slow the common case. A question never remembered, or
            # remembered before a commit this process saw, goes to the transaction straight away: its
            # mark outside would be a statement read for nothing.
            mark, position, reached, _forgets = _snapshot(cur, handle, topic, minimum, handle.changes.current())
            if not reached:
                return Answer(None, position, reached=False)
            found, value = cache.get(mark, key, handle.changes)
            if found:
                return Answer(value, position)
        # One transaction, so that a count and the rows it describes see the same projector commit; the
        # answer computed in it belongs to the mark read in it.
        cur.execute(parsed("BEGIN TRANSACTION"))
        try:
            mark, position, reached, forgets = _snapshot(cur, handle, topic, minimum)
            if not reached:
                return Answer(None, position, reached=False)
            # The rows of this file's generation (read inside the lease), as of this snapshot's removals.
            serving = row_cache.serving(rows, handle.generation, forgets)
            if cache is None:
                with serving:
                    return Answer(work(cur), position)
            found, value = cache.claim(mark, key, commits, handle.changes)
            if not found:
                try:
                    with serving:
                        value = work(cur)
                    cache.put(
                        mark,
                        key,
                        value,
                        rows=_row_count(value),
                        commits=commits,
                        depends=depends,
                        changes=handle.changes,
                    )
                finally:
                    cache.release(mark, key)
            return Answer(value, position)
        finally:
            cur.execute(parsed("ROLLBACK"))


async def read(
    handle: ReadModelHandle,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    topic: str,
    cache: SnapshotCache | None = None,
    key: Hashable = None,
    minimum: Position | None = None,
    wait_s: float = 0.0,
    rows: RowCache | None = None,
    depends: Key | None = None,
) -> Answer[T]:
    """Runs `work(cursor)` in the threadpool: DuckDB calls block, the event loop must not. With a
    `cache`, an answer to the same `key` (everything the answer depends on besides the data) computed
    in the same snapshot is returned instead, or in a later one when the answer `depends` on one key of
    `serving.changes` that no commit since touched. With `rows`, pages take the rows it holds (`api.row_cache`).

    With a `minimum` position the file has not reached, waits (on the event loop, holding no thread)
    for the projector's next commit and looks again, for at most `wait_s`; then returns an answer that
    is not `reached`."""
    deadline = time.monotonic() + wait_s
    board = handle.positions
    while True:
        # Taken before the read: a commit between the read and the wait still wakes the wait.
        seen = board.commits
        answer = await run_in_threadpool(_in_snapshot, handle, work, cache, key, topic, minimum, rows, depends)
        remaining = deadline - time.monotonic()
        if answer.reached or remaining <= 0:
            return answer
        await board.wait(seen, remaining)
        # A commit that leaves a partition of `minimum` behind cannot have reached it: wait for the next
        # one without reading (at the head of the topic a commit comes every few hundred ms, and many
        # readers may wait for their own writes). `seen` first, so that a commit between the two is not missed.
        while minimum is not None and (remaining := deadline - time.monotonic()) > 0:
            seen = board.commits
            if not board.behind(topic, minimum):
                break
            await board.wait(seen, remaining)
