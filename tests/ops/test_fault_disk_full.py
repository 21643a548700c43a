"""Fault 3: the disk fills while `serve` folds. The served file lives on a small tmpfs mounted in a
mount namespace of the test's own (`unshare -m`; `serve` joins it with `nsenter`), so nothing outside
the test sees it. With a small checkpoint threshold, the write that fails is a checkpoint: DuckDB
invalidates the database. The service reports it (/livez 503), exits with code 3 for its supervisor;
once space is freed (the tmpfs is made larger), a restart replays the write-ahead log, serves the same
data, and the fold resumes exactly (the file equals a clean fold)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.serve_cmd import EXIT_READ_MODEL_FAILED
from projector.snapshot import diff
from tests.support.faults import (
    KillableBroker,
    Readers,
    Serve,
    clean_fold,
    end_offsets,
    file_rows,
    interactions_total,
    private_tmpfs,
    publish,
    serve_positions,
    wait_folded,
    wait_until,
)

# A broker of its own (tests/support/faults.py), started and killed by the test.
pytestmark = pytest.mark.kafka

DISK = "16m"
CHUNK = 2000
MAX_EVENTS = 200_000  # a guard: far more than 16 MiB of read model


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    with private_tmpfs(tmp_path / "disk", DISK) as disk:
        yield disk


def test_a_full_disk_fails_liveness_exits_and_a_restart_resumes_exactly(
    tmp_path: Path, small_disk: tuple[Path, list[str]]
) -> None:
    mount, enter = small_disk
    broker = KillableBroker(tmp_path / "broker")
    broker.start()
    serves: list[Serve] = []
    try:
        topic = broker.create_topic("fault-disk")
        db = mount / "served.duckdb"
        env = {"CHAT_ANALYTICS_CHECKPOINT_THRESHOLD": "1MiB", "CHAT_ANALYTICS_DISK_WARN_BYTES": str(8 * 2**20)}
        # Small live batches, each folded before the next chunk is published: the log grows by little
        # at a time, so the write that finds the disk full is a checkpoint's (the larger one).
        small = ["--batch-size", "300"]
        serve = Serve(
            tmp_path, db, broker.bootstrap_servers, topic, env=env, prefix=enter, extra_args=small, name="full"
        ).start()
        serves.append(serve)
        serve.wait_answering()

        livez: list[int] = []
        last_count = 0
        stop_watch = threading.Event()

        def watch() -> None:
            nonlocal last_count
            with serve.client(timeout=10) as http:
                while not stop_watch.is_set():
                    try:
                        livez.append(http.get("/livez").status_code)
                        listing = http.get("/api/anonymous-chat-interactions/?page_size=1")
                        if listing.status_code == 200:
                            last_count = int(listing.headers["x-result-count"])
                    except httpx.HTTPError:
                        pass
                    stop_watch.wait(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with Readers(serve.url) as readers:
            readers.phase = "filling"
            published, seed = 0, 100
            assert serve.process is not None
            while serve.process.poll() is None and published < MAX_EVENTS:
                publish(broker.bootstrap_servers, topic, CHUNK, seed=seed)
                published, seed = published + CHUNK, seed + 1
                ends = end_offsets(broker.bootstrap_servers, topic)
                wait_until(
                    lambda ends=ends: (
                        serve.process.poll() is not None
                        or all(serve_positions(serve.url).get(p, 0) >= e for p, e in ends.items())
                        or serve.readyz()["error"] == "database_write_failed"
                    ),
                    "the chunk to be folded (or the service to fail)",
                )
                assert serve.process.poll() is not None or serve.readyz()["error"] != "database_write_failed", (
                    "a write to the log failed before a checkpoint did: the service keeps serving and retries "
                    "(see docs/operations-failures.md), but this test wants the checkpoint failure"
                )
            code = serve.process.wait(120)
        stop_watch.set()
        watcher.join(30)
        readers.report("filling", "disk full")
        log = serve.tail(20_000)
        assert code == EXIT_READ_MODEL_FAILED, f"exit {code} after {published} events:\n{log[-4000:]}"
        assert "No space left on device" in log and "the read model failed" in log, log[-4000:]
        assert 503 in livez, sorted(set(livez))  # liveness failed before the process went away
        print(f"[disk full] failed after {published} events published; last count served {last_count}")

        # Space is freed: the same file, a restart, the write-ahead log replayed.
        subprocess.run([*enter, "mount", "-o", "remount,size=512m", str(mount)], check=True, timeout=60)
        restarted = Serve(
            tmp_path, db, broker.bootstrap_servers, topic, env=env, prefix=enter, extra_args=small, name="restart"
        )
        serves.append(restarted.start())
        restarted.wait_answering()
        assert interactions_total(restarted) >= last_count  # nothing served before is gone
        wait_folded(restarted, broker.bootstrap_servers, topic, limit_s=300)
        with restarted.client() as http:
            status = http.get("/api/admin/status/").json()
        assert status["disk"]["free_bytes"] > 0 and status["disk"]["data_dir"] == str(mount)
        assert restarted.stop() == 0, restarted.tail()
        copy = tmp_path / "restarted-copy.duckdb"
        subprocess.run([*enter, "cp", str(db), str(copy)], check=True, timeout=120)
        served = file_rows(copy)
        clean = clean_fold(broker.bootstrap_servers, topic, tmp_path / "clean.duckdb")
        assert diff(clean, served) == {}
        assert clean == served
    finally:
        for s in serves:
            s.kill()
        broker.close()
