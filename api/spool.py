"""A streamed body between the pace DuckDB reads it at and the pace its client takes it at.

A streamed list (`api.streaming`) is read from one snapshot, in one DuckDB transaction. Read at the
client's pace, a client that stops reading would keep that transaction open for as long as it likes, and
the projector's checkpoints wait for every open transaction: its forced one also holds every new one,
so one slow reader would stop the fold, then every request (`tests/ops/test_fault_slow_reader.py`).
So the rows are read as fast as DuckDB gives them, into a `Spool`, and the transaction ends with the
last row; the client takes the body from the spool at its own pace.

The spool keeps up to `memory_bytes` in memory (or one part, when a part is larger: a rendered batch
of `api.streaming.BATCH_ROWS` rows of the whole conversations list is about 8 MB). While the client
keeps taking them, the reading waits for room there: a client that keeps up takes the whole body from
memory, about as fast as before. Once the reading has waited `patience_s` in all, the rest goes to an
unnamed temporary file (in `TMPDIR`), gone when the response ends or the process dies. So memory stays
bounded per response whatever the body's size, and the transaction outlives DuckDB's reading by at
most `patience_s`, however slow the client.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import deque
from typing import IO

MEMORY_BYTES = 4 * 1024 * 1024
# Measured on the whole conversations list of a million turns (295 MB, bench/README.md, "A client that
# stops reading"): spilling every part past the memory to the file made it 25% slower for a client that
# kept up; waiting for room first, it is as fast as reading at the client's pace was.
PATIENCE_S = 1.0
READ_BYTES = 1024 * 1024  # the most one `get` returns from the file


class Spool:
    """Bytes `put` by one thread and taken in the same order by another (`get`), neither waiting for
    the other except when nothing is there to take. `finish` ends the body (with the writer's error,
    if any, raised to the reader when it gets there); `abandon` tells the writer the reader has gone."""

    def __init__(self, memory_bytes: int = MEMORY_BYTES, patience_s: float = PATIENCE_S) -> None:
        self._limit = memory_bytes
        self._patience_s = patience_s  # how long `put` may wait for room in memory, in all
        self._changed = threading.Condition()
        self._memory: deque[bytes] = deque()
        self._in_memory = 0
        self._file: IO[bytes] | None = None
        self._written = 0  # bytes in the file; once there is one, every later part goes there too
        self._read = 0  # of those, bytes taken
        self._finished = False
        self._error: BaseException | None = None
        self._abandoned = False
        self._users = 2  # the writer and the reader: the file is closed when both are done

    def put(self, data: bytes) -> bool:
        """Adds `data` at the end; False once the reader has gone (the writer should stop)."""
        with self._changed:
            if self._file is None:
                self._wait_for_room(len(data))
            if self._abandoned:
                return False
            if self._file is None and (not self._memory or self._in_memory + len(data) <= self._limit):
                self._memory.append(data)
                self._in_memory += len(data)
            else:
                if self._file is None:
                    self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by `_done`
                os.pwrite(self._file.fileno(), data, self._written)
                self._written += len(data)
            self._changed.notify_all()
            return True

    def _wait_for_room(self, size: int) -> None:
        """Until `size` more bytes fit in memory (or the first part is taken, for a part larger than the
        memory), the reader goes, or the patience left runs out."""
        while self._memory and self._in_memory + size > self._limit and not self._abandoned:
            if self._patience_s <= 0:
                return
            started = time.monotonic()
            self._changed.wait(self._patience_s)
            self._patience_s -= time.monotonic() - started

    def finish(self, error: BaseException | None = None) -> None:
        """The writer is done: the body ends after what was put (or, with `error`, breaks off there)."""
        with self._changed:
            self._finished, self._error = True, error
            self._changed.notify_all()
        self._done()

    def get(self) -> bytes | None:
        """The next bytes, waiting for them; None at the end of the body. Raises the writer's error
        once everything put before it has been taken."""
        with self._changed:
            while not self._memory and self._read == self._written and not self._finished:
                self._changed.wait()
            if self._memory:
                data = self._memory.popleft()
                self._in_memory -= len(data)
                self._changed.notify_all()  # room for the writer
                return data
            if self._read < self._written:
                assert self._file is not None
                size, at = min(READ_BYTES, self._written - self._read), self._read
                self._read += size
                fd = self._file.fileno()
            elif self._error is not None:
                raise self._error
            else:
                return None
        # Outside the lock: the writer may go on appending past what this reads.
        return os.pread(fd, size, at)

    def abandon(self) -> None:
        """The reader is done, at the end of the body or not: the writer stops at its next `put`."""
        with self._changed:
            self._abandoned = True
            self._memory.clear()
            self._in_memory = 0
            self._changed.notify_all()  # a writer waiting for room
        self._done()

    def _done(self) -> None:
        with self._changed:
            self._users -= 1
            if self._users or self._file is None:
                return
            file, self._file = self._file, None
        file.close()
