"""Fault: the broker goes away while a catch-up with reader processes is folding (a rebuild, or `serve`
far behind). The readers' Kafka clients retry a lost broker for ever and send nothing meanwhile; the
writer must not wait with them. After `pipeline.STALL_S` without a batch it raises TimeoutError:
a rebuild resumes from the file's offsets (and fails with a clear message once its attempts are spent),
the service reports the broker unreachable and retries. Either way the tables end up as a clean fold
makes them. STALL_S is made 3 s here (60 s in production) so that the tests wait seconds, not minutes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

import projector.pipeline
import projector.rebuild
from cli.main import main
from projector.service import ProjectorService
from projector.snapshot import diff
from projector.source import TopicSource
from schemas.readmodel import connect
from tests.support.faults import KillableBroker, clean_fold, end_offsets, file_rows, publish, wait_until

pytestmark = pytest.mark.kafka

STALL_S = 3.0
# One partition: more records than a reader's Kafka client holds fetched (one 4 MiB fetch in hand and
# one on its way, ~6,000 demo events each), so that records are still due when the broker goes.
EVENTS = 24_000
BATCH = 1_000  # records per writer transaction: the broker goes after the first one


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    broker = KillableBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def kill_after_the_first_transaction(monkeypatch: pytest.MonkeyPatch, broker: KillableBroker) -> list[float]:
    """Makes the writer's first transaction take the broker away as it commits; returns when it did."""
    real_apply = projector.pipeline.apply_prepared
    killed: list[float] = []

    def apply_then_kill(*args: Any, **kwargs: Any) -> Any:
        stats = real_apply(*args, **kwargs)
        if not killed:
            broker.kill()
            killed.append(time.monotonic())
        return stats

    monkeypatch.setattr(projector.pipeline, "apply_prepared", apply_then_kill)
    return killed


def test_a_rebuild_whose_broker_goes_away_stops_waiting_and_resumes_when_it_is_back(
    broker: KillableBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(projector.pipeline, "STALL_S", STALL_S)
    topic = broker.create_topic("gone-mid-rebuild", partitions=1)
    publish(broker.bootstrap_servers, topic, EVENTS, seed=41)
    killed = kill_after_the_first_transaction(monkeypatch, broker)
    back: list[float] = []

    def bring_it_back_between_attempts(failures: int) -> None:
        # The rebuild's pause before it resumes from the file's offsets: the operator restarts the broker.
        if not back:
            broker.start()
            back.append(time.monotonic())

    monkeypatch.setattr(projector.rebuild, "pause_before_resuming", bring_it_back_between_attempts)
    new = tmp_path / "rebuilt.duckdb"
    args = ["rebuild", "--db", str(new), "--bootstrap-servers", broker.bootstrap_servers, "--topic", topic]

    with caplog.at_level(logging.WARNING, logger="projector.rebuild"):
        code = main([*args, "--batch-size", str(BATCH)])

    assert code == 0, capsys.readouterr().err
    assert killed and back, "the broker was taken away and brought back"
    assert f"rebuild interrupted (TimeoutError: no records from the broker for {STALL_S:.0f} s" in caplog.text
    # It gave up waiting after STALL_S, not after the Kafka client's own retries (or never).
    assert back[0] - killed[0] < STALL_S + 30, back[0] - killed[0]
    assert f"done: {EVENTS:,} records" in capsys.readouterr().err
    clean = clean_fold(broker.bootstrap_servers, topic, tmp_path / "clean.duckdb")
    assert diff(clean, file_rows(new)) == {}
    assert sum(o for _, _, o in clean["offsets"]) == EVENTS


def test_a_rebuild_whose_broker_stays_away_fails_with_a_clear_message_and_can_be_resumed(
    broker: KillableBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # capfd: the reader processes write to the same stderr, and none of them may print a traceback either.
    # Longer than a reader's Kafka client tries to bootstrap (10 s), so that the second attempt ends the way
    # it does in production: its readers cannot reach the broker, and say so.
    monkeypatch.setattr(projector.pipeline, "STALL_S", 15.0)
    monkeypatch.setattr(projector.pipeline, "PARSE_PROCESS_MIN_RECORDS", 1)  # the rest is read by readers too
    monkeypatch.setattr(projector.rebuild, "RESUME_ATTEMPTS", 2)
    monkeypatch.setattr(projector.rebuild, "pause_before_resuming", lambda _failures: None)
    topic = broker.create_topic("gone-for-good", partitions=1)
    publish(broker.bootstrap_servers, topic, EVENTS, seed=42)
    killed = kill_after_the_first_transaction(monkeypatch, broker)
    new = tmp_path / "rebuilt.duckdb"
    args = ["rebuild", "--db", str(new), "--bootstrap-servers", broker.bootstrap_servers, "--topic", topic]

    code = main([*args, "--batch-size", str(BATCH)])

    err = capfd.readouterr().err
    assert killed
    assert code == 1, err
    assert "chat-analytics: rebuild failed (RuntimeError: a parser process failed: KafkaTimeoutError" in err, err
    assert broker.bootstrap_servers in err and f"{new} is incomplete (partitions [0]" in err, err
    assert f"continue it with `chat-analytics rebuild --db {new} --resume`" in err, err
    assert "Traceback" not in err
    # What was folded before the broker went is kept, and exactly once.
    con = connect(new, read_only=True)
    try:
        stored = dict(con.execute("SELECT partition, next_offset FROM offsets").fetchall())
        interactions = con.execute("SELECT count(*) FROM interactions").fetchone()
    finally:
        con.close()
    assert BATCH <= stored[0] < EVENTS, stored
    assert interactions is not None and interactions[0] > 0

    # The broker is back. Without a flag the command refuses the file and says what it is.
    broker.start()
    assert main([*args, "--batch-size", str(BATCH)]) == 2
    assert f"{new} is what an interrupted rebuild of {topic} left: pass --resume" in capfd.readouterr().err
    # The operator continues the file instead of folding it all again.
    assert main([*args, "--resume", "--batch-size", str(BATCH)]) == 0
    err = capfd.readouterr().err
    assert f"done: {EVENTS:,} records ({EVENTS - stored[0]:,} folded by this run)" in err, err
    clean = clean_fold(broker.bootstrap_servers, topic, tmp_path / "clean.duckdb")
    assert diff(clean, file_rows(new)) == {}


def test_the_service_reports_a_broker_gone_mid_catch_up_and_folds_on_when_it_is_back(
    broker: KillableBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `serve` far behind catches up with reader processes too: /readyz must say why it stopped moving.
    monkeypatch.setattr(projector.pipeline, "STALL_S", STALL_S)
    monkeypatch.setattr(projector.pipeline, "PARSE_PROCESS_MIN_RECORDS", 1)
    topic = broker.create_topic("gone-mid-catch-up", partitions=1)
    publish(broker.bootstrap_servers, topic, EVENTS, seed=43)
    killed = kill_after_the_first_transaction(monkeypatch, broker)
    path = tmp_path / "served.duckdb"
    con = connect(path)
    service = ProjectorService(TopicSource(broker.bootstrap_servers, topic, group_id=None, batch_size=BATCH), con)
    try:
        service.start()
        status = wait_until(lambda: (s := service.status())["error_kind"] == "broker_unreachable" and s, "the outage")
        assert killed
        assert "no records from the broker" in status["error"] or "Kafka" in status["error"], status["error"]
        assert 0 < sum(status["events_applied"].values()) < EVENTS, status

        # Once it folds again, /readyz stops saying the broker is unreachable, while it is still catching up
        # (the status each transaction after the restart finds, before it commits).
        seen_after: list[tuple[str | None, int]] = []
        killing_apply = projector.pipeline.apply_prepared

        def apply_and_look(*args: Any, **kwargs: Any) -> Any:
            now = service.status()
            seen_after.append((now["error_kind"], sum(p["position"] for p in now["partitions"])))
            return killing_apply(*args, **kwargs)

        monkeypatch.setattr(projector.pipeline, "apply_prepared", apply_and_look)
        broker.start()
        ends = end_offsets(broker.bootstrap_servers, topic)
        wait_until(
            lambda: (ps := service.status()["partitions"]) and all(p["position"] >= ends[p["partition"]] for p in ps),
            "the fold to reach the end of the topic",
        )
    finally:
        service.stop()
    con.close()
    assert seen_after and seen_after[0][0] == "broker_unreachable", seen_after
    assert any(kind is None and position < EVENTS for kind, position in seen_after), seen_after
    clean = clean_fold(broker.bootstrap_servers, topic, tmp_path / "clean.duckdb")
    assert diff(clean, file_rows(path)) == {}
