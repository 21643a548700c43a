"""The live parser (projector/live_parse.py): batches prepared in its child process are the batches the
projector would have prepared itself, and a child that dies or is not ready yet costs nothing but speed."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator

import pytest

import projector.live_parse
from projector.live_parse import LiveParser
from projector.prepare import prepare
from projector.records import Record
from tests.support.event_values import assert_same_batches
from tests.support.events import stream, to_records
from tests.support.faults import wait_until

GARBAGE = [b"{not json", b"", b"[]", b'{"type": "chat.turn.recorded", "version": 1}', "é".encode("latin-1")]


def _records(count: int, seed: int) -> list[Record]:
    """A stream's events, with duplicates and bad events of its own, and some garbage bytes between them."""
    events: list[dict[str, object] | bytes] = list(stream(count, seed=seed, sessions=40))
    for i, junk in enumerate(GARBAGE):
        events.insert((i * 37) % len(events), junk)
    return to_records(events, partition=seed % 3, start=1000 * seed)


@pytest.fixture
def parser() -> Iterator[LiveParser]:
    parser = LiveParser()
    parser.start()
    try:
        yield parser
    finally:
        parser.close()


def _ready(parser: LiveParser) -> None:
    wait_until(parser.ready, "the live parse process to be ready", 60)


def test_a_batch_prepared_in_the_child_is_the_batch_prepared_here(parser: LiveParser) -> None:
    _ready(parser)
    for seed, count in ((1, 600), (2, 1), (3, 2500)):
        records = _records(count, seed)
        assert parser.ready()  # this batch goes to the child
        prepared = parser.prepare(records)
        assert prepared.rejections, "the batch should hold bad events for the comparison to mean something"
        assert_same_batches(prepare(records), prepared)


def test_a_batch_sent_before_the_child_is_ready_is_prepared_here() -> None:
    parser = LiveParser()
    try:
        assert not parser.ready()  # nothing started
        records = _records(50, 4)
        assert_same_batches(prepare(records), parser.prepare(records))  # starts the child, prepares here meanwhile
        _ready(parser)
    finally:
        parser.close()


def test_the_child_sees_the_ip_policy_of_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_ANALYTICS_IP_POLICY", "drop")
    parser = LiveParser()
    parser.start()
    try:
        _ready(parser)
        records = _records(400, 5)
        prepared = parser.prepare(records)
        assert_same_batches(prepare(records), prepared)
        assert set(prepared.turns.column("ip_address").to_pylist()) == {None}
    finally:
        parser.close()


def test_a_child_killed_between_batches_is_replaced_and_no_batch_is_lost(
    parser: LiveParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projector.live_parse, "RESTART_AFTER_S", 0.5)
    _ready(parser)
    first = parser._process
    first.kill()
    first.join(10)
    records = _records(300, 6)
    assert_same_batches(prepare(records), parser.prepare(records))  # the dead child's batch, prepared here
    assert not parser.ready()
    time.sleep(0.6)
    assert_same_batches(prepare(records), parser.prepare(records))  # starts a new child, prepares here meanwhile
    _ready(parser)
    assert parser._process is not first
    assert_same_batches(prepare(records), parser.prepare(records))


def test_close_stops_the_child(parser: LiveParser) -> None:
    _ready(parser)
    child = parser._process
    parser.close()
    child.join(10)
    assert not child.is_alive()


def test_a_ctrl_c_that_reaches_the_child_leaves_it_parsing(caplog: pytest.LogCaptureFixture) -> None:
    # Ctrl-C at a terminal sends SIGINT to `serve` and to its children alike; `serve` then folds its last
    # batch, which must still find the child (its parent alone ends it). The child starts as under a
    # terminal, with SIGINT not ignored, however this test process was started: a job started in the
    # background with `&` ignores SIGINT, and so does every child it starts.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = LiveParser()
    try:
        parser.start()  # spawned now, with the disposition above
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        _ready(parser)
        child = parser._process
        os.kill(child.pid, signal.SIGINT)
        time.sleep(0.5)  # a child that let the signal through has died of it by now
        records = _records(300, 7)
        with caplog.at_level(logging.WARNING, logger="projector.live_parse"):
            assert_same_batches(prepare(records), parser.prepare(records))
        assert child.is_alive() and parser._process is child
        assert not caplog.records, [r.getMessage() for r in caplog.records]
    finally:
        parser.close()


def test_a_child_whose_projector_stopped_before_it_was_ready_ends_quietly() -> None:
    # A server stopped while its parse process starts: the pipe is closed before the child says it is
    # ready. It must end as stopped (exit status 0), not die of the closed pipe with a traceback (1).
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    ours.close()
    child = context.Process(target=projector.live_parse._child_main, args=(theirs,))
    child.start()
    theirs.close()
    child.join(60)
    assert child.exitcode == 0
