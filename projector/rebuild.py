"""Rebuilding a read-model file from the topic: where to stop, folding exactly to there, progress.

`chat-analytics rebuild --db NEW_FILE` folds every partition from its first offset to a fixed target:
the end offset when the rebuild starts, or, with `until`, the first offset whose Kafka record
timestamp is later than that time (the broker's offsets_for_times). Records at or past a target are
never applied, so the file is exactly the fold of that prefix of the log: the rows the live
projector held when its offsets were those targets, and, with `until`, the tables as they were then.

Far behind (a fresh file), the fold runs in catch-up mode: big batches, with parsing in a second
process (`projector.pipeline`); the last stretch is folded in this process. Both apply through
`projector.fold`, and the file stores its offsets with every batch, so a failed attempt resumes
where the file stands. A rebuild defers the `conversations` table to one statement at the end
(`projector.conversations.defer`, `settle_conversations`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from projector import conversations, pipeline, topic_identity
from projector.apply import pass_recordless_offsets
from projector.consumer import TopicReader
from projector.fold import BatchStats, apply_batch
from projector.service import DEFAULT_PARSE_PROCESSES
from projector.source import TopicSource
from schemas.readmodel import (
    READMODEL_VERSION,
    SERVING_CHECKPOINT_THRESHOLD,
    file_version,
    other_topics,
    stored_offsets,
)

log = logging.getLogger(__name__)

# Big transactions: each has a fixed cost of scans and refreshes whatever its size. 50,000 rather than
# 40,000: rebuilds of 0.2, 1 and 2 million demo events were 4%, 9% and 5-10% faster for the same peak memory
# (bench/README.md, "Transactions of 50,000 events"); 60,000 and 80,000 were slower than 50,000 and used more.
CATCH_UP_BATCH_SIZE = 50_000
BOUNDS_TIMEOUT_S = 30.0  # how long a rebuild tries to reach the broker for the log's bounds before it fails
RESUME_ATTEMPTS = 5  # a broker that goes away mid-rebuild: resume from the file's offsets this many times
MEMORY_DOUBLINGS = 5  # a batch that needs more memory than the limit: double it at most this many times
# DuckDB's buffer pool may grow to 80% of RAM and keeps what the rebuild wrote cached (~700 MB for 1M
# events). A rebuild appends and looks keys up, so it runs as fast in a small pool; a batch that needs
# more (the primary-key indexes of a very long log must fit in memory) doubles it and is folded again.
REBUILD_MEMORY_LIMIT_MIB = 256
# The conversations of a rebuilt file are computed at the end, when the reader processes have exited: in
# the memory they held (~450 MiB for two). Grouping every turn of a million events in 256 MiB took twice
# the CPU (5.0-5.7 s against 2.5), DuckDB spilling what it could not keep.
SETTLE_MEMORY_LIMIT_MIB = 768
# A catch-up transaction writes tens of MB, over DuckDB's default checkpoint threshold (16 MiB): each
# commit was then a checkpoint, which rewrites the primary-key indexes about whole, so its cost grew with the
# file (COMMIT was 15 of the fold's 34 µs an event at a million events). With the serving projector's
# threshold a checkpoint comes every few hundred MB of log instead: a million-event rebuild went from
# 15,300-15,700 to 21,200-21,300 events/s with the same peak memory of all its processes (854-884 MiB of
# PSS against 863); three million events 31% faster for ~200 MiB more at the peak (docs/replay.md,
# "Checkpoints during a rebuild").
REBUILD_CHECKPOINT_THRESHOLD = SERVING_CHECKPOINT_THRESHOLD


class TopicMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class LogBounds:
    """Per partition: the first offset still in the log, the end offset, and where the fold stops."""

    starts: dict[int, int]
    ends: dict[int, int]
    targets: dict[int, int]
    topic_id: str | None = None  # the id the broker gave the topic (projector/topic_identity.py), if it sent one

    @property
    def total(self) -> int:
        return sum(max(0, end - self.starts.get(p, 0)) for p, end in self.targets.items())

    def deleted(self) -> dict[int, int]:
        """Partitions whose first offsets are gone (finite retention once): a rebuild cannot see them."""
        return {p: start for p, start in self.starts.items() if start > 0}


def log_bounds(
    bootstrap_servers: str, topic: str, until: datetime | None = None, timeout_s: float | None = None
) -> LogBounds:
    from kafka import KafkaConsumer, TopicPartition

    from broker.clients import made
    from projector.consumer import ISOLATION_LEVEL

    timeout_s = BOUNDS_TIMEOUT_S if timeout_s is None else timeout_s
    consumer = made(
        KafkaConsumer,
        bootstrap_servers=bootstrap_servers,
        client_id="chat-analytics-rebuild",
        enable_auto_commit=False,
        isolation_level=ISOLATION_LEVEL,  # the ends the readers can reach: no open transaction's records
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TopicMissing(f"topic {topic!r} does not exist at {bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        starts = {tp.partition: int(o) for tp, o in consumer.beginning_offsets(tps).items()}
        ends = {tp.partition: int(o) for tp, o in consumer.end_offsets(tps).items()}
        targets = dict(ends)
        if until is not None:
            # Records stamped at or before `until` (millisecond precision): stop at the first one after it.
            after_ms = int(until.astimezone(UTC).timestamp() * 1000) + 1
            found = consumer.offsets_for_times({tp: after_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                if hit is not None:
                    targets[tp.partition] = int(hit.offset)
        return LogBounds(starts, ends, targets, topic_identity.of_consumer(consumer, topic))
    finally:
        consumer.close()


@dataclass
class Progress:
    """Records folded out of those due; read from other threads (plain ints, no lock needed)."""

    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _window: list[tuple[float, int]] = field(default_factory=list)

    def advance(self, records: int) -> None:
        self.done += records
        now = time.monotonic()
        self._window.append((now, self.done))
        # The rate over the last ~10 s, so a slow start does not distort the time left for long.
        while len(self._window) > 2 and now - self._window[0][0] > 10.0:
            self._window.pop(0)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Records a second over the last ~10 s, up to now: while nothing comes (a broker gone) it falls,
        and the time left grows, rather than showing the last rate and "0:00:27 left" for minutes."""
        window = list(self._window)
        now = time.monotonic()
        if len(window) >= 2 and now > window[0][0]:
            return (window[-1][1] - window[0][1]) / (now - window[0][0])
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def seconds_left(self) -> float | None:
        rate = self.rate
        remaining = max(0, self.total - self.done)
        if remaining == 0:
            return 0.0
        return remaining / rate if rate > 0 else None

    def as_json(self) -> dict[str, Any]:
        left = self.seconds_left
        return {
            "events_done": self.done,
            "events_total": self.total,
            "events_per_second": round(self.rate, 1),
            "seconds_left": None if left is None else round(left, 1),
            "elapsed_seconds": round(self.elapsed, 1),
        }


def _folded(stats: BatchStats, topic: str, positions: dict[int, int]) -> int:
    """Moves `positions` to the batch's new offsets; returns how many records that covered."""
    moved = 0
    for (t, p), offset in stats.offsets.items():
        if t == topic:
            before = positions.get(p, 0)
            if offset > before:
                moved += offset - before
                positions[p] = offset
    return moved


def rebuild_source(bootstrap_servers: str, topic: str) -> TopicSource:
    """Where a rebuild reads unless told otherwise: big catch-up batches, no lag-monitoring group."""
    return TopicSource(bootstrap_servers, topic, group_id=None, batch_size=CATCH_UP_BATCH_SIZE)


def fold_to(
    con: duckdb.DuckDBPyConnection,
    *,
    source: TopicSource,
    bounds: LogBounds,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    parse_process: bool = True,
    columns: bool | None = None,
) -> int:
    """Folds `source.topic` from the file's stored offsets (the log's start when none) exactly up to
    `bounds.targets`, in batches of `source.batch_size`. Returns the records folded; stops early when
    `should_stop()` says so.
    `columns` picks the catch-up path (`projector.pipeline.COLUMNS` when None)."""
    progress = progress if progress is not None else Progress()
    topic = source.topic
    # A file begun from another topic of this name (a resumed one) must not be folded on; a new one
    # remembers which topic it is folded from.
    topic_identity.check(con, topic, bounds.topic_id, bounds.ends)
    start = {p: max(s, bounds.starts.get(p, 0)) for p, s in stored_offsets(con, topic).items()}
    positions = {p: start.get(p, bounds.starts.get(p, 0)) for p in bounds.targets}
    progress.total = bounds.total
    progress.done = sum(max(0, min(positions[p], t) - bounds.starts.get(p, 0)) for p, t in bounds.targets.items())
    folded = 0
    failures = 0
    limit_mb = REBUILD_MEMORY_LIMIT_MIB
    with _settings_restored(con, "memory_limit", "checkpoint_threshold"):
        con.execute(f"SET checkpoint_threshold = '{REBUILD_CHECKPOINT_THRESHOLD}'")
        while not should_stop():
            remaining = sum(max(0, t - positions[p]) for p, t in bounds.targets.items())
            if remaining == 0:
                break
            con.execute(f"SET memory_limit = '{limit_mb}MiB'")
            try:
                if parse_process and remaining >= pipeline.PARSE_PROCESS_MIN_RECORDS:
                    folded += _fold_with_parser(con, source, bounds, positions, progress, should_stop, columns)
                else:
                    folded += _fold_here(con, source, bounds, positions, progress, should_stop)
            except duckdb.OutOfMemoryException:
                if limit_mb >= REBUILD_MEMORY_LIMIT_MIB * 2**MEMORY_DOUBLINGS:
                    raise
                limit_mb *= 2
                log.warning("rebuild: DuckDB needs more memory; resuming from the file's offsets with %s MiB", limit_mb)
                positions.update({p: o for p, o in stored_offsets(con, topic).items() if p in positions})
            except Exception as exc:
                failures += 1
                if failures >= RESUME_ATTEMPTS:
                    raise
                log.warning("rebuild interrupted (%s: %s); resuming from the file's offsets", type(exc).__name__, exc)
                pause_before_resuming(failures)
                positions.update({p: o for p, o in stored_offsets(con, topic).items() if p in positions})
    return folded


def pause_before_resuming(failures: int) -> None:
    """The wait before a rebuild resumes after its `failures`-th interruption: 2, 4, 8 s, then 15 s, time
    for a broker to restart."""
    time.sleep(min(2.0**failures, 15.0))


def settle_conversations(con: duckdb.DuckDBPyConnection) -> None:
    """`conversations.settle` of a rebuilt file, in SETTLE_MEMORY_LIMIT_MIB (doubled, as a batch's limit is,
    when the statement needs more), the file's own limit restored after."""
    limit_mb = SETTLE_MEMORY_LIMIT_MIB
    with _settings_restored(con, "memory_limit"):
        while True:
            con.execute(f"SET memory_limit = '{limit_mb}MiB'")
            try:
                conversations.settle(con)
                return
            except duckdb.OutOfMemoryException:
                if limit_mb >= SETTLE_MEMORY_LIMIT_MIB * 2**MEMORY_DOUBLINGS:
                    raise
                limit_mb *= 2
                log.warning("rebuild: the conversations need more memory; computing them again with %s MiB", limit_mb)


@contextmanager
def _settings_restored(con: duckdb.DuckDBPyConnection, *names: str) -> Iterator[None]:
    """The settings `names` (fixed setting names, never a user's string) as they were before, whatever the
    block sets them to and however it ends."""
    previous = {name: con.execute(f"SELECT current_setting('{name}')").fetchall()[0][0] for name in names}
    try:
        yield
    finally:
        for name, value in previous.items():
            _restore_setting(con, name, str(value))


def _restore_setting(con: duckdb.DuckDBPyConnection, name: str, previous: str) -> None:
    """Sets `name` back to `previous`, as read by current_setting()."""
    # A size reads back rounded ("18.8 GiB"): the default is restored exactly by RESET, another value as
    # it reads back (to 0.1 of its unit).
    con.execute(f"RESET {name}")
    ((default,),) = con.execute(f"SELECT current_setting('{name}')").fetchall()
    if str(default) != previous:
        con.execute(f"SET {name} = '{previous}'")


def _fold_with_parser(
    con: duckdb.DuckDBPyConnection,
    source: TopicSource,
    bounds: LogBounds,
    positions: dict[int, int],
    progress: Progress,
    should_stop: Callable[[], bool],
    columns: bool | None = None,
) -> int:
    from projector.pipeline import catch_up

    def on_batch(stats: BatchStats) -> None:
        progress.advance(_folded(stats, source.topic, positions))

    with _settings_restored(con, "threads"):
        con.execute(f"SET threads = {writer_threads(DEFAULT_PARSE_PROCESSES)}")
        return catch_up(
            con,
            source=source,
            start=dict(positions),
            partitions=sorted(bounds.targets),
            targets=dict(bounds.targets),
            on_batch=on_batch,
            should_stop=should_stop,
            parsers=DEFAULT_PARSE_PROCESSES,
            columns=columns,
        )


def writer_threads(readers: int) -> int:
    """DuckDB threads for the writer's statements while `readers` reader processes run beside it: the
    cores they leave, at least one. On 2 cores that is one: DuckDB's second worker thread competed with
    the readers for the cores, and without it a rebuild of a million events took 3-6% less time and
    CPU in four alternating pairs, every table equal. The conversations, computed once the readers have
    exited, get the file's own threads back (one thread made them take 2.0 s instead of 1.25).
    Measured on 2 cores only (bench/README.md, "One DuckDB thread beside the readers")."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - readers)


def _fold_here(
    con: duckdb.DuckDBPyConnection,
    source: TopicSource,
    bounds: LogBounds,
    positions: dict[int, int],
    progress: Progress,
    should_stop: Callable[[], bool],
) -> int:
    reader = TopicReader(source)
    folded = 0
    try:
        reader.assign(dict(positions), sorted(bounds.targets))
        last_record = time.monotonic()
        while not should_stop():
            due = {p for p, t in bounds.targets.items() if positions[p] < t}
            if not due:
                break
            records = [r for r in reader.read_batch() if r.offset < bounds.targets.get(r.partition, 0)]
            if not records:
                # What is left of a partition may hold no record (a transaction's markers): the consumer's
                # position passes it, and every record before it is applied.
                reached = reader.positions(sorted(due))
                passed = {p: bounds.targets[p] for p, at in reached.items() if at >= bounds.targets[p]}
                if passed:
                    stats = pass_recordless_offsets(con, source.topic, passed)
                    progress.advance(_folded(stats, source.topic, positions))
                    last_record = time.monotonic()
                    continue
                if time.monotonic() - last_record > pipeline.STALL_S:
                    raise pipeline.stalled(positions, bounds.targets)
                continue
            last_record = time.monotonic()
            stats = apply_batch(con, records)
            folded += len(records)
            progress.advance(_folded(stats, source.topic, positions))
            reader.commit(dict(positions))
    finally:
        reader.close()
    return folded


# -- files ------------------------------------------------------------------------------------------


class FileNotEmpty(FileExistsError):
    pass


class NotResumable(ValueError):
    pass


def _held_by_another_process(path: Path) -> bool:
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as exc:
        return "lock" in str(exc).lower()
    except duckdb.Error:
        return False  # not a DuckDB file at all: nobody serves it
    return False


def prepare_target(path: str | os.PathLike[str], *, force: bool) -> None:
    """Makes room for a fresh file at `path`: refuses a non-empty one unless `force`, and always one
    that another process has open (a running serve's file must be rebuilt with --live)."""
    path = Path(path)
    wal = Path(f"{path}.wal")
    if path.exists() and path.stat().st_size > 0:
        if not force:
            raise FileNotEmpty(f"{path} exists and is not empty: pass --force to overwrite it")
        if _held_by_another_process(path):
            raise FileNotEmpty(f"{path} is open in another process (a running serve? use rebuild --live)")
    for leftover in (path, wal):
        leftover.unlink(missing_ok=True)


def check_resumable(path: str | os.PathLike[str], topic: str) -> None:
    """Raises NotResumable unless `path` is what an interrupted offline rebuild of `topic` left: a file no
    other process has open, whose conversations are still deferred (a finished rebuild settles them) and
    whose stored offsets are of `topic` only."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        raise NotResumable(f"{path} does not exist: nothing to resume (leave out --resume to start a rebuild)")
    if _held_by_another_process(path):
        raise NotResumable(f"{path} is open in another process (a running serve?): it is not resumed")
    con = duckdb.connect(str(path), read_only=True)
    try:
        deferred = conversations.is_deferred(con)
        others = other_topics(con, topic)
        version = file_version(con)
    except duckdb.Error as exc:
        raise NotResumable(f"{path} is not a read-model file: {exc}") from None
    finally:
        con.close()
    if version != READMODEL_VERSION:
        # Its rows have another release's shape: folding on would mix the two.
        raise NotResumable(
            f"{path} was begun by read-model version {version}, this release writes {READMODEL_VERSION}: "
            "rebuild it with --force"
        )
    if not deferred:
        raise NotResumable(
            f"{path} is not an unfinished rebuild (a finished one, or a served file): it is not resumed; "
            "rebuild it with --force, or let serve fold the rest"
        )
    if others:
        raise NotResumable(f"{path} was built from {', '.join(others)}, not {topic}: it is not resumed")


def checkpoint_and_close(con: duckdb.DuckDBPyConnection) -> None:
    """Writes everything into the main file (no write-ahead log left beside it), then closes."""
    con.execute("CHECKPOINT")
    con.close()


class StopFlag:
    """A `should_stop` for signal handlers and other threads."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleeps up to `seconds`; True as soon as the flag is set."""
        return self._event.wait(seconds)

    def __call__(self) -> bool:
        return self._event.is_set()
