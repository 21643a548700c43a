"""Answers that read one interaction, session or visitor outlive the commits that did not touch it
(serving.changes, api.snapshot_cache), and are never served after one that did."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path
from typing import Any

from api.snapshot_cache import SnapshotCache
from projector.apply import apply_prepared
from projector.fold import apply_batch
from projector.prepare import prepare
from schemas.readmodel import connect
from serving.changes import INTERACTION, SESSION, USER, ChangeLog
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, counters, make_client
from tests.support.events import erasure, feedback, stream, to_records, turn

PREFIX = "/api/anonymous-chat-interactions"


def test_what_changed_between_two_marks_is_the_union_along_the_chain() -> None:
    log = ChangeLog(generation=0)
    log.expect(10, 14, frozenset({(SESSION, "a")}))
    log.expect(14, 20, frozenset({(USER, "u")}))
    assert log.touched(10, 10) == frozenset()
    assert log.touched(10, 14) == {(SESSION, "a")}
    assert log.touched(10, 20) == {(SESSION, "a"), (USER, "u")}
    assert log.touched(14, 20) == {(USER, "u")}
    assert log.touched(10, 25) is None  # a commit after 20 filed nothing: unknown
    assert log.touched(12, 20) is None  # no change starts at 12


def test_a_commit_that_may_change_anything_or_that_failed_leaves_the_log_unable_to_say() -> None:
    log = ChangeLog(generation=0)
    log.expect(10, 14, None)  # an erasure
    assert log.touched(10, 14) is None
    failed = log.expect(14, 18, frozenset({(INTERACTION, "x")}))
    log.retract(failed)
    assert log.touched(14, 18) is None
    assert log.expect(18, 18, frozenset()) is None  # no mark moved: nothing to file


def test_the_cache_keeps_the_answers_of_untouched_keys_and_drops_the_rest() -> None:
    log = ChangeLog(generation=0)
    cache = SnapshotCache()
    cache.put((0, 10), "a", "A", depends=(SESSION, "a"), changes=log)
    cache.put((0, 10), "b", "B", depends=(SESSION, "b"), changes=log)
    cache.put((0, 10), "kpi", "K", changes=log)  # depends on everything
    log.expect(10, 12, frozenset({(SESSION, "b")}))
    assert cache.get((0, 12), "a", log) == (True, "A")
    assert cache.get((0, 12), "b", log) == (False, None)
    assert cache.get((0, 12), "kpi", log) == (False, None)
    # A write that filed nothing (a purge, a replayed dead letter): nothing is known, everything goes.
    assert cache.get((0, 13), "a", log) == (False, None)
    # Another file (a blue/green switch) never takes the old file's answers.
    cache.put((0, 13), "a", "A", depends=(SESSION, "a"), changes=log)
    assert cache.get((1, 13), "a", ChangeLog(generation=1)) == (False, None)


def _paths(uuids: list[str], sessions: list[str], users: list[str]) -> list[str]:
    return [
        *(f"{PREFIX}/{u}/" for u in uuids),
        *(f"{PREFIX}/{u.upper()}/" for u in uuids[:1]),  # another spelling of the same key
        *(f"{PREFIX}/by-session/{s}/" for s in sessions),
        *(f"{PREFIX}/by-session/{s}/?page=1&page_size=2" for s in sessions[:2]),
        *(f"{PREFIX}/by-user/{u}/" for u in users),
        *(f"{PREFIX}/by-user/{u}/?page=1&page_size=3&o=-created" for u in users),
        *(f"{PREFIX}/?user_slug={u}&page_size=5" for u in users),
        *(f"{PREFIX}/by-session/{s}/?user_slug={u}" for s, u in zip(sessions, users, strict=False)),
        f"{PREFIX}/?page_size=5",
        f"{PREFIX}/kpi/",
    ]


def test_every_remembered_answer_equals_one_computed_afresh_after_each_live_commit(tmp_path: Path) -> None:
    # A plausible stream (feedback, clicks, reviews on earlier turns, duplicates, bad events) folded in
    # small batches as the live projector folds them, filing each commit's changes, with erasures and a
    # fold that files nothing in between. After each commit, the same questions (some asked at every
    # commit, some new) to a server that remembers answers across commits and to one that has never
    # answered any must get the same bodies.
    events = list(stream(1_500, seed=11, sessions=40))
    rng = random.Random(5)
    con = connect(tmp_path / "rm.duckdb")
    handle = ReadModelHandle(con, tmp_path / "rm.duckdb")
    remembering = make_client(handle)
    seen: dict[str, list[str]] = {"uuids": [], "sessions": [], "users": []}
    offset = 0
    hits_after_commits = 0
    for batch_number, start in enumerate(range(0, len(events), 60)):
        batch: list[dict[str, Any]] = events[start : start + 60]
        if batch_number in (6, 15):  # a session and a visitor that every commit is asked about
            # An erasure covers the key's turns up to when it was requested: all so far.
            now = max(datetime.fromisoformat(e["occurred_at"]) for e in batch if isinstance(e, dict))
            batch.append(erasure(session_id=seen["sessions"][0], at=now))
            batch.append(erasure(user_slug=seen["users"][batch_number // 6], at=now))
        records = to_records(batch, start=offset)
        offset += len(records)
        if batch_number % 9 == 8:
            apply_batch(con, records)  # a write that files no change
        else:
            apply_prepared(con, prepare(records), changes=handle.changes)
        handle.positions.advance([("chat.events", 0, offset)])
        for e in batch:
            data = e.get("data") if isinstance(e, dict) else None
            if isinstance(data, dict) and e.get("type") == "chat.turn.recorded":
                for name, value in (("uuids", data["interaction_uuid"]), ("sessions", data["session_id"])):
                    if value not in seen[name]:
                        seen[name].append(value)
                if data.get("user_slug") and data["user_slug"] not in seen["users"]:
                    seen["users"].append(data["user_slug"])
        asked = _paths(
            seen["uuids"][:5] + rng.sample(seen["uuids"], 3),
            seen["sessions"][:3] + rng.sample(seen["sessions"], 2),
            seen["users"][:3] + rng.sample(seen["users"], 1),
        )
        fresh = make_client(handle)
        before = counters(remembering, "chat_analytics_answer_cache_hits_total")[0]
        for path in asked:
            got, expected = remembering.get(path, headers=AUTH), fresh.get(path, headers=AUTH)
            assert (got.status_code, got.content) == (expected.status_code, expected.content), path
        hits_after_commits += counters(remembering, "chat_analytics_answer_cache_hits_total")[0] - before
    # Each question was asked once per commit: only answers kept across commits can have been hits.
    assert hits_after_commits > 0


def test_an_erased_turn_is_not_served_from_memory(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    handle = ReadModelHandle(con, tmp_path / "rm.duckdb")
    client = make_client(handle)
    kept, erased = turn("s1", user_slug="a" * 64), turn("s2", user_slug="b" * 64)
    apply_prepared(con, prepare(to_records([kept, erased])), changes=handle.changes)
    paths = [f"{PREFIX}/{t['data']['interaction_uuid']}/" for t in (kept, erased)]
    assert [client.get(p, headers=AUTH).status_code for p in paths] == [200, 200]
    assert client.get(f"{PREFIX}/by-user/{'b' * 64}/", headers=AUTH).json() != []
    apply_prepared(con, prepare(to_records([erasure(user_slug="b" * 64)], start=2)), changes=handle.changes)
    assert [client.get(p, headers=AUTH).status_code for p in paths] == [200, 404]
    assert client.get(f"{PREFIX}/by-user/{'b' * 64}/", headers=AUTH).json() == []


def test_a_retrieve_is_served_from_memory_until_its_turn_changes(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    handle = ReadModelHandle(con, tmp_path / "rm.duckdb")
    client = make_client(handle)
    first = turn("s1")
    apply_prepared(con, prepare(to_records([first])), changes=handle.changes)
    path = f"{PREFIX}/{first['data']['interaction_uuid']}/"
    assert client.get(path, headers=AUTH).json()["feedback"] is None
    hits, misses = counters(
        client, "chat_analytics_answer_cache_hits_total", "chat_analytics_answer_cache_misses_total"
    )
    apply_prepared(con, prepare(to_records([turn("s2")], start=1)), changes=handle.changes)  # another session
    assert client.get(path, headers=AUTH).json()["feedback"] is None
    assert counters(client, "chat_analytics_answer_cache_hits_total")[0] == hits + 1
    apply_prepared(con, prepare(to_records([feedback(first, 1)], start=2)), changes=handle.changes)
    assert client.get(path, headers=AUTH).json()["feedback"]["score"] == 1
    assert counters(client, "chat_analytics_answer_cache_misses_total")[0] == misses + 1
