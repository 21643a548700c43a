"""`projector.wire` against kafka-python's own decoding: the same records from the same bytes, on generated
batches and on a real broker's fetches (plain, compressed, transactional with aborts, LogAppendTime), and a clear
error, never wrong records, from damaged bytes."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from projector.consumer import ISOLATION_LEVEL, TopicReader
from projector.records import Record
from projector.source import TopicSource
from projector.wire import HEADER_SIZE, decode_batch
from tests.support.kafka import read_topic

_ATTRIBUTES_AT, _MAX_TIMESTAMP_AT = 21, 35  # byte positions in the batch header
_LOG_APPEND_TIME = 0x08

payloads = st.one_of(st.none(), st.binary(max_size=40), st.binary(min_size=120, max_size=20_000))
headers = st.lists(st.tuples(st.text(max_size=12), st.one_of(st.none(), st.binary(max_size=30))), max_size=3)
records = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3_000),  # offset gap: deltas of one to several varint bytes
        st.integers(min_value=-(2**40), max_value=2**40),  # timestamp delta, either side of the first
        payloads,
        payloads,
        headers,
    ),
    min_size=1,
    max_size=40,
)


def _batch(base_offset: int, base_time: int, spec: list[Any]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 30,
    )  # fmt: skip
    offset = 0
    for gap, delta, key, value, hdrs in spec:
        builder.append(offset, max(0, base_time + delta), key, value, hdrs)
        offset += 1 + gap
    return bytes(_with_base_offset(builder.build(), base_offset))


def _with_base_offset(buffer: bytearray, base_offset: int) -> bytearray:
    struct.pack_into(">q", buffer, 0, base_offset)
    return buffer


def _kafka_python(topic: str, partition: int, buffer: bytes) -> list[Record]:
    """The records as kafka-python decodes them, as `TopicReader` hands them on."""
    return [
        Record(topic, partition, r.offset, r.key, r.value, r.timestamp if r.timestamp >= 0 else None)
        for r in DefaultRecordBatch(buffer)
    ]


@settings(max_examples=400, deadline=None)
@given(
    base_offset=st.integers(min_value=0, max_value=2**50),
    base_time=st.integers(min_value=0, max_value=2**42),
    spec=records,
    log_append=st.booleans(),
)
def test_decoding_gives_the_records_kafka_python_gives(
    base_offset: int, base_time: int, spec: list[Any], log_append: bool
) -> None:
    buffer = bytearray(_batch(base_offset, base_time, spec))
    if log_append:  # what a topic with message.timestamp.type=LogAppendTime stores: the broker's time for all
        (attributes,) = struct.unpack_from(">h", buffer, _ATTRIBUTES_AT)
        struct.pack_into(">h", buffer, _ATTRIBUTES_AT, attributes | _LOG_APPEND_TIME)
        struct.pack_into(">q", buffer, _MAX_TIMESTAMP_AT, base_time + 77)
    ours = decode_batch("t", 4, bytes(buffer))
    assert ours == _kafka_python("t", 4, bytes(buffer))
    assert len(ours) == len(spec)
    if log_append:
        assert {r.timestamp_ms for r in ours} == {base_time + 77}


@settings(max_examples=150, deadline=None)
@given(spec=records, data=st.data())
def test_a_damaged_batch_is_an_error_not_other_records(spec: list[Any], data: st.DataObject) -> None:
    whole = _batch(100, 1_700_000_000_000, spec)
    cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 1), label="cut")
    with pytest.raises(CorruptRecordError):
        decode_batch("t", 0, whole[:cut])
    with pytest.raises(CorruptRecordError):
        decode_batch("t", 0, whole + b"\x00")
    # The first record one byte longer than its fields (a one-byte zigzag length: +2 is +1 byte).
    damaged = bytearray(whole)
    if damaged[HEADER_SIZE] < 0x7E:
        damaged[HEADER_SIZE] += 2
        with pytest.raises(CorruptRecordError):
            decode_batch("t", 0, bytes(damaged))


def test_other_batches_are_refused_by_the_decoder() -> None:
    compressed = bytearray(_batch(0, 0, [(0, 0, b"k", b"v", [])]))
    struct.pack_into(">h", compressed, _ATTRIBUTES_AT, 1)  # gzip
    with pytest.raises(ValueError, match="uncompressed"):
        decode_batch("t", 0, bytes(compressed))


def _reader_records(bootstrap_servers: str, topic: str) -> list[Record]:
    reader = TopicReader(TopicSource(bootstrap_servers, topic, group_id=None, batch_size=500))
    try:
        assert reader._decoded, "this kafka-python took no decoder: the fast path is not exercised"
        reader.assign({}, reader.partition_ids())
        ends = reader.end_offsets()
        out: list[Record] = []
        for _ in range(200):
            # By the consumer's position: markers and aborted records take offsets no record returns.
            if all(at >= ends[p] for p, at in reader.positions(list(ends)).items()):
                break
            out.extend(reader.read_batch())
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        reader.close()


def _plain_consumer_records(bootstrap_servers: str, topic: str, isolation_level: str = ISOLATION_LEVEL) -> list[Record]:
    return [
        Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp if r.timestamp >= 0 else None)
        for r in read_topic(bootstrap_servers, topic, isolation_level)
    ]


def _produce(bootstrap_servers: str, topic: str, partitions: int = 3, **config: Any) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20, **config)
    try:
        for i in range(300):
            key = None if i % 7 == 0 else f"k{i}".encode()
            value = None if key is not None and i % 50 == 3 else (b"x" * (i * 37 % 9_000)) + f"-{i}".encode()
            hdrs = [("h", b"1"), ("e", b"")] if i % 11 == 0 else []
            producer.send(topic, key=key, value=value, headers=hdrs, partition=i % partitions)
        producer.flush(60)
    finally:
        producer.close()


def test_a_reader_reads_what_a_plain_consumer_reads(bootstrap_servers: str, topic: str) -> None:
    _produce(bootstrap_servers, topic)  # plain batches, decoded by projector.wire
    _produce(bootstrap_servers, topic, compression_type="gzip")  # through kafka-python's records
    ours = _reader_records(bootstrap_servers, topic)
    assert len(ours) == 600
    assert ours == _plain_consumer_records(bootstrap_servers, topic)


def test_aborted_transactions_and_markers_are_skipped_as_kafka_python_skips_them(
    bootstrap_servers: str, topic: str
) -> None:
    # Two transactional producers and a plain one write the same partitions, interleaved: an aborted
    # transaction spans batches of the others, and is followed by committed ones. The reader (read
    # committed) must return exactly what kafka-python's own consumer returns at that level: only the
    # committed and the plain records, never a marker.
    first = KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=f"wire-a-{topic}")
    second = KafkaProducer(bootstrap_servers=bootstrap_servers, transactional_id=f"wire-b-{topic}")
    plain = KafkaProducer(bootstrap_servers=bootstrap_servers)

    def send(producer: KafkaProducer, label: str) -> None:
        for i in range(20):
            producer.send(topic, key=f"k{i}".encode(), value=f"{label}-{i}".encode(), partition=i % 3)
        producer.flush(60)  # in the log now, before the other producers' records and before the marker

    try:
        first.init_transactions()
        second.init_transactions()
        first.begin_transaction()
        send(first, "aborted-1")
        send(plain, "plain-1")
        second.begin_transaction()
        send(second, "committed-1")
        send(first, "aborted-2")
        second.commit_transaction()
        first.abort_transaction()
        first.begin_transaction()
        send(first, "committed-2")
        first.commit_transaction()
        send(plain, "plain-2")
    finally:
        for producer in (first, second, plain):
            producer.close()
    ours = _reader_records(bootstrap_servers, topic)
    values = sorted({r.value.decode().rsplit("-", 1)[0] for r in ours if r.value is not None})
    assert values == ["committed-1", "committed-2", "plain-1", "plain-2"]
    assert len(ours) == 80
    assert ours == _plain_consumer_records(bootstrap_servers, topic, "read_committed")
    # Both levels see the same log: the aborted records are there for a consumer that asks for them.
    assert len(_plain_consumer_records(bootstrap_servers, topic, "read_uncommitted")) == 120


def test_log_append_time_topics_give_the_brokers_time(bootstrap_servers: str, kafka_admin: Any) -> None:
    name = f"test-wire-log-append-{id(kafka_admin):x}"
    kafka_admin.create_topics(
        {name: {"num_partitions": 3, "configs": {"message.timestamp.type": "LogAppendTime"}}}, wait_for_metadata=True
    )
    try:
        _produce(bootstrap_servers, name)
        ours = _reader_records(bootstrap_servers, name)
        assert len(ours) == 300
        assert ours == _plain_consumer_records(bootstrap_servers, name)
    finally:
        kafka_admin.delete_topics([name], raise_errors=False)


@pytest.mark.partitions(1)
def test_a_poll_that_takes_part_of_a_batch_leaves_the_position_after_its_last_record(
    bootstrap_servers: str, topic: str
) -> None:
    _produce(bootstrap_servers, topic, partitions=1)  # batches of many records each (linger)
    reader = TopicReader(TopicSource(bootstrap_servers, topic, group_id=None, batch_size=500))
    try:
        reader.assign({}, [0])
        taken: list[Record] = []
        for _ in range(400):
            polled = reader.poll_once(500, 7)
            taken.extend(polled)
            if polled:
                assert reader._consumer.position(reader.partitions[0]) == polled[-1].offset + 1
            if len(taken) >= 300:
                break
        assert [r.offset for r in taken] == list(range(300))
    finally:
        reader.close()
