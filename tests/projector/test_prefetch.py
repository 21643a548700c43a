"""The projector's prefetcher against a real broker: every record handed over once, in log order per
partition, parsed as `prepare` parses it; a seek drops what was read ahead; a failure reaches the writer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from projector.consumer import TopicReader
from projector.prefetch import Prefetcher
from projector.prepare import PreparedBatch, prepare
from projector.records import Record
from projector.source import TopicSource
from tests.support.events import stream
from tests.support.kafka import publish

EVENTS = 1_500
MAX_RECORDS = 200


def _prefetcher(
    bootstrap_servers: str, topic: str, parse: Callable[[Sequence[Record]], PreparedBatch] = prepare
) -> Prefetcher:
    source = TopicSource(bootstrap_servers, topic, group_id=None, batch_size=MAX_RECORDS)
    prefetcher = Prefetcher(TopicReader(source), parse, MAX_RECORDS)
    prefetcher.assign({}, prefetcher.partition_ids())
    return prefetcher


@pytest.fixture
def published(bootstrap_servers: str, topic: str) -> int:
    publish(bootstrap_servers, topic, list(stream(EVENTS, seed=5, sessions=30)))
    return EVENTS


def _records(batch: PreparedBatch) -> list[Record]:
    return [
        Record(*fields)
        for fields in zip(
            batch.topics, batch.partitions, batch.offsets, batch.keys, batch.values, batch.timestamps, strict=True
        )
    ]


def _take_until(prefetcher: Prefetcher, count: int) -> Iterator[PreparedBatch]:
    deadline = time.monotonic() + 60  # a bound on the wait, not a speed check
    taken = 0
    while taken < count:
        assert time.monotonic() < deadline, f"only {taken} of {count} records came"
        batch = prefetcher.take(0.5)
        if batch is not None:
            taken += len(batch)
            yield batch


def _offsets_by_partition(batches: Sequence[PreparedBatch]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for batch in batches:
        for partition, offset in zip(batch.partitions, batch.offsets, strict=True):
            out.setdefault(partition, []).append(offset)
    return out


def test_every_record_comes_once_in_log_order_parsed_as_prepare_parses_it(
    bootstrap_servers: str, topic: str, published: int
) -> None:
    prefetcher = _prefetcher(bootstrap_servers, topic)
    try:
        time.sleep(1.0)  # the thread reads ahead while nobody takes: no more than its bound waits
        batches = list(_take_until(prefetcher, published))
        assert prefetcher.take(0.5) is None, "nothing beyond the topic's records"
    finally:
        prefetcher.close()
    assert all(len(b) <= MAX_RECORDS for b in batches)
    offsets = _offsets_by_partition(batches)
    assert sum(map(len, offsets.values())) == published
    assert all(o == list(range(len(o))) for o in offsets.values()), "each partition whole, once, in order"
    # Each taken batch is what `prepare` makes of its records: merged pieces numbered as one batch.
    for batch in batches:
        expected = prepare(_records(batch))
        assert batch.events == expected.events
        assert batch.rejections == expected.rejections
        assert batch.turns.equals(expected.turns)


def test_assign_drops_what_was_read_ahead_and_starts_at_the_given_offsets(
    bootstrap_servers: str, topic: str, published: int
) -> None:
    prefetcher = _prefetcher(bootstrap_servers, topic)
    try:
        first = next(_take_until(prefetcher, 1))
        time.sleep(0.5)  # more is read ahead meanwhile, from the old positions
        start = {p: 10 * (p + 1) for p in range(3)}
        prefetcher.assign(start, [0, 1, 2])
        rest = list(_take_until(prefetcher, published - sum(start.values())))
    finally:
        prefetcher.close()
    assert len(first) > 0
    offsets = _offsets_by_partition(rest)
    assert sum(map(len, offsets.values())) == published - sum(start.values())
    assert all(o == list(range(start[p], start[p] + len(o))) for p, o in offsets.items())


def test_a_failure_on_the_thread_is_raised_by_take(bootstrap_servers: str, topic: str, published: int) -> None:
    def failing(records: Sequence[Record]) -> PreparedBatch:
        raise RuntimeError(f"cannot parse {len(records)} records")

    prefetcher = _prefetcher(bootstrap_servers, topic, failing)
    try:
        with pytest.raises(RuntimeError, match="cannot parse"):
            list(_take_until(prefetcher, 1))
    finally:
        prefetcher.close()


def test_a_take_also_hands_over_what_arrived_since_the_threads_last_poll(bootstrap_servers: str, topic: str) -> None:
    # At the head of the topic the thread polls once per round (`ROUND_S`). What arrives between its
    # last poll and the writer's take is in that take, not left for the batch after: a take while a
    # parsed piece waits asks the thread for one more poll first.
    early, waiting, late = list(stream(3, seed=11, sessions=1))[:3]
    parses = 0
    late_sent = threading.Event()

    def parse(records: Sequence[Record]) -> PreparedBatch:
        nonlocal parses
        parses += 1
        if parses == 2:  # `waiting` is parsed: `late` reaches the broker after the poll that read it
            publish(bootstrap_servers, topic, [late])
            late_sent.set()
        return prepare(records)

    publish(bootstrap_servers, topic, [early])
    prefetcher = _prefetcher(bootstrap_servers, topic, parse)
    try:
        assert len(next(_take_until(prefetcher, 1))) == 1  # `early`; the thread now runs
        publish(bootstrap_servers, topic, [waiting])
        assert late_sent.wait(30), "the thread never parsed `waiting`"
        taken = prefetcher.take(0.5)
    finally:
        prefetcher.close()
    assert taken is not None
    assert sorted(taken.offsets) == [1, 2], "`waiting` and `late` in one take"
