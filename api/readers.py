"""How a request reads the model: its own cursor, in its own read transaction, off the event loop, at
a read-model position of at least the one the client asked for."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import duckdb
from starlette.concurrency import run_in_threadpool

from api import row_cache
from api.coalescing import Coalescer
from api.row_cache import RowCache
from api.snapshot_cache import SnapshotCache, snapshot_state, state_of
from schemas.position import Position
from serving.changes import COMMITS, ChangeLog, Key, MarkRows
from serving.handle import ReadModelHandle
from serving.parsed import parsed

T = TypeVar("T")
R = TypeVar("R")


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


@dataclass(frozen=True, slots=True)
class Question:
    """A question of a kind answered together (`Together`): the argument it asks about, the answer
    cache's key of its answer, what that answer depends on, and the position the client asked for."""

    arg: Any
    key: Hashable
    depends: Key | None
    minimum: Position | None


@dataclass(frozen=True)
class Together:
    """A kind of question whose cache misses are answered together (`api.coalescing`): `many(cursor,
    args)` answers a list of its arguments in one snapshot, each as the kind's own work would alone."""

    many: Callable[[duckdb.DuckDBPyConnection, Sequence[Any]], Sequence[Any]]
    max_batch: int
    coalescer: Coalescer[Question] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "coalescer", Coalescer(self.max_batch))


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
    together: tuple[Together, Any] | None = None,
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
        if together is not None and cache is not None:
            kind, arg = together
            question = Question(arg, key, depends, minimum)
            # This thread's cursor reads for the batch when it leads one (a second lease here could wait
            # for a blue/green switch that waits for this one).
            done, answer = kind.coalescer.ask(
                question, lambda questions: _answers_together(cur, handle, kind, questions, cache, topic)
            )
            if done:
                return answer  # type: ignore[no-any-return]  # an Answer of `work`'s kind

        # On the published mark or in a read transaction (`_one_snapshot`): the answer computed belongs to
        # the mark of the snapshot it was computed in.
        def computed(published: MarkRows | None, unchanged: Callable[[], bool]) -> Answer[T] | None:
            """`work`'s answer (or the one the cache holds) in the snapshot `cur` reads (`_one_snapshot`);
            None, remembering nothing, when `unchanged` says that snapshot moved while the work ran."""
            mark, position, reached, forgets = _snapshot(cur, handle, topic, minimum, published)
            if not reached:
                return Answer(None, position, reached=False)
            # The rows of this file's generation (read inside the lease), as of this snapshot's removals.
            serving = row_cache.serving(rows, handle.generation, forgets)
            if cache is None:
                with serving:
                    value = work(cur)
                return Answer(value, position) if unchanged() else None
            found, value = cache.claim(mark, key, commits, handle.changes)
            if not found:
                try:
                    with serving:
                        value = work(cur)
                    if not unchanged():
                        return None
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

        return _one_snapshot(cur, handle, computed)


def _one_snapshot(
    cur: duckdb.DuckDBPyConnection,
    handle: ReadModelHandle,
    attempt: Callable[[MarkRows | None, Callable[[], bool]], R | None],
) -> R:
    """`attempt(published, unchanged)`'s result over one snapshot of the file, so that a count and the rows
    it describes see the same projector commit.

    Between a live commit and the next commit of the process, without a transaction: the file is as that
    commit published it (`published`, the mark's rows), and every statement reads it so while no other
    commit begins. `unchanged()` then says whether one began or ended since: the attempt, having done its
    work, returns None when it did, and is made again in a read transaction, where `published` is None
    (the mark is read in it) and `unchanged()` always true."""
    state = _published(handle)
    if state is not None:
        result = attempt(*state)
        if result is not None:
            return result
    cur.execute(parsed("BEGIN TRANSACTION"))
    try:
        result = attempt(None, lambda: True)
        assert result is not None  # only a snapshot that moved throws a result away
        return result
    finally:
        cur.execute(parsed("ROLLBACK"))


def _published(handle: ReadModelHandle) -> tuple[MarkRows, Callable[[], bool]] | None:
    """The mark's rows the last live commit published, when no commit of the process has begun since, and
    a check that none has begun or ended since this call. The count is read first: a commit whose
    `COMMIT` began before the rows were taken, and may be visible to the statements before it has ended,
    then fails the check."""
    sequence = COMMITS.value
    published = handle.changes.current()
    if published is None:
        return None
    return published, lambda: COMMITS.value == sequence


def _answers_together(
    cur: duckdb.DuckDBPyConnection,
    handle: ReadModelHandle,
    kind: Together,
    questions: Sequence[Question],
    cache: SnapshotCache,
    topic: str,
) -> list[Answer[Any]]:
    """The answers to `questions` from one snapshot (`_one_snapshot`): those the cache holds for its mark,
    and the others by one call of `kind.many`, remembered as each one's own read would have remembered it."""
    commits = handle.positions.commits

    def answered(published: MarkRows | None, unchanged: Callable[[], bool]) -> list[Answer[Any]] | None:
        mark, position, _reached, _forgets = _snapshot(cur, handle, topic, None, published)
        values, computed = _look_up(cur, kind, questions, cache, mark, handle.changes)
        if not unchanged():
            return None
        return _answered(questions, values, computed, cache, mark, position, commits, handle.changes)

    return _one_snapshot(cur, handle, answered)


def _look_up(
    cur: duckdb.DuckDBPyConnection,
    kind: Together,
    questions: Sequence[Question],
    cache: SnapshotCache,
    mark: tuple[int, int],
    changes: ChangeLog,
) -> tuple[dict[Hashable, Any], dict[Question, Any]]:
    """The answers the cache holds at `mark`, and those computed by one call of `kind.many` (by question)."""
    values: dict[Hashable, Any] = {}
    missing: dict[Hashable, Question] = {}
    for q in questions:
        if q.key in values or q.key in missing:
            continue
        found, value = cache.get(mark, q.key, changes)
        if found:
            values[q.key] = value
        else:
            missing[q.key] = q
    computed: dict[Question, Any] = {}
    if missing:
        answers = kind.many(cur, [q.arg for q in missing.values()])
        computed = dict(zip(missing.values(), answers, strict=True))
    return values, computed


def _answered(
    questions: Sequence[Question],
    values: dict[Hashable, Any],
    computed: dict[Question, Any],
    cache: SnapshotCache,
    mark: tuple[int, int],
    position: Position,
    commits: int,
    changes: ChangeLog,
) -> list[Answer[Any]]:
    """Remembers what was computed at `mark`; each question's answer, in order."""
    cache.count_misses(len(computed))
    for q, value in computed.items():
        values[q.key] = value
        cache.put(mark, q.key, value, rows=_row_count(value), commits=commits, depends=q.depends, changes=changes)
    answers: list[Answer[Any]] = []
    for q in questions:
        if q.minimum is None or position.covers(q.minimum):
            answers.append(Answer(values[q.key], position))
        else:
            answers.append(Answer(None, position, reached=False))
    return answers


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
    together: tuple[Together, Any] | None = None,
) -> Answer[T]:
    """Runs `work(cursor)` in the threadpool: DuckDB calls block, the event loop must not. With a
    `cache`, an answer to the same `key` (everything the answer depends on besides the data) computed
    in the same snapshot is returned instead, or in a later one when the answer `depends` on one key of
    `serving.changes` that no commit since touched. With `rows`, pages take the rows it holds (`api.row_cache`).
    With `together` (a kind and this question's argument), a miss is answered with the misses of the same
    kind that wait at the same time (`api.coalescing`), or alone when that read fails.

    With a `minimum` position the file has not reached, waits (on the event loop, holding no thread)
    for the projector's next commit and looks again, for at most `wait_s`; then returns an answer that
    is not `reached`."""
    deadline = time.monotonic() + wait_s
    board = handle.positions
    while True:
        # Taken before the read: a commit between the read and the wait still wakes the wait.
        seen = board.commits
        answer = await run_in_threadpool(
            _in_snapshot, handle, work, cache, key, topic, minimum, rows, depends, together
        )
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
