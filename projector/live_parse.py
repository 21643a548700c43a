"""Live batches parsed in a child process, so that the requests `serve` answers do not wait for the parse.

`serve` runs the projector as a thread of the API's process, and CPython runs one thread's Python at a
time. Parsing and shaping a live batch (`prepare.prepare`: Pydantic validation, search stems, the rows)
is the Python-heaviest part of the fold, ~30 µs an event; while the projector's thread ran it, every
request thread waited for the interpreter again after each of its DuckDB statements. DuckDB itself lets
go of the interpreter while it works, so the statements of the fold never held up a request; the
parse did. Measured in one process on the million-event file (bench/README.md, "The API tail under live
ingest: the parse"; `python -m bench.live_contention`): a page of the list at 50 requests/s beside a
live fold of 1,000 events/s had a p99 of 35-42 ms with the parse in the projector's thread, 16-19 ms
with the batches parsed beforehand, 15-16 ms with no fold.

So `LiveParser.prepare` hands a batch's records to a child process and takes back the prepared batch,
pickled as the catch-up readers ship theirs (`PreparedBatch.shipped`). The child is only a function:
records in, the same `PreparedBatch` out, no Kafka and no database, so exactly-once is untouched. When
there is no child ready (while it starts, after it died or hung, after a failure in it) the batch is
prepared in this process, as before, and a new child is started after a pause; a batch the child could
not prepare is prepared here too, so that any error is raised where the fold would have raised it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa

from projector.gcpause import gc_paused
from projector.prepare import PreparedBatch, prepare
from projector.records import Record

log = logging.getLogger(__name__)

# The longest a batch waits for the child's answer before it is prepared here instead: a batch of 20,000
# records takes the child about half a second, so this only catches a child that hangs.
ANSWER_TIMEOUT_S = 30.0
# After a child failed, batches are prepared here for this long before a new child is started.
RESTART_AFTER_S = 10.0
_READY = b"ready"
_FAILED = b""


class LiveParser:
    """Prepares batches in a child process when one is ready, in this process otherwise."""

    def __init__(self) -> None:
        self._process: Any = None
        self._conn: Connection | None = None
        self._ready = False
        self._start_after = 0.0

    def prepare(self, records: Sequence[Record]) -> PreparedBatch:
        """The prepared batch of `records`, the same as `prepare.prepare(records)`."""
        conn = self._ready_connection()
        if conn is None:
            return prepare(records)
        try:
            fields = [(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp_ms) for r in records]
            conn.send_bytes(pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL))
            if not conn.poll(ANSWER_TIMEOUT_S):
                raise TimeoutError(f"no answer in {ANSWER_TIMEOUT_S:.0f} s")
            payload = conn.recv_bytes()
        except (OSError, EOFError, TimeoutError) as exc:
            log.warning("the live parse process failed (%s: %s); parsing here for now", type(exc).__name__, exc)
            self._discard()
            return prepare(records)
        if payload == _FAILED:  # the child's own error is in its log; here it is raised where the fold raises
            return prepare(records)
        with gc_paused():  # as many objects as parsing made, and no cycle (as the catch-up writer receives)
            return PreparedBatch.from_shipped(pickle.loads(payload))

    def start(self) -> None:
        """Starts the child now, if there is none, rather than with the first batch; it takes about a second
        to import what it needs, and batches are prepared here meanwhile."""
        if self._process is None:
            self._start()

    def ready(self) -> bool:
        """Whether the next batch goes to the child."""
        return self._process is not None and self._ready_connection() is not None

    def close(self) -> None:
        """Stops the child (it exits when its end of the pipe closes); a later batch starts a new one."""
        self._discard(restart_after=0.0)

    def _ready_connection(self) -> Connection | None:
        if self._ready:
            return self._conn
        if self._process is None:
            if time.monotonic() >= self._start_after:
                self._start()
            return None
        conn = self._conn
        assert conn is not None
        try:
            if not conn.poll(0):
                if not self._process.is_alive():
                    raise EOFError("the child exited before it was ready")
                return None  # still importing: this batch is parsed here
            self._ready = conn.recv_bytes() == _READY
        except (OSError, EOFError) as exc:
            log.warning("the live parse process did not start (%s); parsing here for now", exc)
            self._discard()
            return None
        return conn if self._ready else None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that runs DuckDB and server threads
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_child_main, args=(child,), name="projector-live-parser", daemon=True)
        process.start()
        child.close()
        self._process, self._conn, self._ready = process, parent, False

    def _discard(self, restart_after: float | None = None) -> None:
        process, conn = self._process, self._conn
        self._process, self._conn, self._ready = None, None, False
        self._start_after = time.monotonic() + (RESTART_AFTER_S if restart_after is None else restart_after)
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


def _child_main(conn: Connection) -> None:
    from projector.pipeline import follow_parent

    follow_parent()
    # As in the catch-up readers: Arrow's default allocator kept freed batch tables in the process.
    pa.set_memory_pool(pa.system_memory_pool())
    # Every send may find the pipe closed: the projector stopped (a server shutting down while this process
    # started, or while it parsed). That ends this process quietly, not with a traceback on the terminal.
    try:
        conn.send_bytes(_READY)
    except OSError:
        return
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            batch = prepare([Record(*fields) for fields in pickle.loads(request)])
            answer = pickle.dumps(batch.shipped(), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            log.exception("the live parse process could not prepare a batch; the projector prepares it")
            answer = _FAILED
        try:
            conn.send_bytes(answer)
        except OSError:
            return
