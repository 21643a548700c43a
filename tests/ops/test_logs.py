"""Logs: kafka-python quiet unless asked, JSON lines on request, a request id per HTTP request, no token.

Run as a user runs them: `chat-analytics project` and `chat-analytics serve` as processes, their
stderr read back whole.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from loopback.ports import free_port
from tests.support import REPO
from tests.support.events import turn
from tests.support.kafka import publish
from tests.support.serve import wait_for

TOKEN = "s3cret-staff-token-never-logged"
WRONG_TOKEN = "an0ther-secret-that-is-wrong"


def _environment(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_ANALYTICS_LOG")}
    environment.pop("CHAT_ANALYTICS_KAFKA_LOG_LEVEL", None)
    environment.update(extra)
    return environment


def _project(tmp_path: Path, bootstrap_servers: str, topic: str, *flags: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "project", "--until-caught-up", "--no-parse-process"]
        + ["--bootstrap-servers", bootstrap_servers, "--topic", topic, "--db", str(tmp_path / "rm.duckdb"), *flags],
        cwd=REPO,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_kafka_python_logs_only_warnings_unless_asked(tmp_path: Path, bootstrap_servers: str, topic: str) -> None:
    publish(bootstrap_servers, topic, [turn(session_id="s-logs")])
    quiet = _project(tmp_path / "quiet", bootstrap_servers, topic)
    assert "caught up: 1 records" in quiet  # the service's own INFO lines are there
    assert not re.search(r" INFO kafka\.", quiet), quiet

    loud = _project(tmp_path / "loud", bootstrap_servers, topic, "--kafka-log-level", "INFO")
    assert re.search(r" INFO kafka\.", loud), loud


def test_json_lines_with_a_request_id_and_never_the_token(tmp_path: Path) -> None:
    port = free_port()
    environment = _environment(
        CHAT_ANALYTICS_API_TOKENS=f"{TOKEN}:staff",
        CHAT_ANALYTICS_TOKENS_FILE=str(tmp_path / "tokens.json"),
        CHAT_ANALYTICS_LOG_FORMAT="json",
        CHAT_ANALYTICS_LOG_LEVEL="DEBUG",
    )
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--no-projector", "--access-log", "--port", str(port)]
            + ["--db", str(tmp_path / "rm.duckdb")],
            cwd=REPO,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/livez").status_code == 200, "/livez", proc)
        kpi = f"{base}/api/anonymous-chat-interactions/kpi/"
        given = httpx.get(kpi, headers={"Authorization": f"Token {TOKEN}", "X-Request-ID": "lb-7f3a.42"})
        assert given.status_code == 200
        assert given.headers["X-Request-ID"] == "lb-7f3a.42"
        bearer = httpx.get(kpi, headers={"Authorization": f"Bearer {TOKEN}"})
        refused = httpx.get(kpi, headers={"Authorization": f"Token {WRONG_TOKEN}", "X-Request-ID": "a b <script>"})
        assert refused.status_code == 401
        made = {bearer.headers["X-Request-ID"], refused.headers["X-Request-ID"]}
        assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made) and len(made) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    text = stderr.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in lines)
    by_id = {entry.get("request_id"): entry for entry in lines if entry["logger"] == "uvicorn.access"}
    assert "/kpi/" in by_id["lb-7f3a.42"]["message"] and '" 200' in by_id["lb-7f3a.42"]["message"]
    assert made <= by_id.keys()
    assert TOKEN not in text and WRONG_TOKEN not in text
