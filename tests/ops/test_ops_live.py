"""The running service's side of operations, in-process with a real broker and real DuckDB files:
the start-up rebuild of a file of another read-model version (serving the old file meanwhile, or
503 when this release cannot read it), the staff-only admin endpoints, and metrics.

A test that must observe the service *during* a rebuild holds the rebuild at a gate (a wrapper
around the real `fold_to`), so what it checks does not depend on how fast the machine is."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import projector.bluegreen
from api.admin import admin_routes, can_serve
from api.app import create_app
from auth.tokens import TokenStore
from projector.bluegreen import LiveProjection
from projector.fold import apply_batch
from projector.snapshot import diff, table_rows
from projector.source import TopicSource
from schemas.readmodel import READMODEL_VERSION, connect, file_version
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, PREFIX, STAFF, SUPPORT, TOKENS
from tests.support.events import feedback, stream, turn
from tests.support.kafka import publish, read_back
from tests.support.readmodel import rows_of
from tests.support.testclient import TestClient

WAIT_S = 120.0  # a bound on waiting, never an assertion about speed


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class Gate:
    """Holds every rebuild fold until opened; counts how many are waiting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = threading.Event()
        self.waiting = 0
        real = projector.bluegreen.fold_to

        def gated(*args: Any, **kwargs: Any) -> int:
            self.waiting += 1
            assert self.open.wait(WAIT_S), "the test never opened the gate"
            return real(*args, **kwargs)

        monkeypatch.setattr(projector.bluegreen, "fold_to", gated)


class Served:
    """A handle, its projection and an API client over them, as `serve` wires them."""

    def __init__(self, path: Path, bootstrap_servers: str, topic: str) -> None:
        self.path = path
        self.handle = ReadModelHandle(connect(path), path)
        self.projection = LiveProjection(
            self.handle,
            source=TopicSource(bootstrap_servers, topic, group_id=None, batch_size=500),
            readable=can_serve,
        )
        tokens = TokenStore(TOKENS)
        app = create_app(
            self.handle,
            tokens=tokens,
            status_provider=self.projection.status,
            extra_routes=admin_routes(self.projection, tokens),
        )
        self.client = TestClient(app, base_url="http://testserver")

    def count(self) -> int:
        response = self.client.get(f"{PREFIX}/", headers=AUTH)
        assert response.status_code == 200, response.text
        return int(response.headers["x-result-count"])

    def rebuild_state(self) -> str:
        return self.client.get("/api/admin/rebuild/", headers=AUTH).json()["state"]

    def close(self) -> None:
        self.projection.stop()
        self.client.close()
        self.handle.close()


@pytest.fixture
def served(tmp_path: Path, bootstrap_servers: str, topic: str) -> Iterator[Callable[[Path], Served]]:
    made: list[Served] = []

    def make(path: Path) -> Served:
        s = Served(path, bootstrap_servers, topic)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch, served: Any) -> Iterator[Gate]:
    g = Gate(monkeypatch)
    yield g
    g.open.set()  # before `served` stops: a failed test must not leave the rebuild thread waiting


def older_file(path: Path, records: list[Any], *, break_it: bool = False) -> None:
    """A file folded by "the previous release": an older version in meta, and maybe a missing column."""
    con = connect(path)
    apply_batch(con, records)
    con.execute("UPDATE meta SET value = ? WHERE key = 'readmodel_version'", [str(READMODEL_VERSION - 1)])
    if break_it:
        con.execute("ALTER TABLE interactions DROP COLUMN search_terms")  # the API's `query` filter reads it
    con.close()


def test_an_older_file_is_served_while_the_start_up_rebuild_runs_then_the_new_one(
    bootstrap_servers: str, topic: str, tmp_path: Path, gate: Gate, served: Any
) -> None:
    publish(bootstrap_servers, topic, [turn(f"old-{i}") for i in range(30)])
    path = tmp_path / "rm.duckdb"
    older_file(path, read_back(bootstrap_servers, topic))
    publish(bootstrap_servers, topic, [turn(f"new-{i}") for i in range(20)])

    s: Served = served(path)
    s.projection.start()
    wait_for(lambda: gate.waiting > 0, "the rebuild to start folding")

    # Meanwhile: the old file answers, and the service says it is ready (stale, but consistent).
    assert s.count() == 30
    ready = s.client.get("/readyz")
    assert ready.status_code == 200
    # A topic this small is close enough to the head at once: the rebuild goes straight to switching.
    assert ready.json()["serving_previous_file"] is True
    assert ready.json()["rebuild"]["state"] in ("running", "switching")
    assert f"read-model version {READMODEL_VERSION - 1} -> {READMODEL_VERSION}" in ready.json()["rebuild"]["reason"]

    gate.open.set()
    wait_for(lambda: s.rebuild_state() == "done", "the rebuild to finish")
    wait_for(lambda: s.count() == 50, "the new file with every turn")
    assert file_version(s.handle.connection) == READMODEL_VERSION
    ready = s.client.get("/readyz").json()
    assert ready["ready"] is True and "serving_previous_file" not in ready
    assert not (tmp_path / "rm.duckdb.rebuild").exists() and not (tmp_path / "rm.duckdb.previous").exists()

    # The live projector follows the topic on the new file.
    publish(bootstrap_servers, topic, [turn("after-switch")])
    wait_for(lambda: s.count() == 51, "a turn published after the switch")


def test_an_older_file_this_release_cannot_read_answers_503_until_the_rebuild_is_done(
    bootstrap_servers: str, topic: str, tmp_path: Path, gate: Gate, served: Any
) -> None:
    events = list(stream(300, seed=4, sessions=20))
    publish(bootstrap_servers, topic, events)
    path = tmp_path / "rm.duckdb"
    older_file(path, read_back(bootstrap_servers, topic), break_it=True)

    s: Served = served(path)
    s.projection.start()
    wait_for(lambda: gate.waiting > 0, "the rebuild to start folding")

    listing = s.client.get(f"{PREFIX}/", headers=AUTH)
    assert listing.status_code == 503 and "rebuilt" in listing.json()["detail"]
    assert listing.headers["retry-after"]
    assert s.client.get(f"{PREFIX}/kpi/", headers=AUTH).status_code == 503
    ready = s.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["rebuild"]["state"] in ("running", "switching")
    # Auth still comes first.
    assert s.client.get(f"{PREFIX}/").status_code == 401

    gate.open.set()
    wait_for(lambda: s.rebuild_state() == "done", "the rebuild to finish")
    wait_for(lambda: s.client.get("/readyz").status_code == 200, "readiness")
    assert s.client.get(f"{PREFIX}/", params={"query": "answer"}, headers=AUTH).status_code == 200

    s.close()
    reference = connect(tmp_path / "reference.duckdb")
    apply_batch(reference, read_back(bootstrap_servers, topic))
    assert diff(table_rows(reference), rows_of(path)) == {}
    reference.close()


def test_admin_endpoints_are_staff_only_and_validate_their_parameters(
    bootstrap_servers: str, topic: str, tmp_path: Path, served: Any
) -> None:
    t = turn("s1", offering_uuids=["0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0a01"])
    publish(bootstrap_servers, topic, [t, b"\x00 not json", feedback(t, 1, session_id="elsewhere")])
    s: Served = served(tmp_path / "rm.duckdb")
    s.projection.start()
    wait_for(lambda: s.client.get("/readyz").status_code == 200, "readiness")
    c = s.client

    for path in ("/api/admin/rebuild/", "/api/admin/status/", "/api/admin/dead-letters/"):
        assert c.get(path).status_code == 401
        assert c.get(path, headers={"Authorization": f"Token {SUPPORT}"}).status_code == 403
    assert c.post("/api/admin/dead-letters/retry/", headers={"Authorization": f"Token {SUPPORT}"}).status_code == 403
    assert c.delete("/api/admin/rebuild/", headers=AUTH).status_code == 405
    assert c.post("/api/admin/status/", headers=AUTH).status_code == 405

    bad = c.get("/api/admin/dead-letters/", params={"reason": "gremlins", "limit": "0"}, headers=AUTH)
    assert bad.status_code == 400 and set(bad.json()) == {"reason", "limit"}
    assert c.post("/api/admin/dead-letters/retry/", params={"reason": "x"}, headers=AUTH).json().keys() == {"reason"}

    letters = c.get("/api/admin/dead-letters/", headers=AUTH).json()
    assert sorted(d["reason"] for d in letters) == ["invalid_json", "session_mismatch"]
    assert [(d["partition"], d["offset"]) for d in letters] == sorted((d["partition"], d["offset"]) for d in letters)
    raw = {base64.b64decode(d["value"]) for d in letters}
    assert b"\x00 not json" in raw
    only = c.get("/api/admin/dead-letters/", params={"reason": "invalid_json", "limit": "5"}, headers=AUTH).json()
    assert [d["reason"] for d in only] == ["invalid_json"]

    status = c.get("/api/admin/status/", headers=AUTH).json()
    assert status["dead_letters"] == {"invalid_json": 1, "session_mismatch": 1}
    assert status["events_applied"] == {"chat.turn.recorded": 1}
    assert status["lag_total"] == 0 and status["readmodel_version"] == READMODEL_VERSION
    assert sum(p["stored_offset"] for p in status["partitions"]) == 3

    retried = c.post("/api/admin/dead-letters/retry/", headers=AUTH)
    assert retried.status_code == 200
    assert retried.json()["offered"] == 2 and retried.json()["still_dead"] == {
        "invalid_json": 1,
        "session_mismatch": 1,
    }
    # The projector was paused for the retry and follows the topic again.
    publish(bootstrap_servers, topic, [turn("s2")])
    wait_for(lambda: s.count() == 2, "a turn published after the retry")


def test_a_second_rebuild_request_while_one_runs_is_409_and_metrics_show_progress(
    bootstrap_servers: str, topic: str, tmp_path: Path, gate: Gate, served: Any
) -> None:
    publish(bootstrap_servers, topic, list(stream(400, seed=8, sessions=20)))
    s: Served = served(tmp_path / "rm.duckdb")
    s.projection.start()
    wait_for(lambda: s.client.get("/readyz").status_code == 200, "readiness")
    metrics = s.client.get("/metrics").text
    assert "chat_analytics_rebuild_running 0" in metrics and "chat_analytics_rebuild_events_done 0" in metrics

    first = s.client.post("/api/admin/rebuild/", headers={"Authorization": f"Token {STAFF}"})
    assert first.status_code == 202 and first.json()["state"] == "running"
    wait_for(lambda: gate.waiting > 0, "the rebuild to start folding")
    second = s.client.post("/api/admin/rebuild/", headers=AUTH)
    assert second.status_code == 409 and second.json()["rebuild"]["state"] in ("running", "switching")
    assert "chat_analytics_rebuild_running 1" in s.client.get("/metrics").text
    assert s.client.post("/api/admin/dead-letters/retry/", headers=AUTH).status_code == 409

    gate.open.set()
    wait_for(lambda: s.rebuild_state() == "done", "the rebuild to finish")
    done = s.client.get("/api/admin/rebuild/", headers=AUTH).json()
    assert done["events_done"] == done["events_total"] == 400
    metrics = s.client.get("/metrics").text
    assert "chat_analytics_rebuild_running 0" in metrics and "chat_analytics_rebuild_events_done 400" in metrics
    assert 'chat_analytics_projector_events_applied_total{type="chat.turn.recorded"}' in metrics


@pytest.mark.parametrize("start_up", [False, True], ids=["asked-again", "start-up-retry"])
def test_a_rebuild_that_failed_half_way_is_continued_by_the_next_attempt_not_begun_again(
    bootstrap_servers: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: Any, start_up: bool
) -> None:
    # The first attempt folds half of the topic, then meets a broker gone away. The next attempt (the
    # operator asking again, or the start-up rebuild's own retry) must go on from the offsets the new file
    # holds, not fold everything again; and the file it switches to must equal a clean fold.
    events = list(stream(1500, seed=10, sessions=40))
    publish(bootstrap_servers, topic, events)
    path = tmp_path / "rm.duckdb"
    if start_up:
        older_file(path, read_back(bootstrap_servers, topic)[:100])
    monkeypatch.setattr(projector.bluegreen, "SWITCH_WITHIN", 50)  # catch up with fold_to, not in the switch
    real = projector.bluegreen.fold_to
    began_at: list[dict[int, int]] = []  # what the new file held when each catch-up fold began
    halves: dict[int, int] = {}

    def fails_half_way(con: Any, *, source: TopicSource, bounds: Any, **kwargs: Any) -> int:
        began_at.append(dict(con.execute("SELECT partition, next_offset FROM offsets").fetchall()))
        if len(began_at) == 1:
            halves.update({p: target // 2 for p, target in bounds.targets.items()})
            real(con, source=source, bounds=replace(bounds, targets=halves), **kwargs)
            raise ConnectionError("the broker went away")
        return real(con, source=source, bounds=bounds, **kwargs)

    monkeypatch.setattr(projector.bluegreen, "fold_to", fails_half_way)
    s: Served = served(path)
    s.projection.start()
    if not start_up:
        wait_for(lambda: s.client.get("/readyz").status_code == 200, "readiness")
        assert s.client.post("/api/admin/rebuild/", headers=AUTH).status_code == 202
        wait_for(lambda: s.rebuild_state() == "failed", "the first attempt to fail")
        failed = s.client.get("/api/admin/rebuild/", headers=AUTH).json()
        assert "the broker went away" in failed["error"], failed
        assert failed["resumable"] is True  # what `rebuild --live` tells the operator: ask again
        assert (tmp_path / "rm.duckdb.rebuild").exists()
        assert s.client.post("/api/admin/rebuild/", headers=AUTH).status_code == 202
    wait_for(lambda: s.rebuild_state() == "done", "the rebuild to finish")
    assert s.client.get("/api/admin/rebuild/", headers=AUTH).json()["resumable"] is False

    assert began_at[0] == {} and sum(halves.values()) > 500
    assert began_at[1] == halves  # the second attempt began where the first one stopped
    assert not (tmp_path / "rm.duckdb.rebuild").exists()
    s.close()
    reference = connect(tmp_path / "reference.duckdb")
    apply_batch(reference, read_back(bootstrap_servers, topic))
    assert diff(table_rows(reference), rows_of(path)) == {}
    reference.close()


@pytest.mark.parametrize("resumable", [True, False])
def test_rebuild_live_says_when_asking_again_continues_the_failed_rebuild(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], resumable: bool
) -> None:
    # What the operator reads when the server answers the rebuild's progress as the test above saw it.
    import cli.ops_cmd
    from cli.main import main

    failed = {"state": "failed", "error": "ConnectionError: the broker went away", "resumable": resumable}
    progress = {**failed, "events_done": 550_000, "events_total": 1_675_231}

    class Server:
        def call(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
            assert path == "/api/admin/rebuild/"
            return (202 if method == "POST" else 200), progress

    monkeypatch.setattr(cli.ops_cmd, "_client", lambda url, token: Server())
    assert main(["rebuild", "--live", "--url", "http://127.0.0.1:8000", "--token", "t"]) == 1
    err = capsys.readouterr().err
    assert "rebuild failed: ConnectionError: the broker went away" in err
    again = "Run this command again once the cause is gone: the rebuild continues from where this attempt stopped"
    assert (f"{again} (550,000 events)" in err) is resumable, err


def test_the_switch_holds_requests_only_to_swap_files_not_to_index_or_checkpoint(
    bootstrap_servers: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: Any
) -> None:
    # While requests are held (the handle's write side), only closing, renaming and opening may happen:
    # the new file must already have its serving index (making it took ~0.6 s at a million events) and
    # the served file's log must already be checkpointed (up to 256 MiB of it under traffic).
    import contextlib

    import duckdb

    path = tmp_path / "rm.duckdb"
    publish(bootstrap_servers, topic, list(stream(600, seed=12, sessions=30)))
    s: Served = served(path)
    s.projection.start()
    wait_for(lambda: s.client.get("/readyz").status_code == 200, "readiness")
    wal = Path(f"{path}.wal")
    assert wal.exists() and wal.stat().st_size > 0  # the live projector's commits, not checkpointed yet
    seen: dict[str, Any] = {}
    real_exclusive, real_swap = s.handle.exclusive, s.handle.swap

    @contextlib.contextmanager
    def exclusive() -> Iterator[None]:
        with real_exclusive():
            seen["log at the hold"] = wal.stat().st_size if wal.exists() else 0
            yield

    def swap(con: duckdb.DuckDBPyConnection, new_path: Any = None) -> duckdb.DuckDBPyConnection:
        indexes = con.execute("SELECT index_name FROM duckdb_indexes() WHERE table_name = 'interactions'").fetchall()
        seen.setdefault("indexes of the new file", sorted(name for (name,) in indexes))
        return real_swap(con, new_path)

    monkeypatch.setattr(s.handle, "exclusive", exclusive)
    monkeypatch.setattr(s.handle, "swap", swap)
    assert s.client.post("/api/admin/rebuild/", headers=AUTH).status_code == 202
    wait_for(lambda: s.rebuild_state() == "done", "the rebuild to finish")
    assert seen == {
        "log at the hold": 0,
        "indexes of the new file": ["interactions_session_id", "interactions_user_slug"],
    }


def test_a_rebuild_file_another_process_left_is_deleted_at_start_up(
    bootstrap_servers: str, topic: str, tmp_path: Path, served: Any
) -> None:
    # A leftover of another server (stopped mid-rebuild, maybe another release of the same read-model
    # version) is deleted at start-up: only this process knows what folded what it holds.
    publish(bootstrap_servers, topic, [turn(f"t-{i}") for i in range(10)])
    path = tmp_path / "rm.duckdb"
    leftover = connect(tmp_path / "rm.duckdb.rebuild")
    apply_batch(leftover, read_back(bootstrap_servers, topic)[:4])
    leftover.close()
    s: Served = served(path)
    s.projection.start()
    assert not (tmp_path / "rm.duckdb.rebuild").exists()
    wait_for(lambda: s.client.get("/readyz").status_code == 200, "readiness")
    assert s.client.post("/api/admin/rebuild/", headers=AUTH).status_code == 202
    wait_for(lambda: s.rebuild_state() == "done", "the rebuild to finish")
    assert s.count() == 10


def test_a_start_up_rebuild_that_fails_tries_again_since_nothing_else_follows_the_topic(
    bootstrap_servers: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: Any
) -> None:
    publish(bootstrap_servers, topic, [turn(f"t-{i}") for i in range(10)])
    path = tmp_path / "rm.duckdb"
    older_file(path, read_back(bootstrap_servers, topic)[:4])
    real = projector.bluegreen.log_bounds
    calls: list[int] = []

    def first_call_fails(*args: Any, **kwargs: Any) -> Any:
        # Fault injection around the real lookup: the first attempt meets a broker that went away.
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("broker gone for a moment")
        return real(*args, **kwargs)

    monkeypatch.setattr(projector.bluegreen, "log_bounds", first_call_fails)
    s: Served = served(path)
    s.projection.start()

    wait_for(lambda: s.rebuild_state() == "done", "the second attempt to finish")
    assert s.count() == 10
    progress = s.client.get("/api/admin/rebuild/", headers=AUTH).json()
    assert progress["error"] is None and len(calls) > 1
