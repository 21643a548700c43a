"""Reading and writing a real topic in tests: publish events, read them back as the fold sees them
(`read_back`) or as Kafka returns them (`read_topic`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from projector.consumer import ISOLATION_LEVEL
from projector.records import Record
from tests.support.events import encode, key_of


def read_back(bootstrap_servers: str, topic: str) -> list[Record]:
    """Every record of the topic, partition by partition, as the fold sees them: what producers committed,
    read by kafka-python's own consumer."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, isolation_level=ISOLATION_LEVEL
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: dict[int, list[Record]] = {tp.partition: [] for tp in tps}
        # By the consumer's position, not a count of records: a transaction's marker takes an offset and
        # is never received as one.
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for tp, messages in consumer.poll(timeout_ms=500).items():
                out[tp.partition].extend(
                    Record(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp) for m in messages
                )
        return [r for p in sorted(out) for r in out[p]]
    finally:
        consumer.close()


READ_DEADLINE_S = 60.0


def read_topic(bootstrap_servers: str, topic: str, isolation_level: str = "read_uncommitted") -> list[ConsumerRecord]:
    """Every record of `topic` up to its current end, ordered by (partition, offset)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = datetime.now(UTC) + timedelta(seconds=READ_DEADLINE_S)
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert datetime.now(UTC) < deadline, "the topic could not be read to its end in time"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def publish(
    bootstrap_servers: str, topic: str, events: Sequence[dict[str, Any] | bytes], timestamp_ms: int | None = None
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
    try:
        for event in events:
            producer.send(topic, key=key_of(event), value=encode(event), timestamp_ms=timestamp_ms)
        producer.flush(60)
    finally:
        producer.close()
