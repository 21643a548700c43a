"""The projector's next batch fetched and parsed while the writer folds the one before.

At the head of the topic the projector used to take turns: poll Kafka (and wait for the fetch the first
poll sent), have the batch parsed (`live_parse`), fold it, and only then poll again. In `make bench`'s
freshness run (2,000 events/s) a turn took ~290 ms, of which ~55 ms were polling and the fold's ~235
included waiting for the parse; a new event waited for the rest of the turn under way, then for a
whole turn of its own. `Prefetcher` polls and has the pieces parsed on a thread of its own, so that
when a fold ends the writer finds what arrived meanwhile already parsed: its turn is its fold. Measured
in alternating freshness runs, p99 967-1,221 ms against 1,260-1,706 (bench/README.md, "Reading and
parsing beside the fold").

At the head of the topic the thread polls once per `ROUND_S`, so an event that reached the broker
after its last poll used to miss the writer's next take and wait a whole fold more. A take therefore
asks the thread for one more poll first, and waits for it and its parse (at most `FRESH_WAIT_S`); the
thread, between rounds, polls at once when asked. Measured in four alternating freshness runs (2,000
events/s on a million-event file), p99 422-516 ms against 538-566 (bench/README.md, "A take polls once
more").

Exactly-once is untouched: the file's offsets stay the only position. The prefetcher is only a reader:
it reads in log order per partition from where it was assigned; what it holds when anything fails is
dropped with it, and the next one starts again at the offsets the file stores. `assign` drops what it
holds too, since it seeks. kafka-python's consumer is not thread-safe, so every call into it, the
thread's polls and the writer's own calls (end offsets, lag-monitoring commits), goes through one lock;
a poll holds it at most `POLL_MS`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from kafka import TopicPartition

from projector.consumer import TopicReader
from projector.prepare import PreparedBatch, merge_prepared
from projector.records import Record

# The longest a poll of the thread holds the consumer's lock (and waits for a fetch) before it looks again.
POLL_MS = 20
# The shortest time between two polls that brought records. Each poll sends Kafka's client a new fetch,
# and each fetched piece is a round trip to the parser, both Python of this process: with 20 ms, the
# client's IO thread was about four times as busy, the fold took 412-450 ms a batch instead of 235-276
# beside it, and freshness got worse (bench/README.md, "Reading and parsing beside the fold").
ROUND_S = 0.1
# The longest `take` waits for a poll begun when it was called (and that poll's parse) before it hands
# over what is already parsed: a poll waits at most `POLL_MS` for records.
FRESH_WAIT_S = 0.2


class Prefetcher:
    """A `TopicReader` read ahead: `take` returns what was fetched and parsed since the last call."""

    def __init__(
        self, reader: TopicReader, parse: Callable[[Sequence[Record]], PreparedBatch], max_records: int
    ) -> None:
        """`parse` prepares each fetched piece on the thread (`live_parse.LiveParser.prepare`, or
        `prepare.prepare`); at most `max_records` records wait, parsed, for the writer."""
        self._reader = reader
        self._parse = parse
        self._max_records = max_records
        self._consumer_lock = threading.Lock()
        self._changed = threading.Condition()  # guards the fields below
        self._batches: deque[PreparedBatch] = deque()
        self._waiting = 0  # records in `_batches`
        self._error: BaseException | None = None
        # Polls begun and ended by the thread, and whether the writer waits for one to begin.
        self._polls_begun = 0
        self._polls_ended = 0
        self._poll_now = False
        # Batches the thread appended and the writer took, and the consumer's positions as of a poll that
        # brought nothing, with the count of batches appended before it (`passed`).
        self._appended = 0
        self._taken = 0
        self._passed: tuple[int, dict[int, int]] | None = None
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def partitions(self) -> list[TopicPartition]:
        return self._reader.partitions

    # -- the writer's side ----------------------------------------------------------------------------

    def take(self, timeout_s: float) -> PreparedBatch | None:
        """Every batch parsed so far, merged (at most `max_records` records, whole fetched pieces), or
        the first to be parsed within `timeout_s`; None when none was. Raises what the thread met
        (Kafka unreachable, a parse that failed): the caller then closes this reader and starts again from
        the stored offsets."""
        self._start()
        with self._changed:
            if self._waiting < self._max_records:
                # What arrived since the thread's last poll, too: a poll begun now, and its parse.
                fresh = self._polls_begun + 1
                self._poll_now = True
                self._changed.notify_all()
                self._changed.wait_for(lambda: self._polls_ended >= fresh or self._error is not None, FRESH_WAIT_S)
            self._changed.wait_for(lambda: self._batches or self._error is not None, timeout_s)
            if self._error is not None:
                raise self._error
            parts: list[PreparedBatch] = []
            taken = 0
            while self._batches and (not parts or taken + len(self._batches[0]) <= self._max_records):
                parts.append(self._batches.popleft())
                taken += len(parts[-1])
            self._waiting -= taken
            self._taken += len(parts)
            self._changed.notify_all()
        return merge_prepared(parts) if parts else None

    def passed(self) -> dict[int, int]:
        """Next offsets by partition that every record before has been taken up to: the consumer's
        positions at a poll that brought nothing, once the writer has taken every batch read before it.
        They pass the offsets that hold no record (a transactional producer's markers), which no taken
        record accounts for. Empty when not known."""
        with self._changed:
            if self._passed is None or self._taken < self._passed[0]:
                return {}
            return dict(self._passed[1])

    def assign(self, stored: dict[int, int], partitions: list[int]) -> None:
        """`TopicReader.assign`; what was read ahead from the old positions is dropped."""
        self._stop_thread()
        with self._changed:
            self._batches.clear()
            self._waiting = 0
            self._error = None
            self._passed = None
        self._reader.assign(stored, partitions)

    def partition_ids(self, timeout_s: float = 30.0) -> list[int]:
        with self._consumer_lock:
            return self._reader.partition_ids(timeout_s)

    def end_offsets(self) -> dict[int, int]:
        with self._consumer_lock:
            return self._reader.end_offsets()

    def known_end_offsets(self) -> dict[int, int | None]:
        with self._consumer_lock:
            return self._reader.known_end_offsets()

    def beginning_offsets(self) -> dict[int, int]:
        with self._consumer_lock:
            return self._reader.beginning_offsets()

    def topic_id(self) -> str | None:
        with self._consumer_lock:
            return self._reader.topic_id()

    def commit(self, offsets: dict[int, int]) -> None:
        with self._consumer_lock:
            self._reader.commit(offsets)

    def close(self) -> None:
        """Stops the thread, drops what it read ahead, closes the consumer."""
        self._stop_thread()
        self._reader.close()

    # -- the thread -----------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None:
            self._halt.clear()
            self._thread = threading.Thread(target=self._run, name="projector-prefetch", daemon=True)
            self._thread.start()

    def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._halt.set()
            with self._changed:
                self._changed.notify_all()
            thread.join()

    def _has_room(self) -> bool:
        return self._waiting < self._max_records or self._halt.is_set()

    def _positions_past_records(self) -> dict[int, int] | None:
        """Under the consumer's lock, after a poll that brought nothing: the consumer's positions, asked
        only for the partitions whose fetched high-water mark is past what was known (an idle topic costs
        no call), or None when nothing changed."""
        known = self._passed[1] if self._passed is not None else {}
        moved = [p for p, end in self._reader.known_end_offsets().items() if end is not None and end > known.get(p, -1)]
        if not moved:
            return None
        return {**known, **self._reader.positions(moved)}

    def _run(self) -> None:
        try:
            while not self._halt.is_set():
                with self._changed:
                    self._changed.wait_for(self._has_room)
                    room = self._max_records - self._waiting
                    self._polls_begun += 1
                    self._poll_now = False
                if self._halt.is_set():
                    return
                started = time.monotonic()
                positions = None
                with self._consumer_lock:
                    records = self._reader.poll_once(POLL_MS, room)
                    if not records:
                        positions = self._positions_past_records()
                batch = self._parse(records) if records else None
                with self._changed:
                    if self._halt.is_set():
                        return
                    if batch is not None:
                        self._batches.append(batch)
                        self._waiting += len(batch)
                        self._appended += 1
                    if positions is not None:
                        self._passed = (self._appended, positions)
                    self._polls_ended += 1
                    self._changed.notify_all()
                    if batch is not None:
                        # The next round, unless the writer asks for one sooner.
                        self._changed.wait_for(
                            lambda: self._poll_now or self._halt.is_set(), started + ROUND_S - time.monotonic()
                        )
        except BaseException as exc:  # handed to the writer, whose loop reports it and starts again
            with self._changed:
                self._error = exc
                self._changed.notify_all()
