"""Rows of list pages remembered across projector commits (api.row_cache) are served only while they are
the row: every update the fold makes to a turn shows on the next page, and an erased turn never comes
back from memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.row_cache import RowCache, rows, serving
from projector.fold import apply_batch
from schemas.readmodel import connect
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, counters, make_client
from tests.support.events import click, erasure, feedback, review, to_records, turn

PREFIX = "/api/anonymous-chat-interactions"
AT = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
OFFERING = "7f1c2a9e-5d1b-4c8e-9a3f-2b6d8e4f1a0c"


def _row_counts(client: Any) -> tuple[int, ...]:
    return counters(client, "chat_analytics_row_cache_hits_total", "chat_analytics_row_cache_misses_total")


def _page(client: Any) -> list[dict[str, Any]]:
    response = client.get(f"{PREFIX}/?page_size=10", headers=AUTH)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _whole(client: Any) -> list[dict[str, Any]]:
    """The same turns as a whole transcript, newest first: read in one statement, never from the row cache."""
    response = client.get(f"{PREFIX}/by-session/s1/?o=-created", headers=AUTH)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_every_update_of_a_served_row_shows_on_the_next_page(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    first = turn("s1", at=AT, offering_uuids=[OFFERING], result_count=1)
    second = turn("s1", at=AT + timedelta(minutes=1))
    apply_batch(con, to_records([first, second]))
    client = make_client(ReadModelHandle(con, tmp_path / "rm.duckdb"))
    assert _page(client) == _whole(client)
    offset = 2
    updates = [
        feedback(first, 1, at=AT + timedelta(minutes=2)),
        review(second, 5, at=AT + timedelta(minutes=3)),
        click(first, OFFERING, at=AT + timedelta(minutes=4)),
        feedback(first, -1, "inaccurate", at=AT + timedelta(minutes=5)),
    ]
    for update in updates:
        hits_before, _ = _row_counts(client)
        apply_batch(con, to_records([update], start=offset))
        offset += 1
        page = _page(client)
        assert page == _whole(client), update["type"]
        # The turn the update did not touch came from memory: the cache was used, and was right to be.
        assert _row_counts(client)[0] == hits_before + 1, update["type"]
    by_uuid = {row["uuid"]: row for row in _page(client)}
    assert by_uuid[first["data"]["interaction_uuid"]]["feedback"]["score"] == -1
    assert by_uuid[first["data"]["interaction_uuid"]]["click_count"] == 1
    assert by_uuid[second["data"]["interaction_uuid"]]["feedback"]["llm_resolution_score"] == 5


def test_an_update_the_fold_refuses_leaves_the_rows_served_from_memory(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    first, second = turn("s1", at=AT), turn("s1", at=AT + timedelta(minutes=1))
    apply_batch(con, to_records([first, second]))
    client = make_client(ReadModelHandle(con, tmp_path / "rm.duckdb"))
    page = _page(client)
    hits, misses = _row_counts(client)
    # A -1 without a category is a dead letter: a commit (a new snapshot), but no row changed.
    apply_batch(con, to_records([feedback(first, -1, at=AT + timedelta(minutes=2))], start=2))
    assert _page(client) == page
    assert _row_counts(client) == (hits + 2, misses)


def test_an_erased_turn_never_comes_back_from_memory(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    before = turn("s1", at=AT, user_input="the words that were erased")
    apply_batch(con, to_records([before]))
    client = make_client(ReadModelHandle(con, tmp_path / "rm.duckdb"))
    assert [row["user_input"] for row in _page(client)] == ["the words that were erased"]
    cache = client.app.state.context.rows
    assert len(cache) == 1
    apply_batch(con, to_records([erasure(session_id="s1", at=AT + timedelta(minutes=1))], start=1))
    assert _page(client) == []
    assert len(cache) == 0  # the first request after the erasure emptied the cache: not even in memory
    # The same interaction recorded again after the erasure, under another event: whatever the fold
    # makes of it, the page is what the tables hold, never the row served before the erasure.
    again = turn(
        "s1", at=AT + timedelta(minutes=2), interaction_uuid=before["data"]["interaction_uuid"], user_input="new words"
    )
    apply_batch(con, to_records([again], start=2))
    assert _page(client) == _whole(client)
    assert "the words that were erased" not in client.get(f"{PREFIX}/?page_size=10", headers=AUTH).text


def test_rows_read_in_a_snapshot_older_than_a_removal_are_not_kept() -> None:
    cache = RowCache()
    key = ("a", "e1", 0)
    assert cache.seen(0, 0)
    cache.put_many(0, {key: ("a",)})
    assert cache.seen(0, 1)  # an erasure: the cache is emptied
    assert cache.get_many(0, [key]) == {}
    assert not cache.seen(0, 0)  # a request still in the snapshot before it may not add rows
    assert cache.seen(1, 0)  # a new file (blue/green switch): emptied again, its rows may be added


def test_a_page_read_in_a_snapshot_older_than_a_removal_adds_no_row() -> None:
    cache, key = RowCache(), ("a", "e1", 0)
    with serving(cache, 0, 1):  # a request has seen an erasure
        pass
    with serving(cache, 0, 0):  # one that began before it still reads the erased turn
        assert rows([key], lambda uuids: [("a",)]) == [("a",)]
    assert len(cache) == 0
    with serving(cache, 0, 1):
        rows([key], lambda uuids: [("a",)])
    assert len(cache) == 1


def test_the_cache_keeps_the_most_recently_used_rows_up_to_its_size() -> None:
    cache = RowCache(max_rows=2)
    a, b, c = ("a", "e1", 0), ("b", "e2", 0), ("c", "e3", 0)
    cache.put_many(0, {a: ("a",), b: ("b",)})
    assert cache.get_many(0, [a]) == {a: ("a",)}  # `a` is now the most recently used
    cache.put_many(0, {c: ("c",)})
    assert cache.get_many(0, [a, b, c]) == {a: ("a",), c: ("c",)}
    # Another file (a blue/green switch) has other rows under the same keys.
    assert cache.get_many(1, [a, c]) == {}
    assert (cache.hits, cache.misses) == (3, 3)
