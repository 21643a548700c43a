"""Storage at its limits, on small filesystems in a mount namespace of the test's own: `serve
--no-projector` serves a file on read-only storage, and a live or offline rebuild refuses to start
without room for a second file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from loopback.ports import free_port
from tests.support.api_data import build_read_model
from tests.support.faults import REPO, STAFF, private_tmpfs, wait_until


def test_no_projector_serves_a_file_on_read_only_storage(tmp_path: Path) -> None:
    built = tmp_path / "built.duckdb"
    build_read_model(built).close()
    with private_tmpfs(tmp_path / "ro", "64m") as (mount, enter):
        served = mount / "rm.duckdb"
        subprocess.run([*enter, "cp", str(built), str(served)], check=True, timeout=60)
        subprocess.run([*enter, "mount", "-o", "remount,ro", str(mount)], check=True, timeout=60)
        port = free_port()
        command = [*enter, sys.executable, "-m", "cli.main", "serve", "--no-projector", "--db", str(served)]
        command += ["--port", str(port)]
        env = {"CHAT_ANALYTICS_API_TOKENS": f"{STAFF}:staff", "PATH": "/usr/bin:/bin"}
        log = (tmp_path / "serve.log").open("wb")
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {STAFF}"}) as http:
                listing = wait_until(
                    lambda: proc.poll() is None and (r := http.get("/api/anonymous-chat-interactions/")) and r,
                    "serve --no-projector to answer",
                    120,
                )
                assert listing.status_code == 200, listing.text
                assert int(listing.headers["x-result-count"]) > 0
                assert http.get("/readyz").status_code == 200
        finally:
            proc.terminate()
            code = proc.wait(60)
            log.close()
        assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
        listed = subprocess.run([*enter, "ls", str(mount)], capture_output=True, text=True, check=True, timeout=60)
        assert listed.stdout.split() == ["rm.duckdb"]  # no log, nothing written


def test_a_live_rebuild_refuses_to_start_without_room_for_a_second_file(tmp_path: Path) -> None:
    probe = (
        "import duckdb, json, sys\n"
        "from projector.bluegreen import LiveProjection\n"
        "from schemas.readmodel import connect\n"
        "from serving.handle import ReadModelHandle\n"
        "path = sys.argv[1]\n"
        "con = connect(path)\n"
        "con.execute('CREATE TABLE ballast AS SELECT md5(range::VARCHAR) AS v FROM range(300000)')\n"
        "con.execute('CHECKPOINT')\n"
        "handle = ReadModelHandle(con, path)\n"
        "from projector.source import TopicSource\n"
        "live = LiveProjection(handle, source=TopicSource('127.0.0.1:1', 't', group_id=None, batch_size=10))\n"
        "started, body = live.start_rebuild()\n"
        "print(json.dumps({'started': started, **body}))\n"
    )
    # A ~6 MB file on a 12 MB filesystem: a second one (1.5 times its size) does not fit.
    with private_tmpfs(tmp_path / "small", "12m") as (mount, enter):
        run = subprocess.run(
            [*enter, sys.executable, "-c", probe, str(mount / "rm.duckdb")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["started"] is False and answer["insufficient_storage"] is True, answer
    assert answer["free_bytes"] < answer["needed_bytes"]
    assert "not enough free disk space" in answer["detail"]


def test_what_a_failed_rebuild_left_counts_as_room_for_the_next_one(tmp_path: Path) -> None:
    # The next attempt continues `<db>.rebuild` or replaces it: its bytes are not needed twice.
    from projector.bluegreen import rebuild_room

    served = tmp_path / "rm.duckdb"
    served.write_bytes(b"x" * 1_000_000)
    assert rebuild_room(served)["needed_bytes"] == 1_500_000
    (tmp_path / "rm.duckdb.rebuild").write_bytes(b"y" * 400_000)
    (tmp_path / "rm.duckdb.rebuild.wal").write_bytes(b"z" * 100_000)
    assert rebuild_room(served)["needed_bytes"] == 1_000_000


def test_an_offline_rebuild_refuses_to_start_without_room_for_the_file_it_replaces(tmp_path: Path) -> None:
    import duckdb

    served = tmp_path / "served.duckdb"
    with duckdb.connect(str(served)) as con:  # ~6 MB, as in the live case
        con.execute("CREATE TABLE ballast AS SELECT md5(range::VARCHAR) AS v FROM range(300000)")
    with private_tmpfs(tmp_path / "small", "4m") as (mount, enter):
        command = [*enter, sys.executable, "-m", "cli.main", "rebuild", "--db", str(mount / "new.duckdb")]
        command += ["--served-db", str(served), "--bootstrap-servers", "127.0.0.1:1", "--topic", "t"]
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        listed = subprocess.run([*enter, "ls", str(mount)], capture_output=True, text=True, check=True, timeout=60)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "not enough free disk space for a rebuild" in run.stderr
    assert listed.stdout.split() == []  # refused before anything was written


def test_a_commit_that_fails_for_lack_of_space_reports_its_own_error_not_the_rollbacks(tmp_path: Path) -> None:
    # A failed COMMIT has ended the transaction already, so the ROLLBACK after it fails too ("no
    # transaction is active"); `status` and the log must show the first error, the cause.
    probe = (
        "import sys\n"
        "from projector.fold import apply_batch\n"
        "from tests.support.events import stream, to_records\n"
        "from schemas.readmodel import connect\n"
        "con = connect(sys.argv[1])\n"
        "records = to_records(stream(100_000, seed=1))\n"
        "for start in range(0, len(records), 500):\n"
        "    try:\n"
        "        apply_batch(con, records[start : start + 500])\n"
        "    except Exception as exc:\n"
        "        print(f'{type(exc).__name__}: {exc}')\n"
        "        break\n"
    )
    with private_tmpfs(tmp_path / "tiny", "4m") as (mount, enter):
        run = subprocess.run(
            [*enter, sys.executable, "-c", probe, str(mount / "rm.duckdb")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    error = run.stdout.strip().splitlines()[-1]
    assert "No space left on device" in error, error
    assert "rollback" not in error.lower(), error
