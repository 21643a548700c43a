"""Answers remembered between projector commits (api.snapshot_cache) are never served after one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api.snapshot_cache import SnapshotCache
from projector.fold import apply_batch
from schemas.readmodel import connect
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, counters, make_client
from tests.support.events import feedback, to_records, turn

PREFIX = "/api/anonymous-chat-interactions"
AT = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)


def test_a_commit_between_two_identical_requests_shows_in_the_second(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    first = turn("s1", at=AT)
    apply_batch(con, to_records([first]))
    client = make_client(ReadModelHandle(con, tmp_path / "rm.duckdb"))
    for _ in range(2):  # the second time from the cache
        assert [r["uuid"] for r in client.get(f"{PREFIX}/", headers=AUTH).json()] == [first["data"]["interaction_uuid"]]
        assert client.get(f"{PREFIX}/kpi/", headers=AUTH).json()["interactions_total"] == 1
        assert client.get(f"{PREFIX}/{first['data']['interaction_uuid']}/", headers=AUTH).json()["feedback"] is None

    second = turn("s1", at=AT.replace(minute=5))
    apply_batch(con, to_records([second, feedback(first, 1)], start=1))

    listed = [r["uuid"] for r in client.get(f"{PREFIX}/", headers=AUTH).json()]
    assert listed == [second["data"]["interaction_uuid"], first["data"]["interaction_uuid"]]
    assert client.get(f"{PREFIX}/kpi/", headers=AUTH).json()["interactions_total"] == 2
    assert client.get(f"{PREFIX}/{first['data']['interaction_uuid']}/", headers=AUTH).json()["feedback"]["score"] == 1
    assert len(client.get(f"{PREFIX}/by-session/s1/", headers=AUTH).json()) == 2


def test_an_older_snapshot_never_replaces_the_newer_answers() -> None:
    cache = SnapshotCache()
    cache.put((0, 20), "k", "new")
    cache.put((0, 10), "k", "old")  # a slow request that began before the last commit
    assert cache.get((0, 20), "k") == (True, "new")
    assert cache.get((0, 10), "k") == (False, None)
    cache.put((1, 0), "k", "other file")  # a blue/green switch: a new generation
    assert cache.get((1, 0), "k") == (True, "other file")
    assert cache.get((0, 20), "k") == (False, None)


def test_the_same_question_in_the_same_snapshot_is_computed_once_while_it_runs() -> None:
    cache = SnapshotCache()
    mark = (0, 2)
    assert cache.claim(mark, "k") == (False, None)  # this caller computes
    answers: list[tuple[bool, Any]] = []
    waiter = threading.Thread(target=lambda: answers.append(cache.claim(mark, "k")))
    waiter.start()
    cache.put(mark, "k", "answer")
    cache.release(mark, "k")
    waiter.join(timeout=30)
    assert answers == [(True, "answer")]


def test_a_failed_computation_lets_the_next_caller_compute() -> None:
    cache = SnapshotCache()
    mark = (0, 2)
    assert cache.claim(mark, "k") == (False, None)
    answers: list[tuple[bool, Any]] = []
    waiter = threading.Thread(target=lambda: answers.append(cache.claim(mark, "k")))
    waiter.start()
    cache.release(mark, "k")  # no put: the work raised
    waiter.join(timeout=30)
    assert answers == [(False, None)]


def _cache_counts(client: Any) -> tuple[int, ...]:
    return counters(client, "chat_analytics_answer_cache_hits_total", "chat_analytics_answer_cache_misses_total")


def test_metrics_count_the_answers_served_from_the_cache_and_those_computed(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    first = turn("s1", at=AT)
    apply_batch(con, to_records([first]))
    client = make_client(ReadModelHandle(con, tmp_path / "rm.duckdb"))
    before = _cache_counts(client)
    client.get(f"{PREFIX}/", headers=AUTH)
    client.get(f"{PREFIX}/", headers=AUTH)
    assert _cache_counts(client) == (before[0] + 1, before[1] + 1)
    apply_batch(con, to_records([turn("s1", at=AT.replace(minute=5))], start=1))
    client.get(f"{PREFIX}/", headers=AUTH)  # a commit in between: computed again
    assert _cache_counts(client) == (before[0] + 1, before[1] + 2)


def test_a_commit_the_server_was_told_of_shows_in_the_next_answer(tmp_path: Path) -> None:
    # serve's projector tells the handle of each commit (positions.advance): a remembered answer is then
    # not even looked up before the request's transaction, and the answer computed there is the new one.
    con = connect(tmp_path / "rm.duckdb")
    first = turn("s1", at=AT)
    apply_batch(con, to_records([first]))
    handle = ReadModelHandle(con, tmp_path / "rm.duckdb")
    client = make_client(handle)
    path = f"{PREFIX}/{first['data']['interaction_uuid']}/"
    for _ in range(2):
        assert client.get(path, headers=AUTH).json()["feedback"] is None
    apply_batch(con, to_records([feedback(first, 1)], start=1))
    handle.positions.advance([("chat-events", 0, 2)])
    for _ in range(2):  # computed in the new snapshot, then remembered for it
        assert client.get(path, headers=AUTH).json()["feedback"]["score"] == 1
