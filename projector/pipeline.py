"""Catch-up with parsing in a second process: a child reads Kafka and runs `prepare.prepare`, this
process only applies (`apply.apply_prepared`). On a 2-core machine that roughly doubles the rate of a
rebuild, since Pydantic parsing and DuckDB writing no longer take turns on one core.

With `columns=True` (the set-wise path, projector/sqlprepare.py) a child only fetches: it ships each
fetch as raw columns (partition, offset, timestamp, key, value) in Arrow's IPC format, and the writer
checks and shapes the whole transaction's values in DuckDB, with Pydantic only for what SQL does not
claim. Nothing is pickled but those bytes.

Exactly-once is untouched: the child starts at the offsets the file stores and is only a prefetcher.
Whatever it had read but the writer had not applied when anything fails is simply read again by the
next attempt, from the stored offsets. The child also reports the applied positions to Kafka (lag
monitoring), because it owns the Kafka client.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import duckdb
import pyarrow as pa

from broker.errors import one_line
from projector import batch_pipe
from projector.apply import BatchStats, apply_prepared, fold_clock, pass_recordless_offsets
from projector.gcpause import gc_paused
from projector.prepare import PreparedBatch, merge_prepared, prepare
from projector.records import Record
from projector.source import TopicSource
from projector.sqlprepare import RAW_SCHEMA, prepare_columns, raw_table

log = logging.getLogger(__name__)

# Pickled batches on their way to the writer, at least (projector/batch_pipe.py): one writer transaction's
# worth of shipped batches, so that the parsers keep working while the writer applies the previous one.
QUEUE_DEPTH = 2
# Records per batch a parser ships: a batch costs its parser ~5 KB per record while it is prepared
# (~0.7 KB once pickled). The writer merges consecutive ones up to the catch-up batch size for its
# transactions.
SHIP_RECORDS = 5_000
# Records per batch a reader prepares with SQL (SHAPED): each of the set-wise path's statements costs
# milliseconds per batch whatever its size (binding its large expressions), which batches of
# SHIP_RECORDS would pay several times per transaction.
SHAPED_RECORDS = 20_000
# Batches between two full garbage collections where the cyclic collector is otherwise off: the
# batches' many short-lived objects made it scan for nothing (see `gcpause.gc_paused`), but Kafka's client
# may leave a cycle now and then.
COLLECT_EVERY = 25
# How much lower a reader's CPU priority is than the writer's: the writer bounds a catch-up, and the
# readers keep up with it from their spare time.
READER_NICENESS = 5
# Records behind below which starting parser processes costs more than it saves (the service's catch-up
# and the rebuild both decide by it).
PARSE_PROCESS_MIN_RECORDS = 20_000
# Whether catch-up takes the set-wise path (projector/sqlprepare.py) unless a caller says.
COLUMNS = False
# Where the set-wise path runs its SQL: in the writer on raw columns the readers ship (RAW), or in each
# reader, which then ships the prepared batch (SHAPED).
IN_READERS = False
MODELS, RAW, SHAPED = "models", "raw", "shaped"
# The set-wise path's own DuckDB connection (JSON of one transaction's values, no tables of its own).
SCRATCH_MEMORY_MIB = 256
# No batch from the readers for this long while records are still due: the broker is not delivering (gone,
# or unreachable). The catch-up raises TimeoutError rather than wait for ever; its caller resumes from the
# file's offsets (a rebuild, a few times) or reports the broker unreachable and retries (the service).
STALL_S = 60.0
# How long a reader that is done waits for its last batches to be written: the writer reads them, unless it
# has stopped, and then the reader's stop flag is set too.
_FLUSH_S = 600.0


def _reader_main(
    source: TopicSource,
    start: dict[int, int],
    partitions: list[int],
    targets: dict[int, int],
    sending: Any,
    slots: Any,
    applied: Any,
    stop: Any,
    ship: str = "models",
) -> None:
    from projector.consumer import TopicReader

    follow_parent()
    os.nice(READER_NICENESS)
    # Arrow's default allocator (mimalloc) kept ~50 MB of freed batch tables in this process.
    pa.set_memory_pool(pa.system_memory_pool())
    out = batch_pipe.Sender(sending, slots)
    reader: TopicReader | None = None
    scratch = _scratch(threads=1) if ship == SHAPED else None  # one thread per reader: they run side by side
    gc.freeze()  # what is loaded by now lives as long as the process: never scan it again
    gc.disable()
    batches = 0
    try:
        # In the try: a broker that cannot be reached is this reader's failure, reported to the writer.
        reader = TopicReader(source)
        reader.assign(start, partitions)
        read = dict(start)
        last_commit = 0.0
        while not stop.is_set():
            if all(read.get(p, 0) >= end for p, end in targets.items()):
                out.send(batch_pipe.DONE)
                break
            # Only up to the targets: what arrives later is the live loop's business.
            records = [r for r in reader.read_batch() if r.offset < targets.get(r.partition, 0)]
            for r in records:
                read[r.partition] = max(read.get(r.partition, 0), r.offset + 1)
            if records:
                # Pickled here rather than by the feeder thread: a waiting batch takes a third of the
                # memory as bytes, and the two threads do not contend for the interpreter.
                if not out.send(batch_pipe.BATCH, _ship(records, ship, scratch), stop):
                    break
                batches += 1
                if batches % COLLECT_EVERY == 0:
                    gc.collect()
            else:
                # Nothing came, yet a partition may be done: its last offsets can hold no record (a
                # transaction's marker), and then only the consumer's position passes them.
                behind = [p for p, end in targets.items() if read.get(p, 0) < end]
                for p, position in reader.positions(behind).items():
                    read[p] = max(read.get(p, 0), min(position, targets[p]))
            positions = None
            while True:
                try:
                    positions = applied.get_nowait()
                except queue.Empty:
                    break
            if positions and time.monotonic() - last_commit > 1.0:
                last_commit = time.monotonic()
                try:
                    reader.commit(positions)
                except Exception as exc:  # monitoring only
                    log.warning("lag-monitoring commit failed: %s", exc)
    except Exception as exc:
        out.send(batch_pipe.FAILED, one_line(exc).encode())
    finally:
        # The writer has stopped reading when `stop` is set: then what the feeder holds is left unwritten.
        out.close(flush=not stop.is_set(), timeout=_FLUSH_S)
        if reader is not None:
            reader.close()


def _scratch(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    # The JSON statements of the set-wise path run on a connection of their own, never the file's.
    config: dict[str, str | int] = {"memory_limit": f"{SCRATCH_MEMORY_MIB}MiB"}
    if threads:
        config["threads"] = threads
    return duckdb.connect(config=config)


def _ship(records: list[Record], ship: str, scratch: duckdb.DuckDBPyConnection | None = None) -> bytes:
    """What a child puts on the queue for a fetch: the prepared batch, pickled (by Pydantic, or by
    DuckDB in the child with SHAPED), or with RAW its raw columns as Arrow IPC bytes."""
    if ship == SHAPED:
        assert scratch is not None
        return pickle.dumps(prepare_columns(scratch, raw_table(records)).shipped(), protocol=pickle.HIGHEST_PROTOCOL)
    if ship == MODELS:
        return pickle.dumps(prepare(records).shipped(), protocol=pickle.HIGHEST_PROTOCOL)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, RAW_SCHEMA) as writer:
        writer.write_table(raw_table(records))
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _unship(payload: memoryview, ship: str, first: int = 0) -> PreparedBatch | pa.Table:
    """A shipped batch again; a prepared one numbered from `first`, its place in the writer's transaction.
    `payload` is the receiver's buffer, reused for the next batch: unpickling copies what it makes, and raw
    Arrow columns are copied out of it first (Arrow would read them in place)."""
    if ship != RAW:
        return PreparedBatch.from_shipped(pickle.loads(payload), first)
    return pa.ipc.open_stream(bytes(payload)).read_all()


def follow_parent() -> None:
    """Call first in a child process of the projector (a catch-up reader, `live_parse`'s parser): its parent
    alone ends it, by closing its pipe or setting its stop event, or by dying.

    - Ctrl-C at a terminal sends SIGINT to every process of the foreground group, the children too. A
      child that died of it mid-batch left its parent, still stopping cleanly, with a broken pipe (and a
      warning that the parse fell back). So a child ignores SIGINT: the parent's own stop ends it.
    - A SIGKILLed writer cannot stop its children; each notices being orphaned and exits. (Not
      `broker.lifetime.die_with_parent`'s prctl: a multiprocessing child has no `preexec_fn`, and Linux's
      parent-death signal follows the thread that started the child, here the projector's, not the
      process.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def catch_up(
    con: duckdb.DuckDBPyConnection,
    *,
    source: TopicSource,
    start: dict[int, int],
    partitions: list[int],
    targets: dict[int, int],
    on_batch: Callable[[BatchStats], None],
    should_stop: Callable[[], bool],
    parsers: int = 1,
    columns: bool | None = None,
) -> int:
    """Folds from `start` up to `targets` with `parsers` parser processes, each owning a share of the
    partitions; returns the number of records applied. Batches are applied in whatever order they
    arrive: the fold gives the same tables for any interleaving of partitions (each partition's own
    order is kept, since one child reads it). Raises RuntimeError if a child fails; the caller retries
    from the stored offsets."""
    columns = COLUMNS if columns is None else columns
    ship = (SHAPED if IN_READERS else RAW) if columns else MODELS
    ctx = mp.get_context("spawn")  # never fork a process that runs DuckDB and server threads
    ship_records = SHAPED_RECORDS if ship == SHAPED else SHIP_RECORDS
    slots = ctx.BoundedSemaphore(max(QUEUE_DEPTH, -(-source.batch_size // ship_records)))
    stop = ctx.Event()
    shares = [partitions[i :: max(1, parsers)] for i in range(max(1, parsers))]
    children = []
    ends = []
    for share in (s for s in shares if s):
        own = {p: targets[p] for p in share if p in targets}  # a child is done when its own share is
        applied = ctx.Queue()
        receiving, sending = batch_pipe.open_pipe(ctx)
        child = ctx.Process(
            target=_reader_main,
            args=(
                replace(source, batch_size=min(source.batch_size, ship_records)),
                start,
                share,
                own,
                sending,
                slots,
                applied,
                stop,
                ship,
            ),
            name="projector-parser",
            daemon=True,
        )
        child.start()
        sending.close()  # the child's now: its pipe ends when the child does
        ends.append(receiving)
        children.append((child, set(share), applied))
    out = batch_pipe.Receiver(ends, slots)
    folded = 0
    positions = dict(start)
    done = 0
    batches = 0
    shipped: list[Any] = []  # received, not applied yet: PreparedBatch, or raw Arrow tables with `columns`
    waiting = 0
    scratch = _scratch() if ship == RAW else None

    def apply(parts: list[Any]) -> int:
        nonlocal batches
        started = fold_clock()
        if scratch is not None:
            raw = pa.concat_tables(parts)
            parts.clear()  # the fetched buffers go with the transaction
            batch = prepare_columns(scratch, raw)
            del raw
        else:
            batch = merge_prepared(parts, numbered=True)
        stats = apply_prepared(con, batch).took(started)
        for (t, p), offset in stats.offsets.items():
            if t == source.topic:
                positions[p] = max(positions.get(p, 0), offset)
        for _, share, applied in children:
            applied.put({p: o for p, o in positions.items() if p in share})
        on_batch(stats)
        batches += 1
        if batches % COLLECT_EVERY == 0:
            gc.collect()
        return len(batch)

    pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())  # as in the parsers: mimalloc kept freed batch tables
    try:
        # Unpickling a batch makes as many objects as parsing it did: no cyclic GC (see `gcpause.gc_paused`).
        with gc_paused():
            heard = time.monotonic()  # the last batch or "done" from a reader, or the end of a transaction
            while done < len(children) and not should_stop():
                try:
                    message = out.receive(timeout=1.0)
                except batch_pipe.ReaderGone:  # its pipe ended before it said it was done
                    raise RuntimeError(f"a parser process died (exit codes {_exit_codes(children)})") from None
                if message is None:
                    # The readers' Kafka clients retry a lost broker for ever, sending nothing meanwhile.
                    if time.monotonic() - heard > STALL_S:
                        raise stalled(positions, targets)
                    continue
                heard = time.monotonic()
                kind, payload = message
                if kind == batch_pipe.DONE:
                    done += 1
                    continue
                if kind == batch_pipe.FAILED:
                    raise RuntimeError(f"a parser process failed: {bytes(payload).decode(errors='replace')}")
                batch = _unship(payload, ship, waiting)
                shipped.append(batch)
                waiting += len(batch)
                if waiting < source.batch_size and done < len(children):
                    continue
                folded += apply(shipped)
                shipped, waiting = [], 0
                heard = time.monotonic()
            if shipped and not should_stop():
                folded += apply(shipped)
            if done == len(children) and not should_stop():
                # Every reader passed its targets and everything it sent is applied: what is left below
                # them holds no record (a transaction's markers), and is stored as folded.
                recordless = {p: t for p, t in targets.items() if positions.get(p, 0) < t}
                if recordless:
                    on_batch(pass_recordless_offsets(con, source.topic, recordless))
                    positions.update(recordless)
    finally:
        if scratch is not None:
            scratch.close()
        pa.set_memory_pool(pool)
        stop.set()
        out.close()  # a child blocked writing to its pipe gets an error and ends
        for child, _, _ in children:
            child.join(10)
            if child.is_alive():
                child.terminate()
                child.join(5)
    return folded


def stalled(positions: dict[int, int], targets: dict[int, int]) -> TimeoutError:
    """The error of a catch-up that received nothing for STALL_S seconds, with where each partition it
    still waits for stands."""
    behind = {p: (positions.get(p, 0), t) for p, t in sorted(targets.items()) if positions.get(p, 0) < t}
    return TimeoutError(f"no records from the broker for {STALL_S:.0f} s; (position, target) per partition: {behind}")


def _exit_codes(children: list[tuple[Any, set[int], Any]]) -> list[int | None]:
    """The children's exit codes, None for one still running (a child that died may take a moment to be
    reaped after its pipe ends)."""
    for child, _, _ in children:
        child.join(0.5)
    return [child.exitcode for child, _, _ in children]
