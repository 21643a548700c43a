"""Served rows of `interactions` remembered across projector commits, each under what makes it that row.

A page of a list is read in two steps (`api.queries`): the page's keys in order, then its rows by key.
Reading the rows is most of a page's cost when its answer is not remembered (`api.snapshot_cache` drops
every answer at each commit): each row is decompressed out of the column segments of the file
(bench/README.md, "Rows of list pages that outlive commits"). Yet the rows of a page
seldom change from one commit to the next: a commit adds turns and updates a few. So the first step also
reads, for each key, the turn's `event_id` and `row_version` (the fold adds to it the number of feedback,
review and click events it applies to the turn), and a row read earlier under the same uuid, event id and
version in the same served file is the same row, in whatever snapshot: only the keys missing here are read.

The key is exact without any invalidation: a row updated since it was read has another version, a turn
erased and recorded again would have another event id, and a file swapped in by a blue/green switch has
another generation. A removed turn (erased, purged) is never among a page's keys again, so its row would
never be served; it is not kept in memory either: the first request that sees a snapshot with more
erasures or removing purges than the cache knows of (`api.snapshot_cache.snapshot_state`) empties the
cache, and a request still reading an older snapshot adds no row to it. At most `MAX_ROWS` are kept,
the least recently used leaving first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# A served row is ~2 KB as Python objects: at most ~20 MB.
MAX_ROWS = 10_000

# (uuid, event id, row version): what the page's keys statement gives for each row.
RowKey = tuple[str, str, int]


class RowCache:
    """Rows by (file generation, uuid, event id, row version); least recently used ones go first."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self._lock = threading.Lock()
        self._rows: OrderedDict[tuple[int, str, str, int], tuple[Any, ...]] = OrderedDict()
        self._max = max_rows
        # The newest (generation, removals) a request has read: rows are added only as of it.
        self._newest = (-1, -1)
        # Rows served from memory and rows read, for /metrics.
        self.hits = 0
        self.misses = 0

    def get_many(self, generation: int, keys: Sequence[RowKey]) -> dict[RowKey, tuple[Any, ...]]:
        """The rows of `keys` that are remembered."""
        found: dict[RowKey, tuple[Any, ...]] = {}
        with self._lock:
            for key in keys:
                row = self._rows.get((generation, *key))
                if row is not None:
                    self._rows.move_to_end((generation, *key))
                    found[key] = row
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        return found

    def seen(self, generation: int, forgets: int) -> bool:
        """Notes a snapshot of `generation` holding `forgets` removals (`snapshot_state`): a newer one
        than any before empties the cache (removed turns leave memory). Whether rows read in that
        snapshot may be added: not when a newer one was seen (they may hold turns removed since)."""
        with self._lock:
            if (generation, forgets) > self._newest:
                self._rows.clear()
                self._newest = (generation, forgets)
            return (generation, forgets) == self._newest

    def put_many(self, generation: int, rows: dict[RowKey, tuple[Any, ...]]) -> None:
        with self._lock:
            for key, row in rows.items():
                self._rows[(generation, *key)] = row
                self._rows.move_to_end((generation, *key))
            while len(self._rows) > self._max:
                self._rows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._rows)


# The cache of the request being answered, the generation of the file it reads and whether rows it reads
# may be added (`RowCache.seen`), set by `api.readers` around the work of one read transaction: the
# queries take rows from it when it is set, and read every row when it is not.
_CURRENT: ContextVar[tuple[RowCache, int, bool] | None] = ContextVar("row_cache", default=None)


@contextmanager
def serving(cache: RowCache | None, generation: int, forgets: int) -> Iterator[None]:
    """Within the block, `rows` reads through `cache` for a snapshot of the file of `generation` that
    holds `forgets` removals (`api.snapshot_cache.snapshot_state`)."""
    token = _CURRENT.set((cache, generation, cache.seen(generation, forgets)) if cache is not None else None)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def rows(keys: Sequence[RowKey], read: Callable[[list[str]], Iterable[tuple[Any, ...]]]) -> list[tuple[Any, ...]]:
    """The rows of `keys`, in their order: remembered ones from the current cache, the others from
    `read(uuids)` (rows whose first column is the uuid, in any order), which are then remembered."""
    current = _CURRENT.get()
    found = current[0].get_many(current[1], keys) if current is not None else {}
    missing = [key for key in keys if key not in found]
    if missing:
        by_uuid = {row[0]: row for row in read([uuid for uuid, _event, _version in missing])}
        fresh = {key: by_uuid[key[0]] for key in missing}
        if current is not None and current[2]:
            current[0].put_many(current[1], fresh)
        found.update(fresh)
    return [found[key] for key in keys]
