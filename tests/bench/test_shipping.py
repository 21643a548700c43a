"""`python -m bench.shipping`: every prepared event crosses from the child to the parent, each step is
timed, and the queue a rebuild ships through has the wider pipe."""

from __future__ import annotations

import fcntl
import multiprocessing as mp

from bench import shipping
from projector import pipeline


def test_every_event_is_shipped_and_each_step_timed() -> None:
    figures = shipping.measure(2_500, widened=True)  # raises unless all 2,500 arrive
    assert set(figures) == {"pickle", "put", "take", "unpickle"}
    assert figures["pickle"] > 0 and figures["unpickle"] > 0


def test_a_widened_queue_has_the_bigger_pipe_buffer() -> None:
    queue = mp.get_context("spawn").Queue()
    try:
        before = fcntl.fcntl(queue._reader.fileno(), fcntl.F_GETPIPE_SZ)  # type: ignore[attr-defined]
        pipeline.widen(queue)
        after = fcntl.fcntl(queue._reader.fileno(), fcntl.F_GETPIPE_SZ)  # type: ignore[attr-defined]
    finally:
        queue.close()
    assert before < pipeline.PIPE_BYTES == after
