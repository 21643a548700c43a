"""The projector of a running `serve`, and its blue/green rebuild without downtime.

`LiveProjection` owns the live `ProjectorService` and the `ReadModelHandle` the API reads. A rebuild
(asked for by an operator, or by itself at start-up when the file's read-model version is not this
release's) folds the topic into a new file beside the served one, on its own connection and
consumer group, in catch-up mode, while requests keep being answered from the current file. Once the
new file is close to the head of the topic:

1. the live projector stops between two batches (the API still reads the current file);
2. the new file folds the last records up to the end offsets as they are now, so it holds at least
   everything the current one does (counts never go backwards), gets its serving index, is checkpointed
   and closed; the current file's log is checkpointed too;
3. under the handle's write side (it waits for requests in flight and holds new ones for the few ms
   this takes): the current file is checkpointed and closed, renamed aside, the new one renamed to
   the served path, reopened, swapped in;
4. the old file is deleted, and the live projector restarts on the new file from its stored offsets.

Nothing is lost: the offsets live in each file, so whatever was published meanwhile is folded after
the restart. Should anything fail before step 3 completes, the current file stays (or is put back)
and the live projector restarts on it; the new file stays too, and the next attempt of this process
continues it from its offsets (`_rebuild_target`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from broker.errors import one_line
from projector import conversations, deadletters, forget, topic_identity
from projector.rebuild import (
    CATCH_UP_BATCH_SIZE,
    LogBounds,
    Progress,
    StopFlag,
    checkpoint_and_close,
    fold_to,
    log_bounds,
    prepare_target,
    settle_conversations,
)
from projector.service import ProjectorService
from projector.source import TopicSource
from projector.status import file_figures, file_size, report
from schemas.position import Position
from schemas.readmodel import (
    READMODEL_VERSION,
    SERVING_CHECKPOINT_THRESHOLD,
    add_serving_indexes,
    connect,
    file_version,
    size_bytes,
    stored_offsets,
)
from schemas.storage import disk_free
from serving.copy import copy_read_model
from serving.handle import ReadModelHandle

log = logging.getLogger(__name__)

SWITCH_WITHIN = 5_000  # records behind the head at which the new file is close enough to switch to
MAX_BACKOFF_S = 30.0  # between attempts of a start-up rebuild, which has no live projector to fall back to
IDLE, RUNNING, SWITCHING, DONE, FAILED = "idle", "running", "switching", "done", "failed"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _behind(con: duckdb.DuckDBPyConnection, topic: str, bounds: LogBounds) -> int:
    stored = stored_offsets(con, topic)
    return sum(max(0, end - max(stored.get(p, 0), bounds.starts.get(p, 0))) for p, end in bounds.targets.items())


class LiveProjection:
    def __init__(
        self,
        handle: ReadModelHandle,
        *,
        source: TopicSource,
        readable: Callable[[ReadModelHandle], bool] | None = None,
        rebuild_batch_size: int = CATCH_UP_BATCH_SIZE,
        disk_warn_bytes: int | None = None,
        retention_days: int | None = None,
    ) -> None:
        if handle.path is None:
            raise ValueError("a live projection needs the served file's path")
        self.handle = handle
        self.source = source
        self.topic = source.topic
        self.rebuild_batch_size = rebuild_batch_size
        self.readable = readable
        self.disk_warn_bytes = disk_warn_bytes
        self.retention_days = retention_days  # None: the files' retention is left alone
        self.service: ProjectorService | None = None
        self._state_lock = threading.Lock()  # guards the fields below
        self._writer = threading.Lock()  # one task that writes outside the live loop at a time
        self._stop = StopFlag()
        self._thread: threading.Thread | None = None
        self._state = IDLE
        self._phase = ""
        self._reason: str | None = None
        self._progress = Progress()
        self._started_at: str | None = None
        self._finished_at: str | None = None
        self._error: str | None = None
        self._requests_held_ms: float | None = None
        self._serving_previous = False
        # The file a failed attempt of this process left, which the next attempt continues (`_rebuild_target`).
        self._continuable: Path | None = None
        # A new projector starts "not caught up" until it has asked for end offsets; the service that
        # replaces a caught-up one (after a switch or a retry) must not make /readyz flap meanwhile.
        self._caught_up_from_start: ProjectorService | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the live projector, or, for a file of another read-model version, a rebuild."""
        # Copies a download did not finish sending, and a rebuild's file (the process stopped meanwhile):
        # no other process's rebuild is continued (`_rebuild_target`), so they only take disk space.
        rebuilding = rebuild_path(self._served)
        for leftover in [
            *self._served.parent.glob(f"{self._served.name}.snapshot-*"),
            rebuilding,
            Path(f"{rebuilding}.wal"),
        ]:
            leftover.unlink(missing_ok=True)
        version = file_version(self.handle.connection)
        if version == READMODEL_VERSION:
            self._start_service(self.handle.connection)
            return
        log.warning(
            "%s holds read-model version %s, this release writes %s: rebuilding it from %s in the background",
            self.handle.path,
            version,
            READMODEL_VERSION,
            self.topic,
        )
        if self.readable is not None and self.readable(self.handle):
            self._serving_previous = True
            log.warning("serving the old file meanwhile")
        else:
            self.handle.unavailable = "the read model is being rebuilt for this release; retry shortly"
            log.warning("the old file cannot be served by this release: 503 until the rebuild is done")
        started, progress = self.start_rebuild(reason=f"read-model version {version} -> {READMODEL_VERSION}")
        if not started:
            log.error("the start-up rebuild cannot start: %s", progress.get("detail"))

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(120)
        service, self.service = self.service, None
        if service is not None:
            service.stop()

    def _start_service(self, con: duckdb.DuckDBPyConnection, *, caught_up: bool = False) -> None:
        """A new live projector on `con`; `caught_up`: it takes over from one that was (or the file is at
        the head), so it counts as caught up from the start."""
        service = ProjectorService(
            self.source,
            con,
            retention_days=self.retention_days,
            on_commit=self.handle.positions.advance,
            on_fatal=self.handle.mark_failed,
            changes=self.handle.changes,
            checkpoint_bytes=size_bytes(self.handle.checkpoint_threshold or SERVING_CHECKPOINT_THRESHOLD),
        )
        self._caught_up_from_start = service if caught_up else None
        self.service = service
        service.start()

    # -- what /readyz, /metrics and the admin endpoints show -------------------------------------------

    def status(self) -> dict[str, Any]:
        service = self.service
        if service is not None:
            body = dict(service.status())
            if service is self._caught_up_from_start:
                body["caught_up"] = True
        else:
            body = {
                "caught_up": False,
                "partitions": [],
                "events_applied": {},
                "dead_letters": {},
                "pending_events": 0,
                "last_batch_at": None,
                "error": None,
            }
            if self._serving_previous:
                body["serving_previous_file"] = True
        progress = self.rebuild_progress()
        body["rebuild"] = progress if progress["state"] != IDLE else None
        return body

    def rebuild_progress(self) -> dict[str, Any]:
        with self._state_lock:
            return {
                "state": self._state,
                "phase": self._phase,
                "reason": self._reason,
                "started_at": self._started_at,
                "finished_at": self._finished_at,
                "error": self._error,
                "requests_held_ms": self._requests_held_ms,
                # A failed attempt left its file: the next one (asked again) continues it (`_rebuild_target`).
                "resumable": self._state == FAILED and self._continuable is not None,
                **self._progress.as_json(),
            }

    def admin_status(self) -> dict[str, Any]:
        """`chat-analytics status --json` of the served file, with the live end offsets."""
        service = self.service
        live = service.status() if service is not None else None
        ends = {p["partition"]: p["end_offset"] for p in live["partitions"]} if live else None
        with self.handle.reading() as cur:
            figures = file_figures(cur, self.topic)
        retention = None
        if self.retention_days is not None:
            from broker.topics import describe_retention

            retention = describe_retention(self.source.bootstrap_servers, self.topic, self.retention_days)
        doc = report(
            figures,
            topic=self.topic,
            path=self.handle.path,
            end_offsets=ends or None,
            retention=retention,
            disk_warn_bytes=self.disk_warn_bytes,
        )
        doc["live"] = self.status()
        return doc

    def dead_letters(
        self, reason: str | None, limit: int | None, after: tuple[str, int, int] | None = None
    ) -> list[dict[str, Any]]:
        """At most `limit` dead letters (in log order, after the position `after`), as JSON."""
        with self.handle.reading() as cur:
            letters = deadletters.iter_dead_letters(cur, reason=reason, limit=limit, after=after)
            return [d.as_json() for d in letters]

    # -- a consistent copy of the served file, for seeding a replica --------------------------------------

    def snapshot(self) -> tuple[Path, Position]:
        """Copies the served file, as of one commit, to a new file beside it; returns it with its position.
        The caller deletes the file once it has sent it."""
        dest = self._served.with_name(f"{self._served.name}.snapshot-{uuid.uuid4().hex[:12]}")
        try:
            version, offsets = copy_read_model(self.handle, dest, self.topic)
        except BaseException:
            for leftover in (dest, Path(f"{dest}.wal")):
                leftover.unlink(missing_ok=True)
            raise
        position = Position.of(version, self.topic, offsets)
        log.info("snapshot of %s at %s: %s bytes", self._served, position.token(), dest.stat().st_size)
        return dest, position

    # -- dead-letter retry on the served file ---------------------------------------------------------

    def retry_dead_letters(self, reason: str | None = None) -> tuple[bool, Mapping[str, Any]]:
        """Pauses the live projector between batches, retries, restarts it. (False, why) while a
        rebuild runs: the new file re-folds every dead letter anyway."""
        with self._state_lock:
            if self._state in (RUNNING, SWITCHING):
                return False, {"detail": "a rebuild is running; its new file applies whatever this release can"}
        with self._writer:
            service = self.service
            if service is not None:
                service.stop()
            try:
                result = deadletters.retry(self.handle.connection, reason=reason)
            finally:
                if service is not None:
                    # A new service: it reads the dead-letter counts and waiting events afresh.
                    self._start_service(self.handle.connection, caught_up=service.status()["caught_up"])
        log.info("dead-letter retry: %s", result.as_json())
        return True, result.as_json()

    # -- the rebuild ----------------------------------------------------------------------------------

    def start_rebuild(self, reason: str = "requested") -> tuple[bool, Mapping[str, Any]]:
        """Starts a blue/green rebuild in the background; (False, progress) when one is running, and
        (False, {"detail", "insufficient_storage": True, ...}) when the disk has no room for a second file."""
        room = rebuild_room(self._served)
        if not room["enough"]:
            return False, {"detail": room["detail"], "insufficient_storage": True, **room}
        with self._state_lock:
            if self._state in (RUNNING, SWITCHING):
                busy = True
            else:
                busy = False
                self._state, self._phase, self._reason = RUNNING, "starting", reason
                self._progress = Progress()
                self._started_at, self._finished_at, self._error = _now(), None, None
                self._requests_held_ms = None
        if busy:
            return False, self.rebuild_progress()
        self._thread = threading.Thread(target=self._rebuild_main, name="rebuild", daemon=True)
        self._thread.start()
        return True, self.rebuild_progress()

    def _set(self, **fields: Any) -> None:
        with self._state_lock:
            for name, value in fields.items():
                setattr(self, f"_{name}", value)

    @property
    def _served(self) -> Path:
        assert self.handle.path is not None
        return self.handle.path

    def _rebuild_main(self) -> None:
        backoff = 1.0
        while not self._attempt_rebuild():
            # Without a live projector (a start-up rebuild) nothing else follows the topic: keep trying,
            # as the live projector itself would (the broker may simply not be up yet).
            if self.service is not None or self._stop():
                self._set(state=FAILED, phase="failed", finished_at=_now())
                return
            self._set(phase=f"retrying in {backoff:.0f} s")
            if self._stop.wait(backoff):
                self._set(state=FAILED, phase="failed", finished_at=_now())
                return
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            self._set(progress=Progress())

    def _attempt_rebuild(self) -> bool:
        new_path = rebuild_path(self._served)
        new_con: duckdb.DuckDBPyConnection | None = None
        try:
            new_con = self._rebuild_target(new_path)
            self._catch_up(new_con)
            if self._stop():
                raise InterruptedError("the server is stopping")
            # While the current file is still served and followed; then the records that came meanwhile.
            self._set(phase="computing the conversations")
            settle_conversations(new_con)
            self._catch_up(new_con)
            if self._stop():
                raise InterruptedError("the server is stopping")
            self._set(state=SWITCHING, phase="switching", error=None)
            self._switch(new_con, new_path)
            new_con = None  # closed by the switch, its file now served under the configured path
            self._set(state=DONE, phase="done", finished_at=_now(), error=None)
            log.info("rebuild done: now serving the new file (%s)", self._progress.as_json())
            return True
        except Exception as exc:
            log.exception("rebuild failed; still serving the current file")
            self._set(state=RUNNING, error=one_line(exc))
            if new_con is not None:
                with contextlib.suppress(duckdb.Error):
                    new_con.close()
            if self._stop() or isinstance(exc, topic_identity.TopicChanged):  # no use continuing it
                for leftover in (new_path, Path(f"{new_path}.wal")):
                    leftover.unlink(missing_ok=True)
            else:
                self._continuable = new_path
            return False

    def _rebuild_target(self, new_path: Path) -> duckdb.DuckDBPyConnection:
        """The file a rebuild folds into. What a failed attempt of this process left is continued from its
        stored offsets, as any file is (they are committed with its rows): a rebuild that met a broker gone
        for minutes, or is asked again after it failed, does not fold hours of records again. Anything
        else at that path is replaced: a file another process left may come from code that folded
        differently under the same read-model version."""
        continuable, self._continuable = self._continuable, None
        if continuable == new_path and new_path.exists():
            try:
                con = connect(new_path)
            except duckdb.Error as exc:
                log.warning("the rebuild starts afresh: %s cannot be continued (%s)", new_path, one_line(exc))
            else:
                log.info("continuing the rebuild in %s from its offsets %s", new_path, stored_offsets(con, self.topic))
                return con
        prepare_target(new_path, force=True)
        con = connect(new_path)
        if self.retention_days is not None:
            # Before the first record: what is older than the horizon is dropped as it arrives.
            forget.set_watermark(con, forget.horizon(self.retention_days))
        conversations.defer(con)  # computed once, before the switch (projector/conversations.py)
        return con

    def _bounds(self) -> LogBounds:
        return log_bounds(self.source.bootstrap_servers, self.topic)

    def _rebuild_source(self) -> TopicSource:
        """The live source with catch-up batches and a group of its own (the live projector's lag stays its own)."""
        group = None if self.source.group_id is None else f"{self.source.group_id}.rebuild"
        return replace(self.source, group_id=group, batch_size=self.rebuild_batch_size)

    def _catch_up(self, new_con: duckdb.DuckDBPyConnection) -> None:
        """Folds the new file until it is within SWITCH_WITHIN records of the head."""
        self._set(phase="catching up")
        while not self._stop():
            bounds = self._bounds()
            if _behind(new_con, self.topic, bounds) <= SWITCH_WITHIN:
                return
            fold_to(
                new_con,
                source=self._rebuild_source(),
                bounds=bounds,
                progress=self._progress,
                should_stop=self._stop,
            )

    def _switch(self, new_con: duckdb.DuckDBPyConnection, new_path: Path) -> None:
        with self._writer:
            live = self.service
            was_caught_up = bool(live is not None and live.status()["caught_up"])
            if live is not None:
                # Between two batches; requests still read the current file, and /readyz keeps
                # showing the stopped service's (caught-up) status until the new one starts.
                live.stop()
            try:
                self._set(phase="folding the last records")
                bounds = self._bounds()  # the live projector is stopped: nothing moves these any more
                fold_to(
                    new_con,
                    source=self._rebuild_source(),
                    bounds=bounds,
                    progress=self._progress,
                    parse_process=False,
                )
                if _behind(new_con, self.topic, bounds):
                    raise RuntimeError("the new file did not reach the end offsets")
                if self.retention_days is not None:
                    forget.purge(new_con, self.retention_days)  # the horizon may have moved meanwhile
                # Made here, while requests still read the current file: made by the swap, which serves the
                # file with them, they held every request for ~0.6 s at a million events.
                add_serving_indexes(new_con)
                checkpoint_and_close(new_con)
                if Path(f"{new_path}.wal").exists():
                    raise RuntimeError(f"{new_path}.wal is left after a checkpoint: not switching to it")
                # The current file's log too: nothing writes to it any more, and its checkpoint under the
                # swap's hold would keep requests waiting for as long as it takes (up to the serving
                # threshold's 256 MiB of log). Readers go on meanwhile; what is left is done in the hold.
                with contextlib.suppress(duckdb.Error):
                    self.handle.connection.execute("CHECKPOINT")
                self._set(phase="swapping files")
                con = self._swap_files(new_path)
            except BaseException:
                if live is not None and self.service is live:
                    self._start_service(self.handle.connection, caught_up=was_caught_up)
                raise
            # The new file is at the head: caught up, whether or not a live projector ran before.
            self._start_service(con, caught_up=was_caught_up or live is None)
            # Only once the new service is in place: until then /readyz reads the previous file's flag
            # (a start-up rebuild has no service before), and without it would say "not caught up".
            self._serving_previous = False

    def _swap_files(self, new_path: Path) -> duckdb.DuckDBPyConnection:
        served = self._served
        previous = served.with_name(served.name + ".previous")
        # From here new requests wait (the write side is wanted) until the swap is done.
        held_from = time.monotonic()
        with self.handle.exclusive():
            checkpoint_and_close(self.handle.connection)
            try:
                # A log beside the old file would be replayed onto the new one when it is opened.
                Path(f"{served}.wal").unlink(missing_ok=True)
                os.replace(served, previous)
                try:
                    os.replace(new_path, served)
                    con = connect(served)
                except BaseException:
                    os.replace(previous, served)
                    raise
            except BaseException:
                self.handle.swap(connect(served), served)  # the current file again, so serving goes on
                raise
            self.handle.swap(con, served)
            self.handle.unavailable = None
        held_ms = (time.monotonic() - held_from) * 1000
        self._set(requests_held_ms=round(held_ms, 1))
        log.info("switched %s to the rebuilt file; requests were held for %.1f ms", served, held_ms)
        previous.unlink(missing_ok=True)
        return con


# The new file is built beside the served one and can end up larger than it (a fresh fold writes its
# own write-ahead log before the final checkpoint): ask for this much of the served file's size free.
REBUILD_ROOM_FACTOR = 1.5


def rebuild_path(served: Path) -> Path:
    """Where a blue/green rebuild of `served` builds its new file."""
    return served.with_name(served.name + ".rebuild")


def rebuild_room(served: Path, target: Path | None = None) -> dict[str, Any]:
    """Whether the filesystem of `target` (by default the served file's) has room for a rebuilt copy
    of the served file. What is already at the target, continued or replaced by the rebuild, counts as room."""
    target = target or rebuild_path(served)
    needed = max(0, int((file_size(served) or 0) * REBUILD_ROOM_FACTOR) - (file_size(target) or 0))
    folder = target.parent
    free = disk_free(folder)
    enough = free is None or free >= needed
    detail = (
        None
        if enough
        else f"not enough free disk space for a rebuild: {free} bytes free in {folder}, "
        f"{needed} needed (1.5 times {served.name}); free some space first"
    )
    return {"enough": enough, "free_bytes": free, "needed_bytes": needed, "detail": detail}
