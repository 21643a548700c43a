"""The read model's position: which prefix of the topic a file has folded, as a token clients can hold.

Every API response carries it (`X-Read-Model-Position`) and a request may send one back
(`min_position=`) to be answered from at least that position. Replicas behind a load balancer fold the
same topic at their own pace; the token lets a client never see the data go back in time when its
next request lands on a replica that is behind.

The token is `VERSION.TOPIC_TAG.O0.O1...`: the read-model version the file was folded with, the first
8 hex digits of the SHA-256 of the topic's name, then the next offset to fold of partitions 0, 1, ...
(a partition past the list counts as 0). Only ASCII digits, letters and dots: it goes into a URL as it
is. Example: `2.8c1f0a3e.1840.1791.1802`.

"At least" is component-wise: position A covers B when both are of the same topic, A's version is at
least B's, and A's offset on every partition is at least B's. Offsets are Kafka's, so they mean the
same on every replica of a topic. A blue/green rebuild switches to a file that has folded at least as
far as the one it replaces, so a replica's position never goes back across a switch either; a replica
restarted on an empty file starts from zero and answers requests with a newer `min_position` only once
it has folded that far. Two files at the same position of the same version hold the same rows (the fold
is deterministic), except after a dead-letter retry on one of them, which applies events without moving
an offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_TOKEN_LENGTH = 4096
_TOKEN = re.compile(r"([0-9]{1,9})\.([0-9a-f]{8})((?:\.[0-9]{1,19})*)")
MAX_OFFSET = 2**63 - 1


def topic_tag(topic: str) -> str:
    return hashlib.sha256(topic.encode()).hexdigest()[:8]


class InvalidPosition(ValueError):
    """A token that is not a position (the message says why, for a 400)."""


@dataclass(frozen=True, slots=True)
class Position:
    version: int
    tag: str
    offsets: tuple[int, ...]  # next offset to fold, by partition number

    @classmethod
    def of(cls, version: int, topic: str, offsets: Mapping[int, int]) -> Position:
        dense = [0] * (max(offsets, default=-1) + 1)
        for partition, offset in offsets.items():
            dense[partition] = offset
        return cls(version, topic_tag(topic), tuple(dense))

    @classmethod
    def parse(cls, token: str) -> Position:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidPosition(f"A read-model position is at most {MAX_TOKEN_LENGTH} characters.")
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise InvalidPosition(
                "Not a read-model position: send back an X-Read-Model-Position value"
                " (VERSION.TOPIC_TAG.OFFSET.OFFSET...)."
            )
        offsets = tuple(int(o) for o in match.group(3).split(".")[1:])
        if any(o > MAX_OFFSET for o in offsets):
            raise InvalidPosition("An offset of this read-model position is out of range.")
        return cls(int(match.group(1)), match.group(2), offsets)

    def token(self) -> str:
        return ".".join((str(self.version), self.tag, *map(str, self.offsets)))

    def offset(self, partition: int) -> int:
        return self.offsets[partition] if partition < len(self.offsets) else 0

    def covers(self, other: Position) -> bool:
        """At least `other`: same topic, same or newer version, and no partition behind."""
        return (
            self.tag == other.tag
            and self.version >= other.version
            and all(self.offset(p) >= o for p, o in enumerate(other.offsets))
        )

    def join(self, other: Position) -> Position:
        """The least position covering both (of one topic)."""
        size = max(len(self.offsets), len(other.offsets))
        offsets = tuple(max(self.offset(p), other.offset(p)) for p in range(size))
        return Position(max(self.version, other.version), self.tag, offsets)


class PositionBoard:
    """The offsets a served file has committed, and a signal on every commit.

    The projector calls `advance` after each commit (from its thread); a request waiting for a newer
    position awaits `wait` on the event loop, holding no thread while it waits. `commits` counts the
    signals, so a waiter that read the file before a commit is woken by it even if it starts waiting
    after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offsets: dict[tuple[str, int], int] = {}
        self._commits = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def commits(self) -> int:
        return self._commits

    def offsets(self, topic: str) -> dict[int, int]:
        with self._lock:
            return {p: o for (t, p), o in self._offsets.items() if t == topic}

    def behind(self, topic: str, minimum: Position) -> bool:
        """Whether a partition of `topic` whose committed offset this board knows is short of `minimum`'s:
        then no snapshot read now can cover `minimum`, and a waiting request need not read one. A
        partition no commit has named yet (since start-up) is not known, so it never counts as behind."""
        with self._lock:
            return any(o > self._offsets.get((topic, p), o) for p, o in enumerate(minimum.offsets))

    def advance(self, offsets: Mapping[tuple[str, int], int] | Iterable[tuple[str, int, int]] = ()) -> None:
        """Records committed offsets (they only grow) and wakes every waiter."""
        items = offsets.items() if isinstance(offsets, Mapping) else (((t, p), o) for t, p, o in offsets)
        with self._lock:
            for key, offset in items:
                if offset > self._offsets.get(key, -1):
                    self._offsets[key] = int(offset)
            self._commits += 1
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # The projector's thread is not the event loop's: hand the wake-up over.
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, seen: int, timeout: float) -> None:
        """Returns after the first commit after `seen` (a value of `commits`), or after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._commits != seen:
                return
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, max(0.0, timeout))
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
