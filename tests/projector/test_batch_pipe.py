"""The pipes between a catch-up's readers and the writer (projector/batch_pipe.py), with real processes
started as a catch-up starts its readers (spawn): every message whole and in its reader's order, at most
`depth` batches on their way, and neither side left waiting when the other is gone."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

import pytest

from projector import batch_pipe, pipeline
from projector.prepare import PreparedBatch

CTX = mp.get_context("spawn")


def _payload(reader: int, n: int) -> bytes:
    # Sizes from two bytes to several times the pipe's buffer, each byte pair telling whose message it is.
    size = (n * 1_300_017) % (3 * batch_pipe.PIPE_BYTES)
    return bytes([reader, n % 256]) * (1 + size // 2)


def _send_batches(sending: Any, reader: int, count: int, slots: Any) -> None:
    out = batch_pipe.Sender(sending, slots)
    for n in range(count):
        out.send(batch_pipe.BATCH, _payload(reader, n))
    out.send(batch_pipe.DONE)
    out.close(flush=True)


def _start(target: Any, *args: Any) -> tuple[Any, Any]:
    receiving, sending = batch_pipe.open_pipe(CTX)
    child = CTX.Process(target=target, args=(sending, *args), daemon=True)
    child.start()
    sending.close()
    return child, receiving


def test_every_message_arrives_whole_and_in_its_readers_order() -> None:
    slots = CTX.BoundedSemaphore(3)
    started = [_start(_send_batches, reader, 12, slots) for reader in (1, 2)]
    out = batch_pipe.Receiver([end for _, end in started], slots)
    seen: dict[int, list[int]] = {1: [], 2: []}
    done = 0
    while done < 2:
        message = out.receive(timeout=30)
        assert message is not None, "no message within 30 s"
        kind, payload = message
        if kind == batch_pipe.DONE:
            done += 1
            continue
        assert kind == batch_pipe.BATCH
        data = bytes(payload)
        reader = data[0]
        n = len(seen[reader])
        assert data == _payload(reader, n)
        seen[reader].append(n)
    assert seen == {1: list(range(12)), 2: list(range(12))}
    assert out.receive(timeout=0.1) is None  # both pipes done and dropped
    for child, _ in started:
        child.join(10)
        assert child.exitcode == 0


def _count_sent(sending: Any, count: int, slots: Any, sent: Any) -> None:
    out = batch_pipe.Sender(sending, slots)
    for n in range(count):
        out.send(batch_pipe.BATCH, bytes(10))
        sent.value = n + 1
    out.send(batch_pipe.DONE)
    out.close(flush=True)


def test_a_reader_waits_while_every_slot_is_taken() -> None:
    slots = CTX.BoundedSemaphore(2)
    sent = CTX.Value("i", 0)
    child, end = _start(_count_sent, 6, slots, sent)
    out = batch_pipe.Receiver([end], slots)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and sent.value < 2:
        time.sleep(0.05)
    time.sleep(0.5)  # time enough for a third send, if slots did not hold it
    assert sent.value == 2
    message = out.receive(timeout=10)
    assert message is not None and message[0] == batch_pipe.BATCH
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sent.value < 3:
        time.sleep(0.05)
    assert sent.value == 3  # one read, one slot free again
    kinds = []
    while (message := out.receive(timeout=10)) is not None:
        kinds.append(message[0])
        if message[0] == batch_pipe.DONE:
            break
    assert kinds == [batch_pipe.BATCH] * 5 + [batch_pipe.DONE]
    child.join(10)
    assert child.exitcode == 0


def _die_after_one(sending: Any, slots: Any) -> None:
    out = batch_pipe.Sender(sending, slots)
    out.send(batch_pipe.BATCH, b"one")
    out.close(flush=True)
    os._exit(3)  # gone without saying it was done, as a reader killed by the OOM killer would be


def test_a_reader_that_dies_ends_its_pipe_with_an_error_not_a_wait() -> None:
    slots = CTX.BoundedSemaphore(2)
    child, end = _start(_die_after_one, slots)
    out = batch_pipe.Receiver([end], slots)
    message = out.receive(timeout=30)
    assert message is not None and bytes(message[1]) == b"one"
    began = time.monotonic()
    with pytest.raises(batch_pipe.ReaderGone):
        out.receive(timeout=30)
    assert time.monotonic() - began < 20
    child.join(10)
    assert child.exitcode == 3


def _send_until_refused(sending: Any, slots: Any, stop: Any, refused: Any) -> None:
    out = batch_pipe.Sender(sending, slots)
    while out.send(batch_pipe.BATCH, bytes(2 * batch_pipe.PIPE_BYTES), stop):
        pass
    refused.value = 1
    out.close(flush=False)


def test_a_reader_stops_sending_when_the_writer_has_gone() -> None:
    slots = CTX.BoundedSemaphore(4)
    stop, refused = CTX.Event(), CTX.Value("i", 0)
    child, end = _start(_send_until_refused, slots, stop, refused)
    out = batch_pipe.Receiver([end], slots)
    assert out.receive(timeout=30) is not None
    # The writer stops as `pipeline.catch_up` does: the readers' stop flag, then its ends closed.
    stop.set()
    out.close()
    child.join(20)
    assert child.exitcode == 0
    assert refused.value == 1


@pytest.mark.parametrize("ship", [pipeline.MODELS, pipeline.RAW])
def test_a_received_batch_outlives_the_buffer_it_came_in(ship: str) -> None:
    # The writer keeps a transaction's batches while it receives the next ones into the same buffer: what
    # it made of a payload must not read that buffer in place.
    from bench.live_fold import demo_records

    records = demo_records(400, seed=3)
    halves = [records[:200], records[200:]]
    receiving, sending = batch_pipe.open_pipe(CTX)
    slots = CTX.BoundedSemaphore(2)
    sender = batch_pipe.Sender(sending, slots)
    out = batch_pipe.Receiver([receiving], slots)
    try:
        for half in halves:
            assert sender.send(batch_pipe.BATCH, pipeline._ship(half, ship))
        first = out.receive(timeout=10)
        assert first is not None
        kept = pipeline._unship(first[1], ship)
        second = out.receive(timeout=10)  # into the same buffer
        assert second is not None
        again = pipeline._unship(pipeline._ship(halves[0], ship), ship)
        if ship == pipeline.RAW:
            assert kept.equals(again)
        else:
            assert snapshot_of(kept) == snapshot_of(again)
    finally:
        sender.close(flush=False)
        out.close()


def snapshot_of(batch: PreparedBatch) -> tuple[Any, ...]:
    return (batch.offsets, batch.values, batch.events, batch.rejections, batch.turns.to_pylist())
