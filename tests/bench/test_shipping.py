"""`python -m bench.shipping`: every prepared event crosses from the child to the parent both ways, each
step is timed, and the pipe a catch-up ships through has the wider buffer."""

from __future__ import annotations

import fcntl
import multiprocessing as mp

import pytest

from bench import shipping
from projector import batch_pipe


@pytest.mark.parametrize("way", [shipping.PIPE, shipping.QUEUE])
def test_every_event_is_shipped_and_each_step_timed(way: str) -> None:
    figures = shipping.measure(2_500, way)  # raises unless all 2,500 arrive
    assert set(figures) == {"pickle", "send", "take", "unpickle"}
    assert figures["pickle"] > 0 and figures["unpickle"] > 0


def test_a_catch_up_pipe_has_the_bigger_buffer() -> None:
    ctx = mp.get_context("spawn")
    plain, other = ctx.Pipe(duplex=False)
    receiving, sending = batch_pipe.open_pipe(ctx)
    try:
        before = fcntl.fcntl(plain.fileno(), fcntl.F_GETPIPE_SZ)
        after = fcntl.fcntl(receiving.fileno(), fcntl.F_GETPIPE_SZ)
    finally:
        for end in (plain, other, receiving, sending):
            end.close()
    assert before < batch_pipe.PIPE_BYTES == after
