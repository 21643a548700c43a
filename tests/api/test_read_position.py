"""The read-model position: `X-Read-Model-Position` on every response, `min_position` (query or header)
answered from at least that position or after a bounded wait a 503, and pagination links that carry it.

Over the hand-built read model of tests/support/api_data.py, folded by the real fold into a real DuckDB file; a
"commit" here is one more batch folded by the same fold, then signalled as the projector does."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import httpx
import pytest

from api.app import create_app
from api.readers import read
from auth.tokens import TokenStore
from projector.fold import apply_batch
from schemas.position import InvalidPosition, Position, PositionBoard, topic_tag
from schemas.readmodel import READMODEL_VERSION
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, NOW, PREFIX, TOKENS, build_read_model, make_client
from tests.support.events import to_records, turn

ENDPOINTS = (
    f"{PREFIX}/",
    f"{PREFIX}/kpi/",
    f"{PREFIX}/budget/",
    f"{PREFIX}/by-user/",
    f"{PREFIX}/by-session/s1/",
    f"{PREFIX}/by-user/{'a' * 64}/",
    f"{PREFIX}/00000000-0000-4000-8000-000000000001/",
)
TAG = topic_tag("chat.events")
V = READMODEL_VERSION


@pytest.fixture
def handle(tmp_path: Path) -> ReadModelHandle:
    return build_read_model(tmp_path / "rm.duckdb")


def fold_more(handle: ReadModelHandle, start: int, count: int = 1) -> None:
    """One more committed batch on partition 0 (offsets `start`..), signalled as `serve`'s projector does."""
    records = to_records([turn(f"late-{start + i}") for i in range(count)], start=start)
    stats = apply_batch(handle.connection, records)
    handle.positions.advance(stats.offsets)


def test_tokens_compare_component_wise_and_round_trip() -> None:
    a = Position.parse(f"2.{TAG}.10.5")
    assert a.token() == f"2.{TAG}.10.5" and a.offsets == (10, 5)
    assert a.covers(Position.parse(f"2.{TAG}.10")) and a.covers(Position.parse(f"2.{TAG}"))
    assert not a.covers(Position.parse(f"2.{TAG}.9.6")), "every partition must be at least as far"
    assert not Position.parse(f"2.{TAG}.9.6").covers(a)
    assert not a.covers(Position.parse(f"3.{TAG}.1")), "a newer read-model version is not reached by an older file"
    assert not a.covers(Position.parse(f"2.{topic_tag('other')}.1")), "another topic's offsets mean nothing here"
    assert a.join(Position.parse(f"2.{TAG}.9.6.1")).token() == f"2.{TAG}.10.6.1"
    assert Position.of(2, "chat.events", {2: 7}).token() == f"2.{TAG}.0.0.7"
    for bad in ("", "2", f"2.{TAG}.", f"2.{TAG}.-1", "x.y.z", f"2.{TAG}.{2**63}", f"2.{TAG}." + "1." * 3000 + "1"):
        with pytest.raises(InvalidPosition):
            Position.parse(bad)


def test_every_response_carries_the_position_of_what_it_read(handle: ReadModelHandle) -> None:
    client = make_client(handle)
    position = f"{V}.{TAG}.23"  # the 23 events of the dataset, folded as offsets 0..22 of partition 0
    for path in ENDPOINTS:
        response = client.get(path, headers=AUTH)
        assert response.status_code == 200, path
        assert response.headers["x-read-model-position"] == position, path
    # Not only data: errors, probes and the schema carry it too (the last commit the process knows of).
    for path, status, headers in (
        (f"{PREFIX}/", 401, {}),
        (f"{PREFIX}/?page=x", 400, AUTH),
        ("/readyz", 200, {}),
        ("/healthz", 200, {}),
        ("/api/schema/", 200, {}),
        ("/nowhere", 404, {}),
    ):
        response = client.get(path, headers=headers)
        assert (response.status_code, response.headers["x-read-model-position"]) == (status, position), path
    fold_more(handle, start=23)
    assert client.get(f"{PREFIX}/kpi/", headers=AUTH).headers["x-read-model-position"] == f"{V}.{TAG}.24"
    assert client.get("/healthz").headers["x-read-model-position"] == f"{V}.{TAG}.24"


def test_a_bad_position_is_a_400_naming_the_parameter_on_every_endpoint(handle: ReadModelHandle) -> None:
    client = make_client(handle)
    for path in ENDPOINTS:
        response = client.get(path, params={"min_position": "yesterday"}, headers=AUTH)
        assert response.status_code == 400 and list(response.json()) == ["min_position"], path
        response = client.get(path, headers={**AUTH, "X-Min-Read-Model-Position": "1.2.3"})
        assert response.status_code == 400 and list(response.json()) == ["X-Min-Read-Model-Position"], path
    other = client.get(f"{PREFIX}/", params={"min_position": f"2.{topic_tag('other.topic')}.1"}, headers=AUTH)
    assert other.status_code == 400 and "another topic" in other.json()["min_position"][0]
    # Named together with any other bad parameter, in one 400.
    both = client.get(f"{PREFIX}/", params={"min_position": "x", "severity": "huge"}, headers=AUTH)
    assert set(both.json()) == {"min_position", "severity"}


def test_a_reached_position_answers_at_once_and_the_schema_documents_the_parameter(handle: ReadModelHandle) -> None:
    client = make_client(handle, min_position_wait_s=30.0)
    for token in (f"{V}.{TAG}.23", f"{V}.{TAG}.5", f"{V - 1}.{TAG}.23", f"{V}.{TAG}"):
        for how in ({"params": {"min_position": token}}, {"headers": {"X-Min-Read-Model-Position": token}}):
            started = time.monotonic()
            response = client.get(
                f"{PREFIX}/kpi/", headers={**AUTH, **how.get("headers", {})}, params=how.get("params")
            )
            assert response.status_code == 200 and time.monotonic() - started < 10
    schema = client.get("/api/schema/").json()
    for path, item in schema["paths"].items():
        if item["get"]["security"]:
            names = [p["name"] for p in item["get"]["parameters"]]
            assert "min_position" in names, path
            assert "X-Read-Model-Position" in item["get"]["responses"]["200"]["headers"], path
            assert "503" in item["get"]["responses"], path


def test_an_unreached_position_is_a_503_with_retry_after_once_the_wait_is_over(handle: ReadModelHandle) -> None:
    client = make_client(handle, min_position_wait_s=0.3)
    started = time.monotonic()
    response = client.get(f"{PREFIX}/", params={"min_position": f"{V}.{TAG}.24"}, headers=AUTH)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.headers["x-read-model-position"] == f"{V}.{TAG}.23"
    assert "behind min_position" in response.json()["detail"]
    # Partition 1 was never folded: a position with one record there is not reached either.
    assert client.get(f"{PREFIX}/", params={"min_position": f"{V}.{TAG}.0.1"}, headers=AUTH).status_code == 503


def test_waiters_hold_no_thread_and_are_answered_by_the_next_commit(handle: ReadModelHandle) -> None:
    # More waiting requests than the threadpool has threads (40): if a waiter held one, the plain
    # request below could not be answered until the waits ended.
    app = create_app(handle, tokens=TokenStore(TOKENS), clock=lambda: NOW, min_position_wait_s=60.0)
    waiters = 60

    async def scenario() -> tuple[list[httpx.Response], float, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=AUTH) as client:
            waiting = [
                asyncio.create_task(client.get(f"{PREFIX}/", params={"min_position": f"{V}.{TAG}.24"}))
                for _ in range(waiters)
            ]
            await asyncio.sleep(0.5)
            assert not any(task.done() for task in waiting)
            started = time.monotonic()
            plain = await client.get(f"{PREFIX}/kpi/")
            plain_s = time.monotonic() - started
            # The commit comes from another thread, as the projector's does.
            threading.Thread(target=fold_more, args=(handle, 23)).start()
            return await asyncio.wait_for(asyncio.gather(*waiting), 30), plain_s, plain

    answered, plain_s, plain = asyncio.run(scenario())
    assert plain.status_code == 200 and plain_s < 10, "a plain request waited behind the waiting ones"
    assert {r.status_code for r in answered} == {200}
    assert {r.headers["x-read-model-position"] for r in answered} == {f"{V}.{TAG}.24"}
    assert all(r.headers["x-result-count"] == "8" for r in answered)


def test_a_waiter_reads_again_only_after_a_commit_that_may_have_reached_its_position(
    handle: ReadModelHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file holds partition 0 up to offset 22 (next 23); the waiter wants offset 24 folded (next 25).
    import api.readers

    snapshots = []
    in_snapshot = api.readers._in_snapshot

    def counted(*args: object) -> object:
        snapshots.append(handle.positions.commits)
        return in_snapshot(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(api.readers, "_in_snapshot", counted)

    def work(cur: duckdb.DuckDBPyConnection) -> int:
        return int(cur.execute("SELECT count(*) FROM interactions").fetchone()[0])

    async def scenario() -> tuple[int, int, bool, int | None]:
        minimum = Position.parse(f"{V}.{TAG}.25")
        task = asyncio.create_task(read(handle, work, topic="chat.events", minimum=minimum, wait_s=30))
        await asyncio.sleep(0.2)
        before = len(snapshots)
        # A commit that stops one short: partition 0 is known to be at 24 now, so no read can reach 25.
        await asyncio.to_thread(fold_more, handle, 23)
        await asyncio.sleep(0.3)
        after_short = len(snapshots)
        await asyncio.to_thread(fold_more, handle, 24)
        answer = await asyncio.wait_for(task, 30)
        return before, after_short, answer.reached, answer.value

    before, after_short, reached, value = asyncio.run(scenario())
    assert before == 1, "the first read is made at once"
    assert after_short == 1, "a commit that left the position behind was read for nothing"
    assert reached and value == 9 and len(snapshots) == 2, "the two turns folded since (7 before)"


def test_the_board_knows_only_the_partitions_commits_named() -> None:
    board = PositionBoard()
    minimum = Position.parse(f"{V}.{TAG}.5.7")
    assert not board.behind("chat.events", minimum), "nothing known yet: a read must say"
    board.advance({("chat.events", 1): 6})
    assert board.behind("chat.events", minimum), "partition 1 is at 6, short of 7"
    assert not board.behind("other.topic", minimum)
    board.advance({("chat.events", 1): 7})
    assert not board.behind("chat.events", minimum), "partition 0 is not known: a read must say"


def test_page_links_ask_for_at_least_the_page_s_own_position(handle: ReadModelHandle) -> None:
    client = make_client(handle)
    first = client.get(f"{PREFIX}/", params={"page_size": 3, "min_position": f"{V}.{TAG}.1"}, headers=AUTH)
    position = first.headers["x-read-model-position"]
    links = [part.split(">")[0].lstrip(" <") for part in first.headers["link"].split(",")]
    for link in links:
        query = parse_qs(urlsplit(link).query)
        assert query["min_position"] == [position] and query["page_size"] == ["3"], link
    fold_more(handle, start=23)
    second = client.get(links[1], headers=AUTH)  # rel="next"
    assert second.status_code == 200
    assert Position.parse(second.headers["x-read-model-position"]).covers(Position.parse(position))


def test_csv_exports_wait_for_min_position_and_carry_their_own_position(handle: ReadModelHandle) -> None:
    client = make_client(handle, min_position_wait_s=0.2)
    export = client.get(f"{PREFIX}/", params={"format": "csv", "min_position": f"{V}.{TAG}.23"}, headers=AUTH)
    assert export.status_code == 200 and export.headers["x-read-model-position"] == f"{V}.{TAG}.23"
    assert export.headers["x-result-count"] == "7"
    ahead = client.get(f"{PREFIX}/by-user/", params={"format": "csv", "min_position": f"{V}.{TAG}.24"}, headers=AUTH)
    assert ahead.status_code == 503 and ahead.headers["retry-after"] == "1"
    fold_more(handle, start=23)
    export = client.get(f"{PREFIX}/", params={"format": "csv", "min_position": f"{V}.{TAG}.24"}, headers=AUTH)
    assert export.status_code == 200 and export.headers["x-read-model-position"] == f"{V}.{TAG}.24"
    assert export.headers["x-result-count"] == "8" and export.text.count("\n") == 9  # header line + 8 rows


def test_a_data_answer_carries_its_own_snapshot_s_position_not_the_latest_known(handle: ReadModelHandle) -> None:
    client = make_client(handle)
    # The board moved past the file by hand: a probe reports the board, a data answer what it read.
    handle.positions.advance({("chat.events", 0): 99})
    assert client.get("/healthz").headers["x-read-model-position"] == f"{V}.{TAG}.99"
    assert client.get(f"{PREFIX}/kpi/", headers=AUTH).headers["x-read-model-position"] == f"{V}.{TAG}.23"
    assert client.get(f"{PREFIX}/", headers=AUTH).headers["x-read-model-position"] == f"{V}.{TAG}.23"
