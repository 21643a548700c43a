"""What each of the live projector's commits changed, by key, so that remembered answers that depend on one
key outlive the commits that did not touch it.

The answer cache (`api.snapshot_cache`) keys what it remembers by the *snapshot mark*: the total of the
counters every fold transaction moves (`MARK_SQL`). Without more, a new mark drops every answer, and a
staff member who opens the same interaction, session or visitor again after a commit waits for it to be
computed again, although a commit touches a few hundred of ~600,000 turns.

So the live projector says, for each commit, which turns it inserted or updated: by interaction uuid, by
session and by visitor (`Change.keys`; `None` when the commit may have changed anything, as an erasure
does). It reads the mark inside its transaction before its first write and again before `COMMIT`, and
files the change under both (`expect`) before it commits, so that no reader can see the new mark before
the change that explains it. A commit that fails takes its change back (`retract`).

A reader then asks what changed between the mark of an answer and the mark of its own snapshot
(`touched`): the union of the keys of a chain of changes that leads exactly from one to the other. Any
write that files nothing (a retention purge, a dead-letter replay, another process) moves the mark too,
so it leaves a gap in the chain, and a gap means "unknown": the reader then drops everything, as before.
One log per served file (`generation`): a swapped file starts a new one.

The log also keeps the mark's rows as the last commit left them (`publish`), so that a request whose
answer is remembered needs no statement at all (`current`). They are the rows `MARK_SQL` read inside
that commit's transaction, just before its `COMMIT`: with no other commit in between, what the file
holds afterwards. `COMMITS` counts every write transaction of the process as it commits (twice: when
its `COMMIT` starts and when it has ended, `projector.transaction`), and the rows stand for the file
only while the count is the one their commit ended at: any later commit, filed or not (a purge, a
replayed dead letter, the catch-up's big transactions), moves the count, and the readers read the mark
again until the next live commit publishes, or until the projector, finding nothing to fold, reads the
mark and publishes it itself (`publish_read`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from serving.parsed import parsed

# The snapshot mark's parts, as raw values rather than sums in SQL: DuckDB plans this faster, and only
# their total matters. The offsets' topic and partition come along: the same statement gives the answer's
# read-model position. The applied counts and the purges come with their names (partition NULL), so that
# the requests can tell when turns were removed (`api.snapshot_cache.snapshot_state`).
MARK_SQL = (
    "SELECT topic, partition, next_offset FROM offsets UNION ALL SELECT type, NULL, events FROM applied_counts"
    " UNION ALL SELECT key, NULL, CAST(value AS BIGINT) FROM meta WHERE key = 'retention_purges'"
)

MarkRows = tuple[tuple[str, int | None, int], ...]


class CommitCount:
    """Every write transaction of this process that reached its `COMMIT`, counted when the `COMMIT`
    starts and again when it has ended (succeeded or not): a value read twice, equal both times, means
    that no commit began or ended in between."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0
        self._running = 0

    @property
    def value(self) -> int:
        return self._value

    def start(self) -> None:
        with self._lock:
            self._value += 1
            self._running += 1

    def end(self) -> int:
        """Counts a COMMIT that has ended; returns the new value."""
        with self._lock:
            self._value += 1
            self._running -= 1
            return self._value

    def settled(self) -> int | None:
        """The value, when no COMMIT is running; None while one is."""
        with self._lock:
            return self._value if self._running == 0 else None


COMMITS = CommitCount()

# The kinds of key a change names, and what a remembered answer may depend on.
INTERACTION, SESSION, USER = "interaction", "session", "user"
Key = tuple[str, str]

# Commits remembered: at 4 commits a second, over a minute. An answer older than that is computed again.
MAX_CHANGES = 256


def mark_rows(cur: duckdb.DuckDBPyConnection) -> MarkRows:
    """The rows of the snapshot mark as `cur` sees them (inside a transaction: with its own writes)."""
    rows = cur.execute(parsed(MARK_SQL)).fetchall()
    return tuple((str(name), partition, int(value)) for name, partition, value in rows)


def total_of(rows: MarkRows) -> int:
    return sum(value for _, _, value in rows)


def mark_total(cur: duckdb.DuckDBPyConnection) -> int:
    """The snapshot mark's total as `cur` sees it (inside a transaction: with its own writes)."""
    return total_of(mark_rows(cur))


def turn_keys(uuids: Iterable[str], sessions: Iterable[str], users: Iterable[str | None]) -> frozenset[Key]:
    """The keys of turns inserted or updated: each one's uuid, session and visitor."""
    keys = {(INTERACTION, u) for u in uuids}
    keys.update((SESSION, s) for s in sessions)
    keys.update((USER, u) for u in users if u)
    return frozenset(keys)


@dataclass(frozen=True, slots=True)
class Change:
    """One commit: the mark before it and after it, and the keys it changed (None: possibly anything)."""

    before: int
    after: int
    keys: frozenset[Key] | None


class ChangeLog:
    """The changes of the commits to one served file, by the mark they start from."""

    def __init__(self, generation: int, max_changes: int = MAX_CHANGES) -> None:
        self.generation = generation
        self._lock = threading.Lock()
        self._by_before: OrderedDict[int, Change] = OrderedDict()
        self._max = max_changes
        # The mark's rows after the last live commit, and the `COMMITS` value that commit ended at.
        self._published: tuple[int, MarkRows] | None = None

    def publish(self, rows: MarkRows, sequence: int) -> None:
        """Notes the mark's rows of a commit that has just ended at `sequence` of `COMMITS`, with no other
        commit of the process since its transaction began (`projector.transaction.Commit.sequence`)."""
        self._published = (sequence, rows)

    def publish_read(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Reads the mark with `cur` and publishes it, when no commit of the process ran meanwhile: for a
        file no live commit has published yet (start-up, a quiet topic, after the catch-up's batches)."""
        before = COMMITS.settled()
        if before is None:
            return
        rows = mark_rows(cur)
        if COMMITS.settled() == before:
            self.publish(rows, before)

    def current(self) -> MarkRows | None:
        """The mark's rows of the file as it is now, when the last commit published them and no commit
        has begun since; None when they must be read."""
        published = self._published
        if published is None or published[0] != COMMITS.value:
            return None
        return published[1]

    def expect(self, before: int, after: int, keys: frozenset[Key] | None) -> Change | None:
        """Files the change of a commit about to be made (call before COMMIT); None when the commit moves
        no mark, which by the mark's definition changes nothing a reader sees."""
        if after == before:
            return None
        change = Change(before, after, keys)
        with self._lock:
            # A retried batch files its change again: the later one stands.
            self._by_before[before] = change
            self._by_before.move_to_end(before)
            while len(self._by_before) > self._max:
                self._by_before.popitem(last=False)
        return change

    def retract(self, change: Change | None) -> None:
        """Takes back the change of a commit that failed."""
        if change is None:
            return
        with self._lock:
            if self._by_before.get(change.before) is change:
                del self._by_before[change.before]

    def touched(self, since: int, until: int) -> frozenset[Key] | None:
        """The keys changed from mark `since` to mark `until` (nothing when they are equal); None when
        that is not known: no chain of filed changes leads from one to the other, or one of them may
        have changed anything."""
        keys: set[Key] = set()
        at = since
        with self._lock:
            while at < until:
                change = self._by_before.get(at)
                if change is None or change.keys is None:
                    return None
                keys.update(change.keys)
                at = change.after
        return frozenset(keys) if at == until else None
