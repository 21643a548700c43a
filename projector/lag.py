"""How far behind the topic's end the folded position is, in seconds rather than records.

Under live ingest the lag in records is above 0 most of the time for a moment (a record arrives, the
next batch folds it), so "lag > 0" says nothing about how old the answers are. What an operator wants
is: the file holds every record the topic had N seconds ago. `LagClock` answers that from the end
offsets the projector sees: each time they move past the folded position it notes them with the time,
and once the position covers a note, the file holds everything the topic had at that time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

# A note is taken at most this often (a later covered note would have said a little more): the seconds
# then err by about this much at most, on the late side, and a backlog costs few notes.
MARK_EVERY_S = 0.5
# Beyond this many notes (MARK_EVERY_S apart: minutes behind) the second-oldest is dropped each time:
# still erring on the late side, with less precision far back.
MAX_MARKS = 1024


def _covers(positions: Mapping[int, int], ends: Mapping[int, int]) -> bool:
    return all(positions.get(partition, 0) >= end for partition, end in ends.items())


class LagClock:
    """Not thread-safe: the projector calls it under its status lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._marks: deque[tuple[float, dict[int, int]]] = deque()
        # When the position last covered every end offset known then (None: not since start-up).
        self._covered_at: float | None = None

    def observe(self, ends: Mapping[int, int], positions: Mapping[int, int]) -> None:
        """After the known end offsets or the folded positions moved."""
        now = self._clock()
        if _covers(positions, ends):
            self._covered_at = now
            self._marks.clear()
            return
        while self._marks and _covers(positions, self._marks[0][1]):
            self._covered_at = self._marks.popleft()[0]
        if not self._marks or now - self._marks[-1][0] >= MARK_EVERY_S:
            self._marks.append((now, dict(ends)))
        if len(self._marks) > MAX_MARKS:
            del self._marks[1]

    def seconds(self) -> float:
        """0 when the position covers the known end offsets; else for how long it has not covered them:
        since the last time it did, or since it first knew of records it had not folded."""
        if not self._marks:
            return 0.0
        since = self._covered_at if self._covered_at is not None else self._marks[0][0]
        return max(0.0, self._clock() - since)
