"""Cache misses of one kind asked at the same time, answered together (api.coalescing): each request gets
its own answer, equal to the one it gets alone, and a read that fails fails no request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from api import queries
from api.coalescing import Coalescer
from api.encoding import dumps
from api.interactions_sql import SELECT_BY_KEYS, SELECT_SESSIONS_TURNS
from api.params import Filters
from schemas.events import TURN_RECORDED
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, build_read_model, make_client
from tests.support.events import stream

PREFIX = "/api/anonymous-chat-interactions"


class Reads:
    """A read of questions that records each batch, can be held until released, and fails on `bad`."""

    def __init__(self, bad: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.bad = bad

    def __call__(self, questions: Sequence[str]) -> list[str]:
        self.batches.append(list(questions))
        self.release.wait(10)
        if self.bad in questions:
            raise RuntimeError("unreadable")
        return [q.upper() for q in questions]


def _ask_in_threads(coalescer: Coalescer[str], reads: Reads, questions: list[str]) -> dict[str, Any]:
    """Each question asked from a thread of its own, one after the other has queued."""
    answers: dict[str, Any] = {}
    threads = []
    for q in questions:
        queued = coalescer.waiting()
        t = threading.Thread(target=lambda q=q: answers.__setitem__(q, coalescer.ask(q, reads)))
        t.start()
        threads.append(t)
        _until(lambda queued=queued: coalescer.waiting() > queued or len(reads.batches) > len(threads) - 1)
    return {"threads": threads, "answers": answers}


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_lone_question_is_read_at_once_and_alone() -> None:
    reads = Reads()
    coalescer: Coalescer[str] = Coalescer(max_batch=8)
    assert coalescer.ask("a", reads) == (True, "A")
    assert coalescer.ask("b", reads) == (True, "B")
    assert reads.batches == [["a"], ["b"]]
    assert coalescer.counts() == (2, 2)


def _held(reads: Reads, max_batch: int) -> tuple[Coalescer[str], threading.Thread]:
    """A coalescer whose first batch ("a") is being read, held until `reads.release`."""
    reads.release.clear()
    coalescer: Coalescer[str] = Coalescer(max_batch=max_batch)
    first = threading.Thread(target=lambda: coalescer.ask("a", reads))
    first.start()
    _until(lambda: reads.batches == [["a"]])
    return coalescer, first


def test_questions_asked_while_a_batch_is_read_are_answered_together() -> None:
    reads = Reads()
    coalescer, first = _held(reads, max_batch=8)
    asked = _ask_in_threads(coalescer, reads, ["b", "c", "d"])
    assert coalescer.waiting() == 3
    reads.release.set()
    first.join(10)
    for t in asked["threads"]:
        t.join(10)
    assert reads.batches == [["a"], ["b", "c", "d"]]
    assert asked["answers"] == {"b": (True, "B"), "c": (True, "C"), "d": (True, "D")}
    assert coalescer.counts() == (2, 4) and coalescer.waiting() == 0


def test_a_batch_holds_at_most_max_batch_questions_and_every_question_is_answered() -> None:
    reads = Reads()
    coalescer, first = _held(reads, max_batch=2)
    asked = _ask_in_threads(coalescer, reads, list("bcdefg"))
    reads.release.set()
    for t in [first, *asked["threads"]]:
        t.join(10)
    assert [len(b) for b in reads.batches] == [1, 2, 2, 2]
    assert sorted(q for b in reads.batches for q in b) == list("abcdefg")
    assert asked["answers"] == {q: (True, q.upper()) for q in "bcdefg"}


def test_a_failed_read_fails_no_request_and_the_next_questions_are_read() -> None:
    reads = Reads(bad="x")
    coalescer, first = _held(reads, max_batch=8)
    asked = _ask_in_threads(coalescer, reads, ["x", "y"])
    reads.release.set()
    for t in [first, *asked["threads"]]:
        t.join(10)
    # Both were read together with the unreadable one: each is told to read alone.
    assert asked["answers"] == {"x": (False, None), "y": (False, None)}
    assert coalescer.ask("z", reads) == (True, "Z")
    assert coalescer.waiting() == 0


# -- through the API, on a real DuckDB file ----------------------------------------------------------------


class _SlowStatements:
    """A cursor whose statements that read several keys at once take at least `delay_s`: requests sent
    meanwhile queue up, as they do behind a read under load."""

    def __init__(self, cur: Any, delay_s: float) -> None:
        self._cur, self._delay_s = cur, delay_s

    def execute(self, statement: Any, *args: Any) -> Any:
        if getattr(statement, "query", statement) in (SELECT_BY_KEYS, SELECT_SESSIONS_TURNS):
            time.sleep(self._delay_s)
        return self._cur.execute(statement, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _slowed(handle: ReadModelHandle, delay_s: float) -> None:
    reading = handle.reading

    @contextmanager
    def slow() -> Iterator[Any]:
        with reading() as cur:
            yield _SlowStatements(cur, delay_s)

    handle.reading = slow  # type: ignore[method-assign]


def _single_path(handle: ReadModelHandle, path: str) -> tuple[int, Any]:
    """The status and JSON of what one request answers alone, without answers together: the single
    question's own queries (`queries.get_interaction`, `queries.short_whole_list`)."""
    with handle.reading() as cur:
        if path.startswith(f"{PREFIX}/by-session/"):
            session = path.removeprefix(f"{PREFIX}/by-session/").rstrip("/")
            page = queries.short_whole_list(cur, Filters(session_id=session), ("created",))
            assert page is not None
            return 200, orjson.loads(dumps(page.rows))
        body = queries.get_interaction(cur, path.removeprefix(f"{PREFIX}/").rstrip("/"))
        return (404, {"detail": "Not found."}) if body is None else (200, orjson.loads(dumps(body)))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ReadModelHandle, list[dict[str, Any]]]]:
    evs = list(stream(600, sessions=40))
    handle = build_read_model(tmp_path / "rm.duckdb", evs)
    yield handle, evs
    handle.close()


def _together_counts(body: str) -> dict[str, int]:
    counts = {}
    for line in body.splitlines():
        if line.startswith("chat_analytics_together_"):
            name, value = line.rsplit(" ", 1)
            counts[name] = int(value)
    return counts


def _keys(evs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    turns = [e["data"] for e in evs if e.get("type") == TURN_RECORDED and isinstance(e.get("data"), dict)]
    uuids = sorted({str(t["interaction_uuid"]) for t in turns if "interaction_uuid" in t})
    sessions = sorted({str(t["session_id"]) for t in turns if "session_id" in t})
    return uuids, sessions


def test_concurrent_misses_get_the_answers_each_gets_alone(
    served: tuple[ReadModelHandle, list[dict[str, Any]]],
) -> None:
    handle, evs = served
    uuids, sessions = _keys(evs)
    paths = [f"{PREFIX}/{u}/" for u in uuids[:40]] + [f"{PREFIX}/by-session/{s}/" for s in sessions]
    # Unknown keys and a key that is no uuid, asked in the same batches: a 404 each, an empty transcript.
    paths += [f"{PREFIX}/00000000-0000-4000-8000-000000000000/", f"{PREFIX}/not-a-uuid/", f"{PREFIX}/by-session/none/"]
    expected = {p: _single_path(handle, p) for p in paths}

    _slowed(handle, 0.05)
    client = make_client(handle)
    position = client.get(f"{PREFIX}/kpi/", headers=AUTH).headers["x-read-model-position"]
    got: dict[str, Any] = {}
    barrier = threading.Barrier(len(paths))

    def ask(path: str) -> None:
        barrier.wait(10)
        got[path] = client.get(path, headers=AUTH)

    threads = [threading.Thread(target=ask, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for path in paths:
        assert (got[path].status_code, got[path].json()) == expected[path], path
        assert got[path].headers["x-read-model-position"] == position

    counts = _together_counts(client.get("/metrics", headers=AUTH).text)
    reads = counts['chat_analytics_together_reads_total{kind="retrieve"}']
    questions = counts['chat_analytics_together_questions_total{kind="retrieve"}']
    assert questions == 40 + 2  # the key that is no uuid is a question too (its answer: none)
    assert reads < questions  # some were answered together
    session_reads = counts['chat_analytics_together_reads_total{kind="session_transcript"}']
    assert session_reads < counts['chat_analytics_together_questions_total{kind="session_transcript"}']


def _as_json(answers: list[Any]) -> Any:
    """Answers as JSON values (rows hold JSON text as orjson fragments, which compare by identity)."""

    def one(answer: Any) -> Any:
        if isinstance(answer, queries.Page):
            return [answer.total, one(answer.rows), answer.pagination, answer.last_page]
        return orjson.loads(dumps(answer))

    return [one(a) for a in answers]


@pytest.mark.parametrize("stream_rows", [queries.STREAM_ROWS, 3])
def test_the_batched_queries_equal_the_single_ones(
    served: tuple[ReadModelHandle, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, stream_rows: int
) -> None:
    """Every key, in batches of several sizes, with unknown keys, repeats and (at 3) sessions too long to be
    built, which both leave to the streamed path (None)."""
    monkeypatch.setattr(queries, "STREAM_ROWS", stream_rows)
    handle, evs = served
    uuids, sessions = _keys(evs)
    uuids += ["00000000-0000-4000-8000-000000000000", "not-a-uuid", uuids[0].upper(), uuids[1]]
    sessions += ["none", sessions[0]]
    streamed = 0
    with handle.reading() as cur:
        for size in (1, 2, 7, 16):
            for i in range(0, len(uuids), size):
                batch = uuids[i : i + size]
                together = queries.get_interactions(cur, batch)
                assert _as_json(together) == _as_json([queries.get_interaction(cur, u) for u in batch])
            for i in range(0, len(sessions), size):
                batch = sessions[i : i + size]
                alone = [queries.short_whole_list(cur, Filters(session_id=s), ("created",)) for s in batch]
                assert _as_json(queries.session_transcripts(cur, batch)) == _as_json(alone)
                streamed += sum(page is None for page in alone)
    assert (streamed > 0) == (stream_rows == 3)
