"""Answers remembered per read-model snapshot, so a request repeated between two projector commits is
not computed again.

Staff dashboards ask the same few questions (the first list page, the KPI, the by-user table) many
times a second, while the projector commits a few times a second: most requests would recompute an
answer that cannot have changed. An answer is only reused under the same *snapshot mark*, read in
the request's own read transaction, so it is exactly what the queries would return now. (A hit may take
the mark the last live commit published instead of reading it: `serving.changes.ChangeLog.current`.)

The mark is the served file (the handle's generation) plus the total of `offsets.next_offset` and
`applied_counts.events`: every fold transaction that changes a row the API reads applies at least one
event (so a count grows) or moves an offset; a replayed dead letter applies events without moving
offsets; a retention purge that removes anything counts itself in `meta` (`retention_purges`), and an
erasure is an applied event. All only ever grow, so an equal total means no such commit in between.

An answer that depends on the turns of one interaction, session or visitor only (a retrieve, a
transcript, a list narrowed to one visitor: `depends`) also outlives the commits that did not touch that
key: at a new mark the cache asks the live projector's change log what changed since the mark it holds
(`serving.changes`), and keeps those answers whose key is not among it. When the log cannot say (a gap,
an erasure, another file), everything is dropped, as for the other answers at every new mark.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import duckdb

from schemas.events import ERASURE_REQUESTED
from serving.changes import ChangeLog, Key, MarkRows, mark_rows

# What removes turns: erasures (an applied event type) and the retention purges that removed any.
_FORGETTING = frozenset({ERASURE_REQUESTED, "retention_purges"})
MAX_ENTRIES = 256
# A whole transcript can be long: answers with more rows than this are not kept (memory stays small).
MAX_ROWS = 1000


def snapshot_state(
    cur: duckdb.DuckDBPyConnection, generation: int, topic: str
) -> tuple[tuple[int, int], dict[int, int], int]:
    """The snapshot mark, the offsets of `topic` (next offset by partition) in the same snapshot, and how
    many erasures and removing purges the snapshot holds (`forgets`: it grows whenever turns were removed)."""
    return state_of(mark_rows(cur), generation, topic)


def state_of(rows: MarkRows, generation: int, topic: str) -> tuple[tuple[int, int], dict[int, int], int]:
    """`snapshot_state` of the mark's rows (`serving.changes.MARK_SQL`), however they were read."""
    total = forgets = 0
    offsets: dict[int, int] = {}
    for name, partition, value in rows:
        total += value
        if partition is not None:
            if name == topic:
                offsets[int(partition)] = value
        elif name in _FORGETTING:
            forgets += value
    return (generation, total), offsets, forgets


class SnapshotCache:
    """Answers by request key for one snapshot mark; a new mark drops them, but those that depend on one key
    the commits since did not touch (`depends`, `serving.changes.ChangeLog`)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._lock = threading.Lock()
        self._mark: tuple[int, int] | None = None
        self._commits: int | None = None  # the commits the process had seen when `_mark` was read
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._depends: dict[Hashable, Key] = {}  # what an entry depends on, when it is one key only
        self._max = max_entries
        self._in_flight: dict[tuple[tuple[int, int], Hashable], threading.Event] = {}
        # Answers served from memory and answers computed, for /metrics (and the benchmark's miss rows).
        self.hits = 0
        self.misses = 0

    def may_hold(self, key: Hashable, commits: int) -> bool:
        """Whether an answer to `key` is remembered from a snapshot read after the process had seen
        `commits` commits (ReadModelHandle.positions), or one that may outlive commits (`depends`): only
        then is reading the mark for it worth a statement. A hint, never a proof: `get` with the mark decides."""
        with self._lock:
            return key in self._entries and (self._commits is None or self._commits == commits or key in self._depends)

    def _current(self, mark: tuple[int, int], changes: ChangeLog | None) -> bool:
        """Under the lock: whether the entries are `mark`'s, after moving them to it when it is newer."""
        if mark == self._mark:
            return True
        if self._mark is not None and mark < self._mark:
            return False  # an older snapshot (a request that began before the last commit)
        touched = None
        if changes is not None and self._mark is not None and self._mark[0] == mark[0] == changes.generation:
            touched = changes.touched(self._mark[1], mark[1])
        if touched is None:
            self._entries.clear()
            self._depends.clear()
        else:
            for key in [k for k in self._entries if self._depends.get(k) is None or self._depends[k] in touched]:
                del self._entries[key]
                self._depends.pop(key, None)
        self._mark = mark
        self._commits = None
        return True

    def get(self, mark: tuple[int, int], key: Hashable, changes: ChangeLog | None = None) -> tuple[bool, Any]:
        with self._lock:
            if not self._current(mark, changes) or key not in self._entries:
                return False, None  # not a miss yet: `claim` counts it if the caller goes on to compute it
            self._entries.move_to_end(key)
            self.hits += 1
            return True, self._entries[key]

    def claim(
        self,
        mark: tuple[int, int],
        key: Hashable,
        commits: int | None = None,
        changes: ChangeLog | None = None,
    ) -> tuple[bool, Any]:
        """The remembered answer, or (False, None) when the caller is to compute it and then `release`.
        While one request computes an answer, the same question in the same snapshot waits for it:
        after a commit, concurrent dashboards would otherwise all run the same queries at once.
        `commits`: what the process had seen before reading `mark` (see `may_hold`)."""
        while True:
            with self._lock:
                if self._current(mark, changes) and key in self._entries:
                    if commits is not None:
                        # The current snapshot is at least that far along: later hits may skip the transaction.
                        self._commits = max(self._commits or 0, commits)
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return True, self._entries[key]
                running = self._in_flight.get((mark, key))
                if running is None:
                    self._in_flight[(mark, key)] = threading.Event()
                    self.misses += 1
                    return False, None
            # Then look again: the answer is there, or (it failed or was too big) compute it here.
            running.wait()

    def count_misses(self, n: int) -> None:
        """Counts `n` answers computed without `claim` (answered together: `api.readers.Together`)."""
        with self._lock:
            self.misses += n

    def release(self, mark: tuple[int, int], key: Hashable) -> None:
        with self._lock:
            running = self._in_flight.pop((mark, key), None)
        if running is not None:
            running.set()

    def put(
        self,
        mark: tuple[int, int],
        key: Hashable,
        value: Any,
        rows: int = 1,
        commits: int | None = None,
        *,
        depends: Key | None = None,
        changes: ChangeLog | None = None,
    ) -> None:
        """Remembers `value` for `key` at `mark`; `depends`: the one key of `serving.changes` the answer
        depends on, if it depends on the turns of one interaction, session or visitor only."""
        # None is no answer (a whole list too long to build says so, and is then streamed): not kept.
        if rows > MAX_ROWS or value is None:
            return
        with self._lock:
            if mark != self._mark:
                # Only a newer snapshot replaces the remembered one: a slow request that began before
                # the last commit must not throw away the answers of the current snapshot.
                if not self._current(mark, changes):
                    return
                self._commits = commits
            self._entries[key] = value
            self._entries.move_to_end(key)
            if depends is not None:
                self._depends[key] = depends
            else:
                self._depends.pop(key, None)
            while len(self._entries) > self._max:
                evicted, _ = self._entries.popitem(last=False)
                self._depends.pop(evicted, None)
