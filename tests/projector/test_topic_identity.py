"""A file's offsets are never applied to another topic of the same name (`projector.topic_identity`): a topic
deleted and created again, on a real broker, stops the live projector and `rebuild --resume` with a clear
error instead of its new events being dropped as already folded. Records the topic deleted before the file
folded them are said to be lost, not passed over in silence."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import TopicAlreadyExistsError

from broker.topics import TOPIC_CONFIG
from cli.main import main
from projector import conversations, topic_identity
from projector.fold import apply_batch
from projector.records import Record
from projector.service import ProjectorService
from projector.source import TopicSource
from projector.topic_identity import TopicChanged
from schemas.readmodel import connect, stored_offsets
from tests.support.events import encode, turn
from tests.support.kafka import publish, read_back

WAIT_S = 60.0  # a bound on waiting, never an assertion about speed


def _folded(path: Path, topic: str, offsets: dict[int, int]) -> None:
    """A file that has folded `offsets` of `topic` (one turn at the last offset of each partition)."""
    con = connect(path)
    apply_batch(con, [Record(topic, p, end - 1, None, encode(turn(f"s-{p}")), None) for p, end in offsets.items()])
    con.close()


def test_a_new_file_remembers_the_topic_it_is_folded_from_and_refuses_another(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    topic_identity.check(con, "chat.events", first, {0: 0, 1: 0})
    assert topic_identity.stored(con) == first
    topic_identity.check(con, "chat.events", first, {0: 5, 1: 0})  # the same topic, grown
    with pytest.raises(TopicChanged, match="is not the one this file was folded from"):
        topic_identity.check(con, "chat.events", second, {0: 5, 1: 0})
    assert topic_identity.stored(con) == first
    con.close()


def test_a_file_without_an_id_is_judged_by_its_offsets(tmp_path: Path) -> None:
    path = tmp_path / "rm.duckdb"
    _folded(path, "chat.events", {0: 10, 1: 4})
    con = connect(path)
    assert topic_identity.stored(con) is None
    with pytest.raises(TopicChanged, match=r"ends before what this file has folded from it .*\{0: \(3, 10\)\}"):
        topic_identity.check(con, "chat.events", str(uuid.uuid4()), {0: 3, 1: 9})
    with pytest.raises(TopicChanged, match=r"\{1: \(None, 4\)\}"):  # a partition the topic no longer has
        topic_identity.check(con, "chat.events", None, {0: 12})
    assert topic_identity.stored(con) is None
    topic_identity.check(con, "chat.events", None, {0: 10, 1: 4})  # a broker without ids: offsets alone
    assert topic_identity.stored(con) is None
    now = str(uuid.uuid4())
    topic_identity.check(con, "chat.events", now, {0: 10, 1: 7})
    assert topic_identity.stored(con) == now
    con.close()


def _fold_to_the_end(bootstrap_servers: str, topic: str, con: Any) -> None:
    """What the live projector folds of `topic` into `con` until it has caught up."""
    service = ProjectorService(TopicSource(bootstrap_servers, topic, group_id=None, batch_size=100), con)
    try:
        service.run_until_caught_up(timeout=WAIT_S)
    finally:
        service.stop()


def _recreate(kafka_admin: Any, name: str, partitions: int = 3) -> None:
    """Deletes `name` and creates it again (empty, a new topic id), as an operator or a new cluster would."""
    kafka_admin.delete_topics([name])
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            kafka_admin.create_topics(
                {name: {"num_partitions": partitions, "configs": dict(TOPIC_CONFIG)}}, wait_for_metadata=True
            )
            return
        except TopicAlreadyExistsError:  # still being deleted
            assert time.monotonic() < deadline, f"{name} was not deleted in time"
            time.sleep(0.5)


@pytest.mark.parametrize("with_id", [True, False], ids=["file-with-topic-id", "older-file-without-id"])
def test_the_live_projector_refuses_a_topic_created_again_under_the_files_topic_name(
    bootstrap_servers: str, topic: str, kafka_admin: Any, tmp_path: Path, with_id: bool
) -> None:
    publish(bootstrap_servers, topic, [turn(f"before-{i}") for i in range(30)])
    con = connect(tmp_path / "rm.duckdb")
    _fold_to_the_end(bootstrap_servers, topic, con)
    folded = stored_offsets(con, topic)
    assert sum(folded.values()) == 30 and topic_identity.stored(con) is not None
    if not with_id:
        con.execute("DELETE FROM meta WHERE key = ?", [topic_identity.TOPIC_ID_KEY])

    _recreate(kafka_admin, topic)
    publish(bootstrap_servers, topic, [turn(f"after-{i}") for i in range(6)])  # below the file's offsets
    service = ProjectorService(TopicSource(bootstrap_servers, topic, group_id=None, batch_size=100), con)
    service.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while service.status()["error_kind"] != "topic_changed":
            assert time.monotonic() < deadline, f"no topic_changed error: {service.status()}"
            time.sleep(0.1)
        status = service.status()
    finally:
        service.stop()
    expected = "is not the one this file was folded from" if with_id else "ends before what this file has folded"
    assert expected in status["error"], status["error"]
    assert stored_offsets(con, topic) == folded  # nothing of the new topic taken as already folded
    assert con.execute("SELECT count(*) FROM interactions").fetchall() == [(30,)]
    con.close()


def test_rebuild_resume_refuses_a_file_begun_from_a_topic_since_created_again(
    bootstrap_servers: str, topic: str, kafka_admin: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(bootstrap_servers, topic, [turn(f"before-{i}") for i in range(40)])
    path = tmp_path / "new.duckdb"
    common = ["--bootstrap-servers", bootstrap_servers, "--topic", topic]
    # An unfinished rebuild: folded part of the topic with its conversations still deferred.
    con = connect(path)
    conversations.defer(con)
    topic_identity.check(con, topic, _topic_id(bootstrap_servers, topic), {})
    apply_batch(con, read_back(bootstrap_servers, topic)[:10])
    con.close()
    _recreate(kafka_admin, topic)
    publish(bootstrap_servers, topic, [turn(f"after-{i}") for i in range(50)])
    capsys.readouterr()

    assert main(["status", "--db", str(path), *common]) == 0
    out = capsys.readouterr().out
    assert "TOPIC CHANGED: topic" in out and "is not the one this file was folded from" in out, out
    assert main(["rebuild", "--db", str(path), "--resume", *common]) == 2
    err = capsys.readouterr().err
    assert "rebuild refused: topic" in err and "is not the one this file was folded from" in err, err
    con = connect(path, read_only=True)
    assert con.execute("SELECT count(*) FROM applied_events").fetchall() == [(10,)]
    con.close()
    # Started afresh instead, the rebuild folds the topic as it is now.
    assert main(["rebuild", "--db", str(path), "--force", *common]) == 0
    con = connect(path, read_only=True)
    assert con.execute("SELECT count(*) FROM applied_events").fetchall() == [(50,)]
    assert topic_identity.stored(con) == _topic_id(bootstrap_servers, topic)
    con.close()


def _topic_id(bootstrap_servers: str, topic: str) -> str | None:
    from projector.rebuild import log_bounds

    return log_bounds(bootstrap_servers, topic).topic_id


def test_records_the_topic_deleted_before_they_were_folded_are_reported_lost(
    bootstrap_servers: str,
    topic: str,
    kafka_admin: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kafka import TopicPartition

    path = tmp_path / "rm.duckdb"
    publish(bootstrap_servers, topic, [turn(f"early-{i}") for i in range(30)])
    con = connect(path)
    _fold_to_the_end(bootstrap_servers, topic, con)
    folded = stored_offsets(con, topic)
    con.close()
    # Meanwhile the projector is away; more events come, and the oldest go (Kafka's DeleteRecords, as a
    # retention shorter than the absence would): five records of partition 0 it never folded.
    publish(bootstrap_servers, topic, [turn(f"late-{i}") for i in range(60)])
    kafka_admin.delete_records({TopicPartition(topic, 0): folded[0] + 5})
    capsys.readouterr()

    assert main(["status", "--db", str(path), "--bootstrap-servers", bootstrap_servers, "--topic", topic]) == 0
    out = capsys.readouterr().out
    assert "WARNING: 5 records (per partition: {0: 5}) were deleted by the topic's retention" in out, out
    con = connect(path)
    with caplog.at_level("WARNING", logger="projector.service"):
        _fold_to_the_end(bootstrap_servers, topic, con)
    assert any("5 records of" in r.getMessage() and "lost to the read model" in r.getMessage() for r in caplog.records)
    assert con.execute("SELECT count(*) FROM interactions").fetchall() == [(85,)]  # 90 published, 5 deleted
    con.close()
