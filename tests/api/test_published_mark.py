"""A remembered answer served with the snapshot mark the last live commit published (serving.changes):
no statement while no commit has begun since, the mark read again as soon as one has, and never an
answer the file no longer gives. A miss computed on that mark without a transaction: read again in one
when a commit came in between."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from api.interactions_sql import SELECT_BY_KEYS, SELECT_ONE
from bench.miss_cost import time_statements
from projector import forget
from projector.fold import apply_batch
from projector.transaction import transaction
from schemas.readmodel import connect
from serving.changes import COMMITS, mark_rows
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, live_commit, make_client
from tests.support.events import erasure, feedback, stream, to_records, turn

PREFIX = "/api/anonymous-chat-interactions"


def _count_statements(handle: ReadModelHandle) -> list[list[Any]]:
    """The statements each read lease of `handle` runs from now on (their texts, with their CPU time)."""
    counted: list[list[Any]] = []
    time_statements(handle, counted)
    return counted


def _served(tmp_path: Path) -> tuple[duckdb.DuckDBPyConnection, ReadModelHandle]:
    con = connect(tmp_path / "rm.duckdb")
    return con, ReadModelHandle(con, tmp_path / "rm.duckdb")


def test_a_remembered_answer_after_a_live_commit_costs_no_statement(tmp_path: Path) -> None:
    con, handle = _served(tmp_path)
    client = make_client(handle)
    first = turn("s1")
    offset = live_commit(con, handle, [first, turn("s2")], 0)
    paths = [f"{PREFIX}/?page_size=5", f"{PREFIX}/kpi/", f"{PREFIX}/{first['data']['interaction_uuid']}/"]
    computed = [client.get(p, headers=AUTH) for p in paths]
    counted = _count_statements(handle)
    for path, answer in zip(paths, computed, strict=True):
        again = client.get(path, headers=AUTH)
        assert (again.status_code, again.content) == (answer.status_code, answer.content)
        # The position the answer is of comes from the published mark too.
        assert again.headers["x-read-model-position"] == answer.headers["x-read-model-position"]
    assert counted == []
    # The next live commit: the answers that depend on everything are computed again, then served
    # without a statement once more; the retrieve of a turn the commit did not touch stays remembered.
    live_commit(con, handle, [feedback(first, -1), turn("s3")], offset)
    fresh = make_client(handle)
    for path in paths:
        got = client.get(path, headers=AUTH)
        assert (got.status_code, got.content) == (200, fresh.get(path, headers=AUTH).content)
    counted.clear()
    for path in paths:
        client.get(path, headers=AUTH)
    assert counted == []


def test_any_other_commit_makes_the_requests_read_the_mark_again(tmp_path: Path) -> None:
    con, handle = _served(tmp_path)
    client = make_client(handle)
    offset = live_commit(con, handle, [turn("s1", user_slug="a" * 64), turn("s2")], 0)
    path = f"{PREFIX}/?page_size=5"
    client.get(path, headers=AUTH)
    assert handle.changes.current() is not None
    counted = _count_statements(handle)
    # A fold that files nothing (as the parallel catch-up's transactions do), then a retention purge:
    # each is a commit the change log knows nothing of.
    for write in (
        lambda: apply_batch(con, to_records([turn("s3")], start=offset)),
        lambda: forget.purge(con, 3650),
    ):
        write()
        counted.clear()
        got = client.get(path, headers=AUTH)
        assert got.content == make_client(handle).get(path, headers=AUTH).content
        assert counted, "the mark was not read again after a commit that published none"
        assert handle.changes.current() is None


def test_an_erasure_is_never_hidden_by_a_published_mark(tmp_path: Path) -> None:
    con, handle = _served(tmp_path)
    client = make_client(handle)
    slug = "b" * 64
    kept, erased = turn("s1", user_slug="a" * 64), turn("s2", user_slug=slug)
    offset = live_commit(con, handle, [kept, erased], 0)
    by_user = f"{PREFIX}/by-user/{slug}/"
    paths = [f"{PREFIX}/?page_size=5", by_user, f"{PREFIX}/{erased['data']['interaction_uuid']}/"]
    for _ in range(2):  # computed, then remembered
        assert [client.get(p, headers=AUTH).status_code for p in paths] == [200, 200, 200]
    assert client.get(by_user, headers=AUTH).json() != []
    live_commit(con, handle, [erasure(user_slug=slug)], offset)
    assert handle.changes.current() is not None
    assert client.get(by_user, headers=AUTH).json() == []
    assert client.get(paths[2], headers=AUTH).status_code == 404
    listed = [row["uuid"] for row in client.get(paths[0], headers=AUTH).json()]
    assert listed == [kept["data"]["interaction_uuid"]]


def test_the_published_mark_is_the_mark_read_after_each_commit(tmp_path: Path) -> None:
    # A plausible stream (duplicates, early and bad events, feedback, clicks, reviews) folded live in
    # small batches, with erasures: after every live commit, the mark its projector published is the
    # one a fresh statement reads.
    con, handle = _served(tmp_path)
    events = list(stream(800, seed=23, sessions=30))
    offset = 0
    published = 0
    for number, start in enumerate(range(0, len(events), 50)):
        batch = events[start : start + 50]
        if number == 7:
            batch.append(erasure(session_id=next(e["data"]["session_id"] for e in events if _is_turn(e))))
        offset = live_commit(con, handle, batch, offset)
        rows = handle.changes.current()
        if rows is not None:
            published += 1
            assert sorted(rows, key=repr) == sorted(mark_rows(handle.cursor()), key=repr)
    assert published == len(range(0, len(events), 50))


def test_a_commit_that_overlapped_another_publishes_nothing(tmp_path: Path) -> None:
    one, other = connect(tmp_path / "one.duckdb"), connect(tmp_path / "other.duckdb")
    with transaction(one) as alone:
        one.execute("INSERT INTO meta VALUES ('a', '1')")
    assert alone.sequence == COMMITS.value
    with transaction(one) as overlapped:
        one.execute("INSERT INTO meta VALUES ('b', '1')")
        with transaction(other) as inner:
            other.execute("INSERT INTO meta VALUES ('b', '1')")
        assert inner.sequence == COMMITS.value
    # Another commit ended while it ran: what it saw need not be what the process's files hold now.
    assert overlapped.sequence is None


def _is_turn(event: Any) -> bool:
    return isinstance(event, dict) and event.get("type") == "chat.turn.recorded"


class _Gate:
    """A cursor wrapper whose first statement `holds` picks waits for `proceed` once `entered`."""

    def __init__(self, holds: Callable[[str], bool]) -> None:
        self.holds = holds
        self.entered = threading.Event()
        self.proceed = threading.Event()
        self.passed = False

    def wrap(self, handle: ReadModelHandle) -> Callable[[], None]:
        reading = handle.reading
        gate = self

        class Gated:
            def __init__(self, cur: Any) -> None:
                self._cur = cur

            def execute(self, statement: Any, *args: Any) -> Any:
                if gate.holds(getattr(statement, "query", statement)) and not gate.passed:
                    gate.passed = True
                    gate.entered.set()
                    gate.proceed.wait(10)
                return self._cur.execute(statement, *args)

            def __getattr__(self, name: str) -> Any:
                return getattr(self._cur, name)

        @contextmanager
        def gated() -> Iterator[Any]:
            with reading() as cur:
                yield Gated(cur)

        handle.reading = gated  # type: ignore[method-assign]
        return lambda: setattr(handle, "reading", reading)


def _asked_across_a_commit(
    tmp_path: Path, holds: Callable[[str], bool], path: str, commit: Callable[[list[Any]], list[Any]]
) -> tuple[Any, Any, str]:
    """`path` asked of a server whose last live commit published its mark, held at its first statement
    `holds` picks while another live commit (`commit` of the first commit's events) is made. The answer,
    a fresh server's answer after that commit, and the position before it."""
    con = connect(tmp_path / "rm.duckdb")
    handle = ReadModelHandle(con, tmp_path / "rm.duckdb")
    events = [turn("s1"), turn("s2")]
    offset = live_commit(con, handle, events, 0)
    client = make_client(handle)
    before = client.get(f"{PREFIX}/kpi/", headers=AUTH).headers["x-read-model-position"]
    assert handle.changes.current() is not None  # so the miss is read without a transaction
    gate = _Gate(holds)
    restore = gate.wrap(handle)
    got: list[Any] = []
    asking = threading.Thread(target=lambda: got.append(client.get(path.format(*events), headers=AUTH)))
    asking.start()
    assert gate.entered.wait(10)
    live_commit(con, handle, commit(events), offset)
    gate.proceed.set()
    asking.join(10)
    restore()
    now = make_client(handle).get(path.format(*events), headers=AUTH)
    assert now.headers["x-read-model-position"] != before
    return got[0], now, before


def test_a_commit_while_a_batch_is_read_without_a_transaction_sends_it_to_one(tmp_path: Path) -> None:
    """A batch read on the mark the last live commit published must not be served when another commit
    came before its statement: it would give the new rows under the old position."""
    got, now, _before = _asked_across_a_commit(
        tmp_path,
        lambda query: query in (SELECT_ONE, SELECT_BY_KEYS),  # one uuid, or several
        PREFIX + "/{0[data][interaction_uuid]}/",
        lambda events: [feedback(events[0], 1)],
    )
    assert now.json()["feedback"]["score"] == 1
    assert (got.content, got.headers["x-read-model-position"]) == (now.content, now.headers["x-read-model-position"])


def test_a_commit_while_a_single_miss_is_read_without_a_transaction_sends_it_to_one(tmp_path: Path) -> None:
    """The same for any other miss read on the published mark: a list page's count and rows must be of one
    commit, and its position that commit's."""
    got, now, _before = _asked_across_a_commit(
        tmp_path,
        lambda query: "FROM daily_counters" in query,  # the list's count, its first statement
        PREFIX + "/?page_size=5",
        lambda events: [turn("s3")],
    )
    assert now.headers["x-result-count"] == "3"
    assert (got.content, got.headers["x-result-count"], got.headers["x-read-model-position"]) == (
        now.content,
        "3",
        now.headers["x-read-model-position"],
    )
