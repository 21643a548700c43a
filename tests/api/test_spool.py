"""A streamed body's spool (api.spool): what one thread puts, another gets, in order, from memory and then
from its temporary file; the writer's error reaches the reader where it happened; a reader that goes
stops the writer."""

from __future__ import annotations

import random
import threading

import pytest

from api.spool import Spool


def _get_all(spool: Spool) -> bytes:
    out = b""
    while (data := spool.get()) is not None:
        out += data
    return out


def _parts(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(1, 5000)) for _ in range(400)]


def _write(spool: Spool, parts: list[bytes]) -> threading.Thread:
    def write() -> None:
        for part in parts:
            assert spool.put(part)
        spool.finish()

    writer = threading.Thread(target=write)
    writer.start()
    return writer


def test_a_reader_that_keeps_up_gets_everything_from_memory() -> None:
    parts = _parts(7)
    spool = Spool(memory_bytes=20_000)  # a few parts at a time: the writer waits for room
    writer = _write(spool, parts)
    assert _get_all(spool) == b"".join(parts)
    writer.join(10)
    assert spool._file is None


def test_a_reader_that_stops_does_not_hold_the_writer_and_gets_everything_in_order() -> None:
    parts = _parts(8)
    spool = Spool(memory_bytes=20_000, patience_s=0.2)
    writer = _write(spool, parts)
    writer.join(10)  # the writer is done although nothing was taken: the rest went to the file
    assert not writer.is_alive()
    file = spool._file
    assert file is not None
    assert _get_all(spool) == b"".join(parts)
    spool.abandon()
    assert file.closed  # both ends done


def test_the_writers_error_comes_after_what_was_put_before_it() -> None:
    spool = Spool(memory_bytes=10, patience_s=0)
    spool.put(b"0123456789")  # memory
    spool.put(b"abc")  # the file
    spool.finish(RuntimeError("the read failed"))
    assert spool.get() == b"0123456789"
    assert spool.get() == b"abc"
    with pytest.raises(RuntimeError, match="the read failed"):
        spool.get()


def test_a_reader_that_goes_stops_the_writer_and_an_empty_body_ends_at_once() -> None:
    spool = Spool()
    assert spool.put(b"x")
    spool.abandon()
    assert not spool.put(b"y")
    spool.finish()

    empty = Spool()
    empty.finish()
    assert empty.get() is None
