"""`chat-analytics status` on a file (no broker needed for the file's own figures), and the progress
display of long commands in a terminal and in a log."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from cli.progress import Reporter
from projector.fold import apply_batch
from schemas.readmodel import READMODEL_VERSION, connect
from tests.support.events import click, feedback, review, to_records, turn, usage

OFFER = "0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0a01"


@pytest.fixture
def folded(tmp_path: Path) -> Path:
    path = tmp_path / "rm.duckdb"
    t1 = turn("s1", offering_uuids=[OFFER])
    t2 = turn("s2")
    early = turn("s3")  # never published: its feedback waits
    con = connect(path)
    apply_batch(
        con,
        to_records(
            [t1, t2, feedback(t1, 1), feedback(t1, -1, "other"), click(t1), click(t1), review(t2), usage(5, 6)],
            partition=0,
        ),
    )
    apply_batch(con, to_records([feedback(early, 1), b"nope", feedback(t2, 1, session_id="x")], partition=2))
    con.close()
    return path


def test_status_json_reports_what_the_file_holds(folded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json", "--db", str(folded), "--bootstrap-servers", ""]) == 0
    doc = json.loads(capsys.readouterr().out)
    # Both feedbacks count as applied although the second replaced the first.
    assert doc["events_applied"] == {
        "chat.turn.recorded": 2,
        "chat.feedback.submitted": 2,
        "chat.offering.clicked": 2,
        "chat.session.reviewed": 1,
        "assistant.usage.recorded": 1,
    }
    assert doc["dead_letters"] == {"invalid_json": 1, "session_mismatch": 1}
    assert doc["pending_events"] == 1
    assert doc["readmodel_version"] == READMODEL_VERSION == doc["code_readmodel_version"]
    assert doc["file_size_bytes"] == folded.stat().st_size > 0
    assert [(p["partition"], p["stored_offset"], p["end_offset"], p["lag"]) for p in doc["partitions"]] == [
        (0, 8, None, None),
        (2, 3, None, None),
    ]
    assert doc["broker_error"].startswith("no broker given")


def test_status_text_says_when_the_file_needs_a_rebuild(folded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    con = connect(folded)
    con.execute("UPDATE meta SET value = '1' WHERE key = 'readmodel_version'")
    con.close()
    assert main(["status", "--db", str(folded), "--bootstrap-servers", ""]) == 0
    out = capsys.readouterr().out
    assert f"read-model version: 1 (this release writes {READMODEL_VERSION})" in out
    assert "rebuild the file" in out
    assert "dead letters:       2" in out and "waiting events:     1" in out


def test_status_of_a_file_another_process_writes_points_to_the_server(
    folded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(folded)!r}); print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        assert main(["status", "--db", str(folded), "--bootstrap-servers", ""]) == 1
        err = capsys.readouterr().err
        assert "open in another process" in err and "--url" in err
    finally:
        holder.communicate(b"")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_redrawn_bar_in_a_terminal_and_plain_lines_otherwise() -> None:
    state = {"events_done": 0, "events_total": 1000, "events_per_second": 250.0, "seconds_left": 4.0}

    terminal = _Terminal()
    with Reporter(lambda: state, terminal):
        state = {**state, "events_done": 500, "seconds_left": 2.0}
        time.sleep(0.5)  # lets the reporter draw at least once; nothing depends on how often
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[") and drawn.endswith("\n")
    assert "[###############...............]  50.0%  500/1,000 events  250/s  0:00:02 left" in drawn

    log = io.StringIO()
    with Reporter(lambda: state, log):
        pass
    lines = log.getvalue().splitlines()
    assert lines and "\r" not in log.getvalue()
    assert lines[-1].endswith("500/1,000 events  250/s  0:00:02 left")
