"""A rebuild's deferred `conversations` (projector/conversations.py): folding with the table deferred,
then settling it, gives every table the per-batch fold gives; a file left deferred is settled before the
projector service follows it, and `serve --no-projector` refuses it; a settle that fails leaves the file
as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest

import projector.conversations
from loopback.ports import free_port
from projector import conversations
from projector.fold import apply_batch
from projector.records import Record
from projector.service import ProjectorService
from projector.snapshot import diff, table_rows
from projector.source import TopicSource
from schemas.readmodel import connect
from tests.support.events import stream, to_records
from tests.support.faults import REPO, wait_until
from tests.support.kept import kept_and_recomputed
from tests.support.privacy import visitor_story

BATCH = 250


def _records() -> list[Record]:
    # Sessions spread over many batches, duplicates, early and bad events, and an erasure of a visitor
    # whose turns, feedback and clicks come before and after it.
    story, _ = visitor_story()
    return to_records([*stream(3000, seed=5, sessions=60), *story])


def _fold(path: Path, records: list[Record], *, deferred: bool) -> duckdb.DuckDBPyConnection:
    con = connect(path)
    if deferred:
        conversations.defer(con)
    for start in range(0, len(records), BATCH):
        apply_batch(con, records[start : start + BATCH])
    return con


def _is_deferred(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT 1 FROM meta WHERE key = ?", [conversations.DEFERRED_KEY]).fetchall())


def test_a_deferred_fold_then_settle_gives_the_tables_of_the_per_batch_fold(tmp_path: Path) -> None:
    records = _records()
    kept = _fold(tmp_path / "kept.duckdb", records, deferred=False)
    deferred = _fold(tmp_path / "deferred.duckdb", records, deferred=True)
    try:
        assert _is_deferred(deferred)
        # Deferred means left alone: only the erasure's own refresh wrote rows, for the sessions it touched.
        assert deferred.execute("SELECT count(*) FROM conversations").fetchall()[0][0] < 10
        assert diff(table_rows(kept), table_rows(deferred)).keys() == {"conversations"}

        assert conversations.settle(deferred) is True

        assert not _is_deferred(deferred)
        assert diff(table_rows(kept), table_rows(deferred)) == {}
        rows, recomputed = kept_and_recomputed(deferred)
        assert rows == recomputed and len(rows) > 50
        assert conversations.settle(deferred) is False  # nothing deferred any more
        # And the fold keeps the rows batch by batch again.
        more = to_records(list(stream(300, seed=6, sessions=10)), partition=1)
        apply_batch(deferred, more)
        apply_batch(kept, more)
        assert diff(table_rows(kept), table_rows(deferred)) == {}
    finally:
        kept.close()
        deferred.close()


def test_the_projector_service_settles_a_file_a_rebuild_left_deferred(tmp_path: Path) -> None:
    con = _fold(tmp_path / "deferred.duckdb", _records(), deferred=True)
    try:
        # No broker needed: the service reads its state from the file when it is made.
        ProjectorService(TopicSource("127.0.0.1:9", "chat.events", group_id=None, batch_size=500), con)

        assert not _is_deferred(con)
        rows, recomputed = kept_and_recomputed(con)
        assert rows == recomputed and len(rows) > 50
    finally:
        con.close()


def test_a_settle_that_fails_leaves_the_rows_and_the_mark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    con = _fold(tmp_path / "deferred.duckdb", _records(), deferred=True)
    try:
        before = con.execute("SELECT * FROM conversations ORDER BY ALL").fetchall()
        failing = "INSERT INTO conversations BY NAME SELECT error('disk gone') AS session_id"
        monkeypatch.setattr(projector.conversations, "REFRESH_ALL", failing)

        with pytest.raises(duckdb.Error, match="disk gone"):
            conversations.settle(con)

        assert _is_deferred(con)
        assert con.execute("SELECT * FROM conversations ORDER BY ALL").fetchall() == before
        monkeypatch.undo()
        assert conversations.settle(con) is True
        rows, recomputed = kept_and_recomputed(con)
        assert rows == recomputed
    finally:
        con.close()


def test_serve_without_a_projector_refuses_a_file_a_rebuild_left_deferred(tmp_path: Path) -> None:
    # Nothing would ever compute its conversations: the conversations endpoints would be empty beside
    # the turns. With its rows settled (a finished rebuild), the same file is served.
    path = tmp_path / "left.duckdb"
    _fold(path, _records()[:600], deferred=True).close()
    command = [sys.executable, "-m", "cli.main", "serve", "--no-projector", "--db", str(path), "--port", "0"]
    env = {**os.environ, "CHAT_ANALYTICS_API_TOKENS": "t1:staff"}
    refused = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "left by a rebuild that did not finish" in refused.stderr
    assert "without --no-projector" in refused.stderr
    assert f"chat-analytics rebuild --db {path} --resume" in refused.stderr
    con = connect(path)
    assert conversations.is_deferred(con)  # refused, not changed
    assert conversations.settle(con)
    assert not conversations.is_deferred(con)
    con.close()
    port = free_port()
    served = subprocess.Popen(
        [*command[:-1], str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Token t1"}) as http:
            answer = wait_until(
                lambda: served.poll() is None and http.get("/api/anonymous-chat-interactions/conversations/"),
                "serve --no-projector to answer",
                120,
            )
            assert answer.status_code == 200, answer.text
            assert int(answer.headers["x-result-count"]) > 0
    finally:
        served.terminate()
        served.wait(60)
