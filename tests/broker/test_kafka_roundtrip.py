"""End to end through the real broker: what a producer writes comes back, keyed and in order per partition."""

from __future__ import annotations

import time
from collections import defaultdict

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

SESSIONS = [f"session-{n}" for n in range(8)]
TURNS_PER_SESSION = 6
READ_DEADLINE_S = 60.0


def produce(bootstrap_servers: str, topic: str) -> list[tuple[str, str, int, int]]:
    """Send keyed messages; return (key, value, partition, offset) as the broker acknowledged them."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    futures = []
    try:
        # Interleaved across sessions, as a busy chat backend would publish them.
        for turn in range(TURNS_PER_SESSION):
            for session in SESSIONS:
                value = f'{{"session_id": "{session}", "turn": {turn}, "text": "h\\u00e9llo"}}'
                future = producer.send(topic, key=session.encode(), value=value.encode())
                futures.append((session, value, future))
        producer.flush()
        acknowledged = []
        for session, value, future in futures:
            metadata = future.get(timeout=30)
            acknowledged.append((session, value, metadata.partition, metadata.offset))
        return acknowledged
    finally:
        producer.close()


def consume_all(bootstrap_servers: str, topic: str, expected: int) -> list[tuple[str, str, int, int]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        received: list[tuple[str, str, int, int]] = []
        deadline = time.monotonic() + READ_DEADLINE_S
        while len(received) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend((r.key.decode(), r.value.decode(), r.partition, r.offset) for r in records)
        return received
    finally:
        consumer.close()


def test_keyed_messages_come_back_with_keys_values_and_partition_order(bootstrap_servers: str, topic: str) -> None:
    sent = produce(bootstrap_servers, topic)
    received = consume_all(bootstrap_servers, topic, expected=len(sent))

    assert len(received) == len(sent) == len(SESSIONS) * TURNS_PER_SESSION
    assert sorted(received) == sorted(sent)

    # One key, one partition: that is what keeps a session's events in order.
    partition_of: dict[str, set[int]] = defaultdict(set)
    for key, _value, partition, _offset in received:
        partition_of[key].add(partition)
    assert all(len(parts) == 1 for parts in partition_of.values())
    assert len({p for parts in partition_of.values() for p in parts}) > 1, "8 keys should spread over 3 partitions"

    # Within a partition, messages come back in the order they were produced.
    sent_by_partition: dict[int, list[str]] = defaultdict(list)
    for _key, value, partition, _offset in sent:
        sent_by_partition[partition].append(value)
    received_by_partition: dict[int, list[str]] = defaultdict(list)
    for _key, value, partition, _offset in received:
        received_by_partition[partition].append(value)
    assert received_by_partition == sent_by_partition

    # And so each session's turns come back in turn order.
    for session in SESSIONS:
        turns = [value for key, value, _p, _o in received if key == session]
        assert turns == [v for k, v, _p, _o in sent if k == session]
        assert [f'"turn": {n},' in turn for n, turn in enumerate(turns)] == [True] * TURNS_PER_SESSION
