"""`ProjectorService`: the projector as a background thread (for `serve`) or a foreground loop (for
`project`, rebuilds and tests), with the status the API's /readyz and /metrics report.

Each turn of the loop takes what its prefetcher (projector/prefetch.py) has read and parsed meanwhile,
folds it in one DuckDB transaction (which also stores the next offsets), then reports the offsets to
Kafka for lag monitoring. At the head of the topic a turn starts
at most every `live_interval_s`, so that what arrives meanwhile is folded as one batch. Any error
(broker gone, a DuckDB failure) is logged and shown in `status()["error"]`; the loop then drops its
Kafka client, waits with a growing back-off, and reconnects, seeking again to the offsets the file
stores. Nothing is applied twice or skipped, because the only position that counts is the one
committed with the rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from broker.errors import one_line
from projector import conversations, forget, pipeline, topic_identity
from projector.apply import BatchStats, apply_prepared, fold_clock, pass_recordless_offsets
from projector.consumer import LIVE_POLL_MS, TopicReader
from projector.lag import LagClock
from projector.live_parse import LiveParser
from projector.prefetch import Prefetcher
from projector.prepare import prepare
from projector.source import TopicSource
from schemas.readmodel import stored_offsets
from schemas.storage import checkpoint_room, size_text
from serving.changes import ChangeLog
from serving.handle import is_fatal

log = logging.getLogger(__name__)

PARTITION_REFRESH_S = 10.0  # how often to look for partitions added to the topic
END_OFFSETS_REFRESH_S = 5.0  # how often to ask the broker for end offsets when fetches did not say
KAFKA_COMMIT_EVERY_S = 1.0  # lag-monitoring commits; the read model does not depend on them
MAX_BACKOFF_S = 30.0
# At the head of the topic a batch is small, and part of its cost is fixed: its transaction and ~25
# statements, some of which scan tables that grow with the file. Starting a batch at most this often makes
# live batches bigger and fewer: at 1,000 events/s, serve's projector took ~0.9 of a core with a batch
# every ~140 ms, ~0.65 with one every 250 ms, ~0.41 once the fold's lookups were made cheaper too. A new
# event waits at most this long (less the previous batch's own fold time) to be read.
LIVE_BATCH_INTERVAL_S = 0.25
DEFAULT_PARSE_PROCESSES = 2  # each reads and parses a share of the partitions; the writer only applies
# The retention purge runs at start-up and then this often, between two batches (the issue asks for at
# least hourly; the horizon moves once a day, and a purge with nothing to remove costs a few ms).
PURGE_EVERY_S = 600.0
# A checkpoint holds the projector's next commit and the reads begun meanwhile until it ends, and it takes longer the
# more log it folds into the file: under steady traffic, every event that arrives meanwhile waits for it.
# So the log is checkpointed early, from this share of `checkpoint_bytes` on, whenever a read finds
# nothing new (the topic is quiet: nobody waits for the next commit); only a log that reaches the full
# `checkpoint_bytes` without such a pause is checkpointed between two busy batches.
IDLE_CHECKPOINT_SHARE = 16
# ...and never for less log than this: a small log costs little to keep (its replay, its memory), and
# checkpointing it at every pause would only write more (and move a full disk's failure to the log).
IDLE_CHECKPOINT_MIN_BYTES = 16 * 1024 * 1024
IDLE_CHECKPOINT_RETRY_S = 5.0  # after a refused quiet-time checkpoint (another transaction wrote)


class ProjectorService:
    def __init__(
        self,
        source: TopicSource,
        con: duckdb.DuckDBPyConnection,
        *,
        parse_process: bool = True,
        parse_processes: int = DEFAULT_PARSE_PROCESSES,
        live_interval_s: float = LIVE_BATCH_INTERVAL_S,
        retention_days: int | None = None,
        on_commit: Callable[[Mapping[tuple[str, int], int]], None] | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
        checkpoint_bytes: int | None = None,
        changes: ChangeLog | None = None,
    ) -> None:
        """`retention_days`: purge what is older (docs/privacy.md) at start-up and every PURGE_EVERY_S
        between batches; -1 keeps everything; None leaves the file's retention alone.
        `on_commit(offsets)` is called after each batch's transaction commits, with the (topic,
        partition) -> next offset it stored: `serve` wakes the requests waiting for a newer position.
        `on_fatal` is called (and the loop ends) when DuckDB invalidated the database: no retry can
        succeed on this connection, only a restart of the process, which recovers from the log.
        `checkpoint_bytes`: checkpoint after a batch once the write-ahead log is this large (for a
        served file, whose automatic checkpoints are off: see schemas.readmodel.serving_settings).
        `changes`: the served file's change log, where each live batch's commit files what it changed, so
        that answers it did not touch stay remembered (`serving.changes`)."""
        if source.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if live_interval_s < 0:
            raise ValueError("live_interval_s must not be negative")
        self.source = source
        self.con = con
        # A file a rebuild left with its conversations deferred (it stopped half way, and the file is served
        # or followed anyway): their rows first, so that neither the API nor the fold sees them missing.
        if conversations.settle(con):
            log.warning("the file's conversations were deferred by an unfinished rebuild: computed them")
        self.parse_processes = parse_processes if parse_process else 0
        # The loop that follows the topic (`start`, `project`) parses its batches in a child process, so that
        # a server's requests do not wait for the parse (projector/live_parse.py).
        self._live_parse = parse_process
        self._parser: LiveParser | None = None
        self.live_interval_s = live_interval_s
        self.on_commit = on_commit
        self.on_fatal = on_fatal
        self.changes = changes
        self.checkpoint_bytes = checkpoint_bytes
        self._wal = _wal_path(con) if checkpoint_bytes is not None else None
        self._idle_checkpoint_after = 0.0
        self._checkpoint_deferred_for_room = False  # warned once per stretch without room
        self._reader: Prefetcher | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards the status fields below
        self._positions: dict[int, int] = stored_offsets(con, self.source.topic)
        self._ends: dict[int, int] = {}
        self._startup_ends: dict[int, int] | None = None
        self._caught_up = False
        self._lag_clock = LagClock()
        # From the file, like the dead letters: the counters go on across restarts and rebuild switches.
        self._applied: Counter[str] = Counter(dict(con.execute("SELECT type, events FROM applied_counts").fetchall()))
        self._dead_letters: Counter[str] = Counter(
            dict(con.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall())
        )
        self._pending = self._count_pending()
        self.retention_days = retention_days
        self._last_purge: float | None = None
        self._privacy = forget.privacy_figures(con)
        self._last_purge_result: dict[str, Any] | None = None
        self._last_batch_at: datetime | None = None
        # Since start-up: the batches folded, their records, and the time folding them took (BatchStats.took).
        self._folds = {"batches": 0, "records": 0, "seconds": 0.0, "cpu_seconds": 0.0}
        self._error: str | None = None
        self._error_kind: str | None = None
        self._newest_record_ms: int | None = None
        self._last_kafka_commit = 0.0
        self._last_partition_check = 0.0
        self._last_end_check = 0.0

    # -- public API -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Follows the topic in a background thread until `stop()`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run_forever, name="projector", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Asks the loop (or `run_until_caught_up`) to stop after the current batch; safe in a signal handler."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Asks the loop to stop between two batches and waits for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close_reader()
        self._close_parser()

    def run_until_caught_up(self, timeout: float | None = None) -> int:
        """Folds up to the topic's end offsets as of this call, then returns the number of records read.

        Errors are raised, not retried: the caller (a rebuild, a test) decides. Raises TimeoutError if
        `timeout` seconds pass first (what was folded stays folded); returns early after `request_stop()`.
        Not to be mixed with a running `start()` thread: there is one writer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.purge_if_due()
        reader, targets = self._connect()
        self._note_ends(targets)
        folded = 0
        try:
            in_parallel = self._catch_up_in_parallel(targets)
            if in_parallel is not None:
                folded += in_parallel
                reader, _ = self._connect()
            while not self._reached(targets) and not self._stop.is_set():
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"not caught up with {self.source.topic} after {timeout} s: {self.status()}")
                folded += self._step(reader)
        finally:
            self._commit_to_kafka(force=True)
        return folded

    def status(self) -> dict[str, Any]:
        with self._lock:
            partitions = [
                {
                    "partition": p,
                    "end_offset": self._ends.get(p, 0),
                    "position": self._positions.get(p, 0),
                    "lag": max(0, self._ends.get(p, 0) - self._positions.get(p, 0)),
                }
                for p in sorted(set(self._ends) | set(self._positions))
            ]
            return {
                "caught_up": self._caught_up,
                "partitions": partitions,
                # How long the file has lacked records the projector knew of (0: it holds them all).
                "lag_s": round(self._lag_clock.seconds(), 3),
                "events_applied": dict(self._applied),
                "dead_letters": dict(self._dead_letters),
                "pending_events": self._pending,
                "privacy": {
                    **self._privacy,
                    "retention_days": self.retention_days,
                    "last_purge": self._last_purge_result,
                },
                "last_batch_at": self._last_batch_at.isoformat().replace("+00:00", "Z")
                if self._last_batch_at
                else None,
                "folds": dict(self._folds),
                "error": self._error,
                "error_kind": self._error_kind,
                # False until the projector has reached Kafka once since start-up (its lag is unknown).
                "connected_once": self._startup_ends is not None,
                "newest_record_at": _iso_ms(self._newest_record_ms),
            }

    # -- the loop -------------------------------------------------------------------------------------

    def _run_forever(self) -> None:
        backoff = 0.5
        if self._live_parse:
            self._parser = LiveParser()
            self._parser.start()
        while not self._stop.is_set():
            try:
                self.purge_if_due()
                reader, ends = self._connect()
                if self._catch_up_in_parallel(ends) is not None:
                    reader, _ = self._connect()
                while not self._stop.is_set():
                    started = time.monotonic()
                    folded = self._step(reader)
                    if folded == 0:
                        self._maybe_checkpoint(idle=True)
                    self._maybe_refresh(reader)
                    self.purge_if_due()
                    backoff = 0.5
                    if 0 < folded < self.source.batch_size:  # a full batch: behind, no waiting
                        self._stop.wait(max(0.0, started + self.live_interval_s - time.monotonic()))
            except Exception as exc:  # the loop must outlive any one failure
                with self._lock:
                    self._error = one_line(exc)
                    self._error_kind = error_kind(exc)
                if is_fatal(exc):
                    log.critical("the read model was invalidated; the projector stops: %s", exc)
                    self._close_reader()
                    if self.on_fatal is not None:
                        self.on_fatal(exc)
                    return
                log.exception("projector error; reconnecting in %.1f s", backoff)
                self._close_reader()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        self._commit_to_kafka(force=True)
        self._close_reader()
        self._close_parser()

    def _connect(self) -> tuple[Prefetcher, dict[int, int]]:
        """The reader, connected (and its topic checked) if need be, and the topic's end offsets now."""
        if self._reader is not None:
            return self._reader, self._reader.end_offsets()
        parser = self._parser
        reader = Prefetcher(
            TopicReader(self.source), prepare if parser is None else parser.prepare, self.source.batch_size
        )
        try:
            partitions = reader.partition_ids()
            if not partitions:
                raise RuntimeError(f"topic {self.source.topic!r} has no partitions (does it exist?)")
            # Every assignment starts from the file's own offsets: that is what makes a retry exact.
            stored = stored_offsets(self.con, self.source.topic)
            reader.assign(stored, partitions)
            ends = reader.end_offsets()
            # Those offsets must be of this very topic, not of one deleted and created again under its name.
            topic_identity.check(self.con, self.source.topic, reader.topic_id(), ends)
            lost = topic_identity.deleted_unfolded(stored, reader.beginning_offsets())
            if lost:
                log.warning(
                    "%s records of %s (per partition: %s) were deleted by the topic's retention before this "
                    "file folded them: they are lost to the read model (is the topic's retention shorter than "
                    "the time the projector was away?)",
                    sum(lost.values()),
                    self.source.topic,
                    lost,
                )
            if self._startup_ends is None:
                self._startup_ends = ends
                self._note_ends(ends)
        except Exception:
            reader.close()
            raise
        self._reader = reader
        self._last_partition_check = time.monotonic()
        self._update_caught_up()
        return reader, ends

    def _step(self, reader: Prefetcher) -> int:
        batch = reader.take(LIVE_POLL_MS / 1000)
        if batch is not None:
            started = fold_clock()
            stats = apply_prepared(self.con, batch, changes=self.changes).took(started)
            self._after_batch(stats)
            newest = max((ms for ms in batch.timestamps if ms is not None), default=None)
            if newest is not None:
                with self._lock:
                    self._newest_record_ms = max(newest, self._newest_record_ms or newest)
        elif self.changes is not None and self.changes.current() is None:
            # Nothing to fold, and the mark the requests would use is not known (start-up, or a commit
            # that published none, as the catch-up's do): one statement now saves one per cached answer.
            self.changes.publish_read(self.con)
        with self._lock:
            # A read that brought nothing proves Kafka answers, not that the file takes writes: after a
            # failed commit (a full disk) only a batch that commits clears the error, or /readyz would
            # say all is well between two retries of the batch that cannot be written.
            if batch is not None or self._error_kind != "database_write_failed":
                self._error = None
                self._error_kind = None
            recordless = {p: o for p, o in reader.passed().items() if o > self._positions.get(p, 0)}
        if recordless:
            # Offsets the consumer passed that held no record (a transaction's markers): without them the
            # file would stay short of the end offsets, never caught up, while the topic is quiet.
            self._after_batch(pass_recordless_offsets(self.con, self.source.topic, recordless, changes=self.changes))
        self._note_ends({p: e for p, e in reader.known_end_offsets().items() if e is not None})
        self._commit_to_kafka()
        return 0 if batch is None else len(batch)

    def _maybe_checkpoint(self, *, idle: bool = False) -> None:
        """After a batch, once the log reached `checkpoint_bytes`; when `idle` (a read found nothing), once
        it reached a share of that (IDLE_CHECKPOINT_SHARE, at least IDLE_CHECKPOINT_MIN_BYTES), so that
        busy traffic seldom meets one."""
        if self._wal is None or self.checkpoint_bytes is None:
            return
        try:
            size = self._wal.stat().st_size
        except FileNotFoundError:
            return
        floor = self.checkpoint_bytes
        if idle:
            floor = min(floor, max(IDLE_CHECKPOINT_MIN_BYTES, self.checkpoint_bytes // IDLE_CHECKPOINT_SHARE))
        if size < floor or (idle and time.monotonic() < self._idle_checkpoint_after):
            return
        # A checkpoint whose write fails (a full disk) invalidates the database: reads stop and only a
        # restart recovers. Without room for one, the log keeps every batch instead; once even the log
        # cannot grow, a commit fails, which rolls back alone, and is retried while reads go on: a full
        # disk then looks the same whichever write meets it first, and freeing space is all it takes.
        free, needed = checkpoint_room(self._wal.with_suffix(""), size)
        if free is not None and free < needed:
            if not self._checkpoint_deferred_for_room:
                log.warning(
                    "checkpoint deferred (log at %s bytes): %s free, a checkpoint may need %s (the file "
                    "once more and its log); the log grows until space is freed",
                    size,
                    size_text(free),
                    size_text(needed),
                )
            self._checkpoint_deferred_for_room = True
            return
        self._checkpoint_deferred_for_room = False
        # Twice over the threshold (checkpoints kept being refused), FORCE waits for the other transactions.
        statement = "FORCE CHECKPOINT" if size >= 2 * self.checkpoint_bytes else "CHECKPOINT"
        started = time.monotonic()
        try:
            self.con.execute(statement)
            log.info(
                "checkpointed %s bytes of log in %.3f s%s", size, time.monotonic() - started, " (idle)" if idle else ""
            )
        except duckdb.Error as exc:
            if is_fatal(exc):
                raise
            # Not possible right now (another transaction writes): after a later batch, then; when quiet,
            # not before a while (a quiet topic is read again every poll).
            if idle:
                self._idle_checkpoint_after = time.monotonic() + IDLE_CHECKPOINT_RETRY_S
            log.info("checkpoint deferred (log at %s bytes): %s", size, exc)

    def purge_if_due(self, *, force: bool = False) -> forget.PurgeResult | None:
        """The retention purge, in this (the writer's) thread, at start-up and then every PURGE_EVERY_S."""
        if self.retention_days is None:
            return None
        now = time.monotonic()
        if not force and self._last_purge is not None and now - self._last_purge < PURGE_EVERY_S:
            return None
        self._last_purge = now
        result = forget.purge(self.con, self.retention_days)
        if result.turns or result.pending or result.usage or result.dead_letters:
            log.info("retention (%s days): purged %s", self.retention_days, result.as_json())
        figures = forget.privacy_figures(self.con)
        pending = self._count_pending() if result.pending else None
        with self._lock:
            self._privacy = figures
            self._last_purge_result = {**result.as_json(), "at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
            if pending is not None:
                self._pending = pending
        return result

    def _after_batch(self, stats: BatchStats) -> None:
        """After each committed batch, whether folded here or by the parallel catch-up."""
        self._maybe_checkpoint()
        pending = self._count_pending() if stats.pending_added or stats.pending_resolved else None
        privacy = forget.privacy_figures(self.con) if stats.erasures or stats.erased or stats.aged else None
        with self._lock:
            # A batch committed: Kafka delivered and the file took the writes, whatever failed before. The
            # parallel catch-up commits only here, so without this a broker back mid catch-up would still
            # be reported unreachable until the catch-up ended.
            self._error = None
            self._error_kind = None
            for (topic, partition), offset in stats.offsets.items():
                if topic == self.source.topic:
                    self._positions[partition] = max(self._positions.get(partition, 0), offset)
            self._lag_clock.observe(self._ends, self._positions)
            self._applied.update(stats.applied)
            self._dead_letters.update(stats.dead_letters)
            if pending is not None:
                self._pending = pending
            if privacy is not None:
                self._privacy = privacy
            self._last_batch_at = datetime.now(UTC)
            self._folds["batches"] += 1
            self._folds["records"] += stats.records
            self._folds["seconds"] += stats.seconds
            self._folds["cpu_seconds"] += stats.cpu_seconds
        if self.on_commit is not None:
            self.on_commit(stats.offsets)
        self._update_caught_up()
        if stats.dead_letters:
            log.debug("dead letters in this batch: %s", dict(stats.dead_letters))

    def _maybe_refresh(self, reader: Prefetcher) -> None:
        now = time.monotonic()
        if now - self._last_end_check > END_OFFSETS_REFRESH_S:
            self._last_end_check = now
            ends = reader.end_offsets()
            topic_identity.check(self.con, self.source.topic, reader.topic_id(), ends)  # recreated meanwhile?
            self._note_ends(ends)
        if now - self._last_partition_check > PARTITION_REFRESH_S:
            self._last_partition_check = now
            partitions = reader.partition_ids(timeout_s=0)
            if partitions and len(partitions) != len(reader.partitions):
                log.info("topic %s now has %s partitions", self.source.topic, len(partitions))
                reader.assign(stored_offsets(self.con, self.source.topic), partitions)

    def _catch_up_in_parallel(self, targets: dict[int, int]) -> int | None:
        """Far behind, folds up to `targets` with parsing in a child process (see projector.pipeline).
        Returns the records folded that way, or None when not worth it; after a number, the caller
        must reconnect (this closed the reader)."""
        stored = stored_offsets(self.con, self.source.topic)
        lag = sum(max(0, end - stored.get(p, 0)) for p, end in targets.items())
        if self.parse_processes < 1 or lag < pipeline.PARSE_PROCESS_MIN_RECORDS:
            return None
        from projector.pipeline import catch_up

        self._close_reader()  # the child owns the Kafka client meanwhile
        log.info("catching up %s records behind with %s parser process(es)", lag, self.parse_processes)
        return catch_up(
            self.con,
            source=self.source,
            start=stored,
            partitions=sorted(targets),
            targets=targets,
            on_batch=self._after_batch,
            should_stop=self._stop.is_set,
            parsers=self.parse_processes,
        )

    # -- helpers --------------------------------------------------------------------------------------

    def _reached(self, targets: dict[int, int]) -> bool:
        with self._lock:
            return all(self._positions.get(p, 0) >= end for p, end in targets.items())

    def _note_ends(self, ends: dict[int, int]) -> None:
        with self._lock:
            for p, end in ends.items():
                self._ends[p] = max(self._ends.get(p, 0), end)
            self._lag_clock.observe(self._ends, self._positions)

    def _update_caught_up(self) -> None:
        if self._caught_up or self._startup_ends is None:
            return
        if self._reached(self._startup_ends):
            with self._lock:
                self._caught_up = True
            log.info("caught up with %s (end offsets at start-up: %s)", self.source.topic, self._startup_ends)

    def _count_pending(self) -> int:
        return int(self.con.execute("SELECT count(*) FROM pending_events").fetchall()[0][0])

    def _commit_to_kafka(self, force: bool = False) -> None:
        reader = self._reader
        now = time.monotonic()
        if reader is None or (not force and now - self._last_kafka_commit < KAFKA_COMMIT_EVERY_S):
            return
        self._last_kafka_commit = now
        with self._lock:
            positions = dict(self._positions)
        try:
            reader.commit(positions)
        except Exception as exc:  # monitoring only: never worth stopping the fold for
            log.warning("could not commit offsets to Kafka for lag monitoring: %s", exc)

    def _close_parser(self) -> None:
        parser, self._parser = self._parser, None
        if parser is not None:
            parser.close()

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception as exc:
                log.warning("closing the Kafka consumer failed: %s", exc)


def _wal_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return Path(f"{row[0]}.wal") if row and row[0] else None


def _iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_kind(exc: BaseException) -> str:
    """What failed, in words fit for a public probe (the exception's text may hold paths and addresses)."""
    if isinstance(exc, duckdb.Error):
        return "database_invalidated" if is_fatal(exc) else "database_write_failed"
    if isinstance(exc, topic_identity.TopicChanged):
        return "topic_changed"
    module = type(exc).__module__ or ""
    if module.startswith("kafka") or isinstance(exc, OSError | TimeoutError):
        return "broker_unreachable"
    return "projector_failed"
