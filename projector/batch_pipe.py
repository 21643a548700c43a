"""The pipes a catch-up's reader processes ship their batches through to the writer (projector/pipeline.py).

Each reader has a pipe of its own; a message is a header (its kind and its payload's length) and the
payload's bytes, written by a feeder thread of the reader, so that the reader prepares its next batch while
the last one is written. The writer reads the payload into one buffer it keeps, and hands it out as a
memoryview of that buffer, valid until its next `receive`.

Why not a `multiprocessing.Queue`: a queue pickles what it is given, so the batch a reader had already
pickled was copied into a second pickle, and the writer received it into a growing `BytesIO`, copied it
out, and unpickled the outer pickle into a third copy before unpickling the batch. Each copy went to
freshly allocated memory, so besides the copying the kernel handed out and zeroed every page of it again:
in a rebuild's writer those copies and their page faults were ~13% of its samples (`perf` of a million-event
rebuild, 2026-12-04). Here a payload crosses as it is, into memory the writer reuses
(bench/README.md, "Batches through a pipe of their own").

Back-pressure is a semaphore shared by the readers, as the queue's was: at most `depth` batches are on
their way at once (pickled in a reader or in a pipe), and the writer frees a slot as it reads one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import struct
import threading
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Any

# A message's kind; what the writer does with each is the pipeline's business.
BATCH, DONE, FAILED = 0, 1, 2
_HEADER = struct.Struct("!BQ")  # kind, then the payload's length in bytes
# The pipe buffer asked of Linux. A shipped batch is megabytes, and through Linux's default of 64 KiB the
# reader and the writer took turns once per 64 KiB: with 1 MiB (the most an unprivileged process may ask for
# by default) shipping cost 0.2-0.8 µs an event less, and rebuilds were 0.5-7.5% faster (bench/README.md,
# "A wider pipe between the readers and the writer").
PIPE_BYTES = 1 << 20
_SLOT_WAIT_S = 0.5  # how often a reader waiting for a slot looks at its stop flag


def open_pipe(ctx: Any) -> tuple[Connection, Connection]:
    """A one-way pipe of `ctx` (a multiprocessing context), its buffer widened to PIPE_BYTES where Linux
    allows it: (the writer's end, the reader's end)."""
    receiving, sending = ctx.Pipe(duplex=False)
    widen(receiving)
    return receiving, sending


def widen(end: Any) -> None:
    """Gives the pipe of `end` (a connection, or anything with `fileno()`) a buffer of PIPE_BYTES where
    Linux allows it (not Linux, or a limit below it in /proc/sys/fs/pipe-max-size: it stays as it was)."""
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class Sender:
    """A reader's end of its pipe. `send` waits for a slot (a batch) and queues the message for the feeder
    thread, which writes it; `close` lets the feeder finish, or abandons what it holds."""

    def __init__(self, end: Connection, slots: Any) -> None:
        self._end = end
        self._slots = slots
        self._outbox: queue.SimpleQueue[tuple[int, bytes] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None  # what stopped the feeder: the writer went away
        self._feeder = threading.Thread(target=self._feed, name="batch-pipe-feeder", daemon=True)
        self._feeder.start()

    def send(self, kind: int, payload: bytes = b"", stop: Any = None) -> bool:
        """Queues a message; a BATCH first takes a slot, waiting while every slot is taken. Returns False,
        having queued nothing, when `stop` (an event) is set meanwhile or the writer has gone."""
        if kind == BATCH:
            while not self._slots.acquire(timeout=_SLOT_WAIT_S):
                if (stop is not None and stop.is_set()) or self.error is not None:
                    return False
        if self.error is not None:
            return False
        self._outbox.put((kind, payload))
        return True

    def close(self, *, flush: bool, timeout: float | None = None) -> None:
        """Ends the feeder: with `flush`, after it has written every queued message (at most `timeout`
        seconds); otherwise at once, what it holds left unwritten (the writer is not reading any more)."""
        self._outbox.put(None)
        if flush:
            self._feeder.join(timeout)
        if not self._feeder.is_alive():
            self._end.close()

    def _feed(self) -> None:
        fd = self._end.fileno()
        try:
            while (message := self._outbox.get()) is not None:
                kind, payload = message
                _write_all(fd, _HEADER.pack(kind, len(payload)))
                _write_all(fd, payload)
        except OSError as exc:  # the writer closed its end
            self.error = exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class ReaderGone(EOFError):
    """A reader's pipe ended before the reader said it was done: the reader process died."""


class Receiver:
    """The writer's end of every reader's pipe: `receive` returns the next message of any of them."""

    def __init__(self, ends: list[Connection], slots: Any) -> None:
        self._open: list[Connection] = list(ends)
        self._slots = slots
        self._ready: deque[Connection] = deque()
        self._header = bytearray(_HEADER.size)
        self._buffer = bytearray(PIPE_BYTES)

    def receive(self, timeout: float) -> tuple[int, memoryview] | None:
        """The next message as (kind, payload), or None when none came within `timeout` seconds. The payload
        is a view of this receiver's buffer, valid until the next call. A reader's end is dropped after
        its DONE or FAILED; a pipe that ends before either raises ReaderGone."""
        if not self._ready:
            if not self._open:
                return None
            self._ready.extend(wait(self._open, timeout))  # type: ignore[arg-type]
            if not self._ready:
                return None
        end = self._ready.popleft()
        fd = end.fileno()
        if not _read_into(fd, memoryview(self._header)):
            raise ReaderGone("a reader's pipe closed before it was done")
        kind, size = _HEADER.unpack(self._header)
        if size > len(self._buffer):
            self._buffer = bytearray(size)
        payload = memoryview(self._buffer)[:size]
        if not _read_into(fd, payload):
            raise ReaderGone("a reader's pipe closed in the middle of a batch")
        if kind == BATCH:
            self._slots.release()
        else:
            self._open.remove(end)
            end.close()
        return kind, payload

    def close(self) -> None:
        """Closes every end still open: a reader writing to it gets an error instead of waiting."""
        for end in self._open:
            end.close()
        self._open.clear()
        self._ready.clear()


def _read_into(fd: int, view: memoryview) -> bool:
    """Fills `view` from `fd`; False when the pipe ends first (nothing, or part, read)."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return False
        got += n
    return True
