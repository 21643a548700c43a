"""Kafka's record batches (message format v2) decoded straight into `Record`s.

kafka-python decodes each record of a fetch in Python: a `DefaultRecord` object, a `ConsumerRecord` named
tuple of thirteen fields, and a varint function call per field. That was ~10 of the ~13 µs of CPU a
rebuild reader spent fetching each event (`python -m bench.stages`, cProfile of the fetch), and the
projector then copied each `ConsumerRecord` into a `Record`. `decode_batch` reads the same bytes in one loop per
batch (kafka-python's `decode_varint` for each integer) and makes the `Record` at once.

The format (https://kafka.apache.org/documentation/#recordbatch): a 61-byte batch header, then per record
its length, attributes, timestamp delta, offset delta, key, value and headers, every integer a zigzag
varint. Only the plain batch is decoded here: format v2, uncompressed, not a control batch. Anything else
(older formats, compressed batches) goes through kafka-python's own iteration, record by record, as
before (`FastPartitionRecords`); transaction markers and, read committed, the batches of aborted
transactions are skipped as kafka-python skips them. Headers are read past, as the projector never used
them. tests/projector/test_wire.py holds the decoder to kafka-python's on generated batches, and the
reader to a plain KafkaConsumer on a real broker.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from kafka.consumer.fetcher import Fetcher, IsolationLevel
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import decode_varint

from projector.records import Record

# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta, baseTimestamp,
# maxTimestamp, producerId, producerEpoch, baseSequence, recordsCount.
_HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = _HEADER.size  # 61
_COMPRESSION = 0x07
_LOG_APPEND_TIME = 0x08
_CONTROL = 0x20
# kafka-python's methods that `FastPartitionRecords` reuses to pass over aborted transactions.
_ABORT_BOOKKEEPING = ("_consume_aborted_transactions_up_to", "_contains_abort_marker", "_is_batch_aborted")


def is_plain(attributes: int) -> bool:
    """Whether a v2 batch with these attributes is one `decode_batch` reads: uncompressed, not a control batch."""
    return not attributes & (_COMPRESSION | _CONTROL)


def decode_batch(topic: str, partition: int, buffer: bytes) -> list[Record]:
    """The records of one plain v2 batch (`buffer`: the whole batch, header included) as `Record`s, with
    the timestamps and `None` for a negative one as `TopicReader` gives them. Raises CorruptRecordError
    when the bytes do not hold exactly the records the header announces."""
    if len(buffer) < HEADER_SIZE:
        raise CorruptRecordError(f"record batch of {len(buffer)} bytes is shorter than its header")
    header = _HEADER.unpack_from(buffer)
    base_offset, attributes, base_time, max_time, count = header[0], header[5], header[7], header[8], header[12]
    if header[3] != 2 or not is_plain(attributes):
        raise ValueError("decode_batch reads uncompressed v2 batches that are not control batches")
    log_append = attributes & _LOG_APPEND_TIME
    end = len(buffer)
    pos = HEADER_SIZE
    out: list[Record] = []
    append = out.append
    try:
        for _ in range(count):
            # Each integer is a zigzag varint, read by kafka-python's own `decode_varint`. Its loop written out
            # five times here was 0.3 µs a record faster (1.7 against 2.0 µs, demo-sized records), not worth
            # a second copy of the format's one rule.
            length, pos = decode_varint(buffer, pos)
            record_end = pos + length
            if length < 0 or record_end > end:
                raise CorruptRecordError(f"record of {length} bytes at {pos} overruns its batch of {end}")
            pos += 1  # the record's attributes: unused by the format so far
            # timestamp delta
            delta, pos = decode_varint(buffer, pos)
            timestamp = max_time if log_append else base_time + delta
            # offset delta
            delta, pos = decode_varint(buffer, pos)
            offset = base_offset + delta
            # key
            size, pos = decode_varint(buffer, pos)
            if size >= 0:
                key: bytes | None = buffer[pos : pos + size]
                pos += size
            else:
                key = None
            # value
            size, pos = decode_varint(buffer, pos)
            if size >= 0:
                value: bytes | None = buffer[pos : pos + size]
                pos += size
            else:
                value = None
            # headers: a count, then each key and value; read past, but checked against the record's length
            if buffer[pos] == 0:  # no header, the common case
                pos += 1
            else:
                pos = _past_headers(buffer, pos)
            if pos != record_end:
                fields = length + pos - record_end
                raise CorruptRecordError(f"record at offset {offset} is {length} bytes, its fields {fields}")
            append(Record(topic, partition, offset, key, value, timestamp if timestamp >= 0 else None))
    except (IndexError, ValueError) as e:  # bytes end inside a record, or a varint runs past 64 bits
        raise CorruptRecordError(f"record batch at offset {base_offset} ends inside a record or a number") from e
    if pos != end:
        left = end - pos
        raise CorruptRecordError(f"{left} bytes left after the {count} records of the batch at offset {base_offset}")
    return out


def _past_headers(buffer: bytes, pos: int) -> int:
    count, pos = decode_varint(buffer, pos)
    if count < 0:
        raise CorruptRecordError(f"invalid number of record headers {count}")
    for _ in range(count):
        size, pos = decode_varint(buffer, pos)
        if size < 0:
            raise CorruptRecordError(f"invalid negative header key size {size}")
        pos += size
        size, pos = decode_varint(buffer, pos)
        if size > 0:
            pos += size
    return pos


class FastPartitionRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """kafka-python's records of one fetched partition, as `Record`s: plain v2 batches through
    `decode_batch`, any other batch through kafka-python's records. Around them, what kafka-python's own
    `_unpack_records` does: CRCs checked, control batches (a transaction's markers) skipped, and, read
    committed, the batches of aborted transactions skipped with its own bookkeeping (the aborted
    transactions the broker lists in the fetch answer). Installed per consumer by `install`."""

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[Record]:
        topic, partition = tp.topic, tp.partition
        try:
            batch = records.next_batch()
            last_batch = None
            while batch is not None:
                last_batch = batch
                if self.check_crcs and not batch.validate_crc():
                    at = batch.base_offset
                    raise CorruptRecordError(f"Record batch for partition {tp} at offset {at} failed crc check")
                if batch.magic == 2:
                    self.leader_epoch = batch.leader_epoch
                    if self.isolation_level == IsolationLevel.READ_COMMITTED and batch.has_producer_id():
                        # kafka-python's own steps, in its order: the transactions begun up to this batch
                        # join the aborted producers; an abort marker ends its producer's; a transactional
                        # batch of an aborted producer is passed over, its offsets too.
                        self._consume_aborted_transactions_up_to(batch.last_offset)
                        if self._contains_abort_marker(batch):
                            self.aborted_producer_ids.discard(batch.producer_id)
                        elif self._is_batch_aborted(batch):
                            self.next_fetch_offset = batch.next_offset
                            batch = records.next_batch()
                            continue
                    if batch.is_control_batch:
                        self.next_fetch_offset = batch.next_offset
                        batch = records.next_batch()
                        continue
                if batch.magic == 2 and is_plain(batch.attributes):
                    decoded = decode_batch(topic, partition, bytes(batch._buffer))
                    self.records_read += len(decoded)
                    self.bytes_read += batch.size_in_bytes
                    # Record by record, as kafka-python: a poll that takes part of the batch leaves the
                    # consumer's position right after the last record it returned.
                    for record in decoded:
                        self.next_fetch_offset = record.offset + 1
                        yield record
                else:
                    for record in batch:
                        if self.check_crcs and not record.validate_crc():
                            at = record.offset
                            raise CorruptRecordError(f"Record for partition {tp} at offset {at} failed crc check")
                        self.records_read += 1
                        self.bytes_read += record.size_in_bytes
                        self.next_fetch_offset = record.offset + 1
                        timestamp = record.timestamp
                        yield Record(
                            topic,
                            partition,
                            record.offset,
                            record.key,
                            record.value,
                            timestamp if timestamp is not None and timestamp >= 0 else None,
                        )
                batch = records.next_batch()
            # As kafka-python: a v2 batch keeps its last offset even when compaction removed that record.
            if last_batch is not None and last_batch.magic == 2:
                self.next_fetch_offset = last_batch.next_offset
            self.drain()
        except StopIteration as e:  # a StopIteration inside a generator would end it silently
            raise RuntimeError("StopIteration raised unpacking messageset") from e


def install(consumer: Any) -> bool:
    """Makes `consumer` (a KafkaConsumer without deserializers) return `Record`s decoded by
    `FastPartitionRecords`; False, changing nothing, when this kafka-python has no such hook."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None or not hasattr(fetcher, "PartitionRecords"):
        return False
    if "_buffer" not in getattr(DefaultRecordBatch, "__slots__", ()):  # where a batch keeps its bytes
        return False
    if consumer.config.get("key_deserializer") or consumer.config.get("value_deserializer"):
        return False
    if not all(hasattr(fetcher.PartitionRecords, name) for name in _ABORT_BOOKKEEPING):
        return False
    fetcher.PartitionRecords = FastPartitionRecords
    return True
