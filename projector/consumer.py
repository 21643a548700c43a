"""The Kafka side of the projector: where to read from, and reading in batches.

The read model's `offsets` table is the position; Kafka's committed offsets are not. The reader
assigns itself every partition of the topic (one process owns the DuckDB file, so there is nobody to
share partitions with) and, on every assignment, seeks each partition to the offset the file stores.
After each DuckDB commit the same offsets are committed to Kafka under the group id, only so that
standard lag tools (`kafka-consumer-groups.sh --describe`) show the projector.

Batching (the catch-up readers, a rebuild; `ProjectorService`'s loop reads through `prefetch.Prefetcher`, one poll
at a time): `read_batch` keeps polling until it has `batch_size` records or the topic has nothing more
right now. While catching up that gives large batches; at the head of the topic a poll returns within
`LIVE_POLL_MS` with whatever arrived, so a new event is folded well within a second, and the second poll
waits briefly for the fetch the first one sent, so that a batch is not only what was fetched meanwhile.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from broker.clients import made
from projector import topic_identity, wire
from projector.records import Record
from projector.source import TopicSource

log = logging.getLogger(__name__)

LIVE_POLL_MS = 100  # how long a poll waits at the head of the topic
FETCH_MAX_WAIT_MS = 100  # the broker's long-poll; short so that a new event is seen quickly
FILL_DEADLINE_S = 0.25  # a batch being filled is applied after this long even if not full
# How long the second poll of a batch waits for the fetch the first one sent (see `read_batch`): a fetch on
# the same machine or network answers within milliseconds when there is data; a quiet topic costs this once.
FOLLOW_UP_POLL_MS = 30
# Only what producers committed: the records of an aborted Kafka transaction were never published, and
# folding them would show turns that never happened. The broker hands a read_committed consumer the log up
# to the last stable offset (before the first transaction still open) and lists the aborted ones, which
# the consumer passes over. `end_offsets` answers that offset too, so a catch-up aims where it can reach.
# A producer that does not use transactions writes no aborted records; its topic reads the same either way.
ISOLATION_LEVEL = "read_committed"
FETCH_MAX_BYTES = 16 * 1024 * 1024
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024


class TopicReader:
    def __init__(self, source: TopicSource) -> None:
        self.topic = source.topic
        self.batch_size = source.batch_size
        self.group_id = source.group_id
        self._consumer = made(
            KafkaConsumer,
            bootstrap_servers=source.bootstrap_servers,
            group_id=source.group_id,
            client_id="chat-analytics-projector",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=ISOLATION_LEVEL,
            # Catch-up wants big fetches; the broker still answers at once when data is there. 4 MiB per
            # partition is ~6,000 demo events, enough to fill a catch-up batch from three partitions;
            # 16 MiB held ~100 MB more in kafka-python's buffers of every parser process, for no speed.
            max_poll_records=max(source.batch_size, 500),
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            bootstrap_timeout_ms=10_000,  # report an unreachable broker in status soon; the loop retries
        )
        # Records decoded straight from the fetched bytes (`projector.wire`), when this kafka-python allows it.
        self._decoded = wire.install(self._consumer)
        self.partitions: list[TopicPartition] = []

    # -- assignment -----------------------------------------------------------------------------------

    def partition_ids(self, timeout_s: float = 30.0) -> list[int]:
        """The topic's partitions; waits for metadata (a topic that does not exist yet has none)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._consumer.partitions_for_topic(self.topic)
            if found:
                return sorted(found)
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.2)

    def assign(self, stored: dict[int, int], partitions: list[int]) -> None:
        """Assigns `partitions` and seeks each one to its stored next offset (the start when none)."""
        self.partitions = [TopicPartition(self.topic, p) for p in partitions]
        self._consumer.assign(self.partitions)
        fresh = []
        for tp in self.partitions:
            if tp.partition in stored:
                self._consumer.seek(tp, stored[tp.partition])
            else:
                fresh.append(tp)
        if fresh:
            self._consumer.seek_to_beginning(*fresh)
        log.info("assigned %s partitions of %s at stored offsets %s", len(partitions), self.topic, stored)

    # -- reading --------------------------------------------------------------------------------------

    def read_batch(self, max_records: int | None = None) -> list[Record]:
        """Up to `max_records` records in log order per partition; empty when nothing arrived."""
        limit = max_records or self.batch_size
        out: list[Record] = []
        deadline = time.monotonic() + FILL_DEADLINE_S
        timeout_ms = LIVE_POLL_MS
        first = True
        while len(out) < limit:
            polled = self.poll_once(timeout_ms, limit - len(out))
            if not polled:
                break
            out.extend(polled)
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                break
            # The records the first poll returns were fetched before it (while the previous batch was
            # folded, the answer to the fetch sent after it waited here): it sent the next fetch as it
            # returned, and that one answers with what arrived since. Not waiting for that answer made
            # every other live batch the few records of the old fetch, each paying a whole batch's fixed
            # cost while the backlog waited for the batch after it. Later polls take only what is fetched.
            timeout_ms = int(min(FOLLOW_UP_POLL_MS, remaining_ms)) if first else 0
            first = False
        return out

    def poll_once(self, timeout_ms: int, max_records: int) -> list[Record]:
        """One poll: what is fetched already, else what arrives within `timeout_ms`, in log order per partition."""
        polled = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        if self._decoded:
            return [r for records in polled.values() for r in records]
        return [
            Record(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp if m.timestamp >= 0 else None)
            for tp, messages in polled.items()
            for m in messages
        ]

    def positions(self, partitions: list[int]) -> dict[int, int]:
        """The next offset the consumer will return of each of `partitions`: past the offsets that hold no
        record (a transaction's markers), which no returned record accounts for."""
        out = {}
        for p in partitions:
            position = self._consumer.position(TopicPartition(self.topic, p), timeout_ms=10_000)
            if position is not None:
                out[p] = int(position)
        return out

    def end_offsets(self) -> dict[int, int]:
        # Bounded, so that a broker gone quiet surfaces as an error (and a reconnect) within seconds.
        ends = self._consumer.end_offsets(self.partitions, timeout_ms=10_000)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def beginning_offsets(self) -> dict[int, int]:
        starts = self._consumer.beginning_offsets(self.partitions, timeout_ms=10_000)
        return {tp.partition: int(offset) for tp, offset in starts.items()}

    def topic_id(self) -> str | None:
        """The id the broker gave the topic (`projector.topic_identity`), from the metadata already held."""
        return topic_identity.of_consumer(self._consumer, self.topic)

    def known_end_offsets(self) -> dict[int, int | None]:
        """The high-water marks the last fetches reported: free, but None before the first fetch."""
        return {tp.partition: self._consumer.highwater(tp) for tp in self.partitions}

    def commit(self, offsets: dict[int, int]) -> None:
        """Reports the folded position to Kafka for lag monitoring. Never the source of truth."""
        if self.group_id is None or not offsets:
            return
        self._consumer.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})

    def close(self) -> None:
        self._consumer.close(autocommit=False)
