"""Tokens under faults: a broken tokens file, concurrent `token create`, and who did an admin action."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from api.admin import admin_routes
from api.app import create_app
from auth.tokens import TokenFile, TokenStore
from tests.support import REPO
from tests.support.api_data import PREFIX, build_read_model
from tests.support.testclient import TestClient


def test_a_corrupt_tokens_file_is_a_logged_503_not_a_500(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.json"
    _record, token = TokenFile(path).create("staff")
    store = TokenStore([], TokenFile(path))
    handle = build_read_model(tmp_path / "rm.duckdb")
    with TestClient(create_app(handle, tokens=store)) as client:
        assert client.get(f"{PREFIX}/", headers={"Authorization": f"Token {token}"}).status_code == 200
        path.write_text('[{"id": "x", "role": "staff"')  # half a file, as a bad manual edit leaves it
        with caplog.at_level(logging.ERROR, logger="auth.tokens"):
            broken = [client.get(f"{PREFIX}/", headers={"Authorization": f"Token {token}"}) for _ in range(3)]
        assert [r.status_code for r in broken] == [503, 503, 503]
        assert broken[0].headers["Retry-After"]
        assert "tokens file" in broken[0].json()["detail"]
        logged = [r for r in caplog.records if "tokens file" in r.getMessage()]
        assert len(logged) == 1 and str(path) in logged[0].getMessage()  # once, not per request
        assert token not in caplog.text


def test_concurrent_token_creates_lose_no_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    command = [sys.executable, "-m", "cli.main", "token", "--file", str(path), "create", "--role", "ingest"]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(12)]
    outputs = [run.communicate(timeout=120)[0].decode() for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    printed = {line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("id ")}
    assert len(printed) == 12
    assert {r.id for r in TokenFile(path).records()} == printed


def test_token_list_on_a_broken_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("not json")
    run = subprocess.run(
        [sys.executable, "-m", "cli.main", "token", "--file", str(path), "list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert "cannot be read" in run.stderr and "Traceback" not in run.stderr


class _Backend:
    """The admin endpoints' work, done by nothing: this test is about who is logged."""

    def start_rebuild(self) -> tuple[bool, Mapping[str, Any]]:
        return True, {"state": "running"}

    def rebuild_progress(self) -> Mapping[str, Any]:
        return {"state": "running"}

    def admin_status(self) -> Mapping[str, Any]:
        return {}

    def dead_letters(self, reason: str | None, limit: int | None, after: Any = None) -> list[dict[str, Any]]:
        return []

    def retry_dead_letters(self, reason: str | None) -> tuple[bool, Mapping[str, Any]]:
        return True, {"offered": 0}


def test_admin_actions_are_logged_with_the_token_id_never_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record, token = TokenFile(tmp_path / "tokens.json").create("staff")
    store = TokenStore([("env-secret-value", "staff")], TokenFile(tmp_path / "tokens.json"))
    client = TestClient(Starlette(routes=admin_routes(_Backend(), store)))
    with caplog.at_level(logging.INFO, logger="chat_analytics.admin"):
        assert client.post("/api/admin/rebuild/", headers={"Authorization": f"Token {token}"}).status_code == 202
        retried = client.post("/api/admin/dead-letters/retry/", headers={"Authorization": "Token env-secret-value"})
        assert retried.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "chat_analytics.admin"]
    assert any("POST /api/admin/rebuild/" in line and f"token {record.id}" in line for line in lines), lines
    assert any("/dead-letters/retry/" in line and "token env-1" in line for line in lines), lines
    assert token not in caplog.text and "env-secret-value" not in caplog.text


def _position(letter: dict[str, Any]) -> tuple[str, int, int]:
    return letter["topic"], letter["partition"], letter["offset"]


class _ManyDeadLetters(_Backend):
    """1,234 dead letters, paged by log position as the live projection pages them."""

    def __init__(self) -> None:
        self.letters = [{"topic": "t", "partition": i % 3, "offset": i, "value": "eA=="} for i in range(1234)]
        self.letters.sort(key=_position)
        self.pages: list[int] = []

    def dead_letters(self, reason: str | None, limit: int | None, after: Any = None) -> list[dict[str, Any]]:
        rows = [d for d in self.letters if after is None or _position(d) > tuple(after)][:limit]
        self.pages.append(len(rows))
        return rows


def test_dead_letters_without_a_limit_are_streamed_a_page_at_a_time(tmp_path: Path) -> None:
    backend = _ManyDeadLetters()
    store = TokenStore([("staff-secret", "staff")])
    client = TestClient(Starlette(routes=admin_routes(backend, store)))
    response = client.get("/api/admin/dead-letters/", headers={"Authorization": "Token staff-secret"})
    assert response.status_code == 200
    assert response.json() == backend.letters  # every one, in log order, none twice
    assert max(backend.pages) <= 500 and len(backend.pages) == 3  # never all of them in memory at once
    limited = client.get("/api/admin/dead-letters/?limit=700", headers={"Authorization": "Token staff-secret"})
    assert limited.json() == backend.letters[:700]
