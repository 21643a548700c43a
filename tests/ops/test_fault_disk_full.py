"""Fault 3: the disk fills while `serve` folds. The served file lives on a small tmpfs mounted in a
mount namespace of the test's own (`unshare -m`; `serve` joins it with `nsenter`), so nothing outside
the test sees it.

Two of DuckDB's writes can meet the full disk: a commit's (the write-ahead log grows), which rolls back
alone, and a checkpoint's, after which DuckDB invalidates the database until a restart. Which comes
first used to depend on timing, and so did what a user saw. The projector now starts a checkpoint only
with room for it (schemas.storage.checkpoint_room), so a full disk always looks the same: reads keep
answering from what was committed, /livez stays 200, /readyz names `database_write_failed`, and once
space is freed the fold resumes by itself, ending exactly where a clean fold of the topic ends.

A checkpoint's write can still fail when something else takes the space while it runs (another
process, a quota); the second test makes one fail deterministically, with a file-size limit
(RLIMIT_FSIZE) the checkpoint crosses: the service then reports it (/livez 503), exits with code 3 for
its supervisor, and a restart replays the write-ahead log and resumes exactly.
"""

from __future__ import annotations

import re
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

DISK = "10m"
CHUNK = 2000
MAX_EVENTS = 200_000  # a guard: far more than 16 MiB of read model
# Small live batches, each folded before the next chunk is published, and a small checkpoint
# threshold: the log and the file both grow by little at a time, and checkpoints are many.
SMALL_BATCHES = ["--batch-size", "300"]
ENV = {"CHAT_ANALYTICS_CHECKPOINT_THRESHOLD": "1MiB", "CHAT_ANALYTICS_DISK_WARN_BYTES": str(8 * 2**20)}
FILE_SIZE_LIMIT = 4 * 2**20  # the second test's RLIMIT_FSIZE: the served file reaches it at a checkpoint


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    with private_tmpfs(tmp_path / "disk", DISK) as disk:
        yield disk


class Watch:
    """Polls /livez and the listing's count from a thread: what a probe and a dashboard saw."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.livez: list[int] = []
        self.last_count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with self.serve.client(timeout=10) as http:
            while not self._stop.is_set():
                try:
                    self.livez.append(http.get("/livez").status_code)
                    listing = http.get("/api/anonymous-chat-interactions/?page_size=1")
                    if listing.status_code == 200:
                        self.last_count = int(listing.headers["x-result-count"])
                except httpx.HTTPError:
                    pass
                self._stop.wait(0.05)


def fill(serve: Serve, bootstrap_servers: str, topic: str, until: str) -> int:
    """Publishes chunks, each folded before the next, until the projector reports `until` (or `serve`
    exits); returns how many events were published."""
    published, seed = 0, 100
    assert serve.process is not None
    while serve.process.poll() is None and published < MAX_EVENTS:
        publish(bootstrap_servers, topic, CHUNK, seed=seed)
        published, seed = published + CHUNK, seed + 1
        ends = end_offsets(bootstrap_servers, topic)
        wait_until(
            lambda ends=ends: (
                serve.process.poll() is not None
                or all(serve_positions(serve.url).get(p, 0) >= e for p, e in ends.items())
                or serve.readyz()["error"] == until
            ),
            "the chunk to be folded (or the projector to fail)",
        )
        if serve.process.poll() is None and serve.readyz()["error"] == until:
            break
    return published


def assert_equals_a_clean_fold(tmp_path: Path, db: Path, enter: list[str], broker: KillableBroker, topic: str) -> None:
    """Copies the served file (from inside the mount namespace `enter`, when given) and compares it with a
    clean fold of the whole topic."""
    copy = tmp_path / "served-copy.duckdb"
    subprocess.run([*enter, "cp", str(db), str(copy)], check=True, timeout=120)
    served = file_rows(copy)
    clean = clean_fold(broker.bootstrap_servers, topic, tmp_path / "clean.duckdb")
    assert diff(clean, served) == {}
    assert clean == served


def test_a_full_disk_keeps_reads_answering_and_the_fold_resumes_once_space_is_freed(
    tmp_path: Path, small_disk: tuple[Path, list[str]]
) -> None:
    mount, enter = small_disk
    broker = KillableBroker(tmp_path / "broker")
    broker.start()
    serve: Serve | None = None
    try:
        topic = broker.create_topic("fault-disk")
        db = mount / "served.duckdb"
        serve = Serve(tmp_path, db, broker.bootstrap_servers, topic, env=ENV, prefix=enter, extra_args=SMALL_BATCHES)
        serve.start().wait_answering()
        with Watch(serve) as watch, Readers(serve.url) as readers:
            readers.phase = "filling"
            published = fill(serve, broker.bootstrap_servers, topic, until="database_write_failed")
            assert serve.process is not None and serve.process.poll() is None, serve.tail()
            readiness = serve.readyz()
            assert readiness["error"] == "database_write_failed", (published, readiness, serve.tail())
            assert readiness["serving"] and readiness["freshness"]["stale"], readiness
            # Full: the reads go on from what was committed, for as long as it lasts.
            readers.phase = "full"
            full_count = watch.last_count
            wait_until(lambda: len(readers.of("full")) >= 100, "reads while the disk is full")
            assert serve.process.poll() is None and serve.readyz()["error"] == "database_write_failed"
            assert "No space left on device" in serve.tail(200_000)

            # Space is freed (the tmpfs made larger): the same process goes on folding by itself.
            subprocess.run([*enter, "mount", "-o", "remount,size=512m", str(mount)], check=True, timeout=60)
            readers.phase = "freed"
            wait_folded(serve, broker.bootstrap_servers, topic, limit_s=300)
            publish(broker.bootstrap_servers, topic, CHUNK, seed=999)
            wait_folded(serve, broker.bootstrap_servers, topic, limit_s=300)
            assert serve.readyz()["error"] is None
        for phase in ("filling", "full", "freed"):
            readers.report(phase, "disk full")
        log = serve.tail(200_000)
        print(f"[disk full] the log filled the disk after {published} events; count served then {full_count}")
        assert "No space left on device" in log, log[-4000:]
        assert "invalidated" not in log and "the read model failed" not in log, log[-4000:]
        assert set(watch.livez) == {200}, sorted(set(watch.livez))  # alive throughout: nothing to restart
        assert {s.status for s in readers.samples} == {200}  # filling, full and freed alike
        assert interactions_total(serve) >= full_count > 0  # nothing served before is gone
        with serve.client() as http:
            status = http.get("/api/admin/status/").json()
        assert status["disk"]["free_bytes"] > 0 and status["disk"]["data_dir"] == str(mount)
        assert serve.stop() == 0, serve.tail()
        assert_equals_a_clean_fold(tmp_path, db, enter, broker, topic)
    finally:
        if serve is not None:
            serve.kill()
        broker.close()


def test_a_checkpoint_write_that_fails_anyway_fails_liveness_exits_and_a_restart_resumes_exactly(
    tmp_path: Path,
) -> None:
    broker = KillableBroker(tmp_path / "broker")
    broker.start()
    serves: list[Serve] = []
    try:
        topic = broker.create_topic("fault-checkpoint")
        db = tmp_path / "data" / "served.duckdb"
        # Plenty of disk, but no file may grow past the limit: the log stays far below it (checkpointed
        # from 1 MiB on), so the write that fails is a checkpoint's, growing the file. Python ignores
        # SIGXFSZ: the write fails with EFBIG.
        limit = ["prlimit", f"--fsize={FILE_SIZE_LIMIT}", "--"]
        serve = Serve(
            tmp_path, db, broker.bootstrap_servers, topic, env=ENV, prefix=limit, extra_args=SMALL_BATCHES, name="full"
        )
        serves.append(serve.start())
        serve.wait_answering()
        with Watch(serve) as watch, Readers(serve.url) as readers:
            readers.phase = "filling"
            published = fill(serve, broker.bootstrap_servers, topic, until="database_invalidated")
            assert serve.process is not None
            code = serve.process.wait(120)
        readers.report("filling", "checkpoint failed")
        log = serve.tail(200_000)
        assert code == EXIT_READ_MODEL_FAILED, f"exit {code} after {published} events:\n{log[-4000:]}"
        # DuckDB says "Failed to create checkpoint" of a file opened by path, "Checkpoint failed" of one attached.
        assert re.search(r"Failed to create checkpoint|Checkpoint failed", log), log[-4000:]
        assert "the read model failed" in log, log[-4000:]
        assert 503 in watch.livez, sorted(set(watch.livez))  # liveness failed before the process went away
        print(f"[checkpoint failed] after {published} events published; last count served {watch.last_count}")

        # The supervisor's restart, without the limit: the write-ahead log replayed, the fold resumed.
        restarted = Serve(tmp_path, db, broker.bootstrap_servers, topic, env=ENV, extra_args=SMALL_BATCHES)
        serves.append(restarted.start())
        restarted.wait_answering()
        assert interactions_total(restarted) >= watch.last_count > 0  # nothing served before is gone
        wait_folded(restarted, broker.bootstrap_servers, topic, limit_s=300)
        assert restarted.stop() == 0, restarted.tail()
        assert_equals_a_clean_fold(tmp_path, db, [], broker, topic)
    finally:
        for s in serves:
            s.kill()
        broker.close()
