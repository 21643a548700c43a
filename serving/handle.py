"""The read model a process serves from: the handle every request reads through, and the lock that
lets a blue/green rebuild swap the file under running requests.

Runtime, not schema: the tables, their version and how a file is opened stay in schemas/readmodel.py.
Both the API (which reads through the handle) and the projector (which swaps the file and reports a
database DuckDB invalidated) import this module, so it sits on the bottom floor beside `schemas`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from schemas.position import PositionBoard
from schemas.readmodel import file_version, serving_settings
from serving.changes import ChangeLog

log = logging.getLogger(__name__)


class ReadModelUnavailable(Exception):
    """The served file cannot answer right now (it is being rebuilt and the old one is unreadable, or
    DuckDB invalidated it after a fatal error and the process is about to exit)."""


def is_fatal(exc: BaseException) -> bool:
    """Whether DuckDB invalidated the database: nothing on this connection works until a restart."""
    # DuckDB words it 'the database has been invalidated' or 'Database "name" has been invalidated'.
    return isinstance(exc, duckdb.FatalException) or "has been invalidated" in str(exc)


class ReadersWriterLock:
    """Many readers or one writer; a waiting writer holds back new readers, so it cannot starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class ReadModelHandle:
    """The read model a process currently serves from.

    Readers take a cursor per unit of work inside `reading()`, a read lease; a blue/green
    rebuild swaps in a new connection inside `exclusive()`, which waits for every lease to end and
    holds new ones back until the swap is done, so no unit of work spans two files or a closed one.
    `unavailable` (a reason) makes `reading()` raise `ReadModelUnavailable` instead.
    `positions` holds the offsets the served file has committed (its projector advances it after each
    commit) and wakes the requests that wait for a newer position; `version` is the file's read-model
    version, part of every position token.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: str | os.PathLike[str] | None = None,
        *,
        checkpoint_threshold: str | None = None,
    ) -> None:
        self.checkpoint_threshold = checkpoint_threshold
        serving_settings(con, checkpoint_threshold)
        self._con = con
        self.path = Path(path) if path is not None else None
        self.generation = 0
        # What the live projector's commits to this file changed (`serving.changes`): a new one per file.
        self.changes = ChangeLog(self.generation)
        self.unavailable: str | None = None
        # Set once DuckDB invalidated the database (a fatal error, such as a full disk during a
        # checkpoint): the process cannot serve any more, /livez fails and `serve` exits.
        self.failure: str | None = None
        self._lock = ReadersWriterLock()
        self._idle: list[duckdb.DuckDBPyConnection] = []
        self.positions = PositionBoard()
        self.version = 0
        self._note_file(con)

    def _note_file(self, con: duckdb.DuckDBPyConnection) -> None:
        self.version = file_version(con) or 0
        try:
            rows = con.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        except duckdb.CatalogException:
            rows = []
        # A switch wakes the waiting requests too: the new file may be ahead of the old one.
        self.positions.advance((str(t), int(p), int(o)) for t, p, o in rows)

    def mark_failed(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.critical("the read model is unusable until a restart: %s", self.failure)

    @contextmanager
    def reading(self, *, reuse: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the current file, valid until the block ends (a read lease). The block must end any
        transaction it begins and every result it opens: the cursor goes back to the idle ones for a later
        lease. `reuse=False` for a lease whose cursor other threads may still use when it ends (a streamed
        body, whose reader a request cut short leaves behind): that cursor is closed instead. One left
        with an open result would hold its transaction open for good, and the projector's checkpoints,
        which wait for every transaction, with it."""
        with self._lock.shared():
            if self.failure is not None:
                raise ReadModelUnavailable("the read model failed; the server is restarting")
            if self.unavailable is not None:
                raise ReadModelUnavailable(self.unavailable)
            try:
                # A cursor of an earlier lease when one is idle: opening and closing one per request cost
                # ~0.1-0.2 ms under load (more than a remembered answer's statement).
                try:
                    cur = self._idle.pop()
                except IndexError:
                    cur = self._con.cursor()
                try:
                    yield cur
                except BaseException:
                    cur.close()  # it may be in a state no later lease should inherit
                    raise
                if reuse:
                    self._idle.append(cur)
                else:
                    cur.close()
            except duckdb.Error as exc:
                if not is_fatal(exc):
                    raise
                self.mark_failed(exc)
                raise ReadModelUnavailable("the read model failed; the server is restarting") from exc

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """The write side: no lease is held while it is, so the connection may be closed and swapped (the
        idle cursors are closed first: an open cursor would keep the file open)."""
        with self._lock.exclusive():
            self._close_idle()
            yield

    def close(self) -> None:
        """Closes the idle cursors and the connection (at shutdown, when no request reads any more)."""
        self._close_idle()
        self._con.close()

    def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for cur in idle:
            cur.close()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def swap(
        self, con: duckdb.DuckDBPyConnection, path: str | os.PathLike[str] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """Makes `con` current and returns the previous connection for the caller to close."""
        serving_settings(con, self.checkpoint_threshold)
        self._close_idle()
        old, self._con = self._con, con
        self.path = Path(path) if path is not None else None
        self.generation += 1
        self.changes = ChangeLog(self.generation)
        self._note_file(con)
        return old
