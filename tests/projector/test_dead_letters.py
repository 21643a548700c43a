"""Dead letters without a broker: retry through the same fold (after a release that knows a newer
version, in log order, exactly once), list and export through the command line.

The "new release" is a registry where `chat.turn.recorded` is at version 2 (a required `channel`
field, v1 upcast to channel "anonymous"); the fold consumes it unchanged, as a real release would."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from cli.main import main
from projector.deadletters import count_by_reason, iter_dead_letters, retry
from projector.fold import apply_batch
from projector.records import Record
from projector.snapshot import diff, table_rows
from schemas.readmodel import connect
from schemas.registry import EventRegistry
from tests.support.events import click, feedback, review, to_records, turn
from tests.support.versions import OFFER, TURN, turn_v2, v2_registry


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(tmp_path / "readmodel.duckdb")
    yield c
    c.close()


def fresh_fold(
    tmp_path: Path, records: list[Record], registry: EventRegistry | None = None
) -> duckdb.DuckDBPyConnection:
    c = connect(tmp_path / f"fresh-{uuid.uuid4().hex[:8]}.duckdb")
    apply_batch(c, records, registry)
    return c


def reasons(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int, str]]:
    return con.execute('SELECT partition, "offset", reason FROM dead_letters ORDER BY partition, "offset"').fetchall()


def test_retry_with_a_release_that_knows_v2_gives_the_tables_that_release_folds_from_scratch(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    t1 = turn("s1", offering_uuids=[OFFER])
    t2 = turn_v2("s2")
    log = to_records(
        [
            t1,
            t2,  # unsupported_version for this release
            feedback(t2, -1, "other"),  # waits for t2
            click(t2),  # waits for t2
            click(t1),
            feedback(t1, 1, session_id="elsewhere"),  # session_mismatch, and stays one
            t2,  # a producer retry of t2: same event id
            review(t2, 5),  # waits for t2
        ]
    )
    apply_batch(con, log)
    assert count_by_reason(con) == {"unsupported_version": 2, "session_mismatch": 1}
    assert con.execute("SELECT count(*) FROM pending_events").fetchall() == [(3,)]

    result = retry(con, registry=v2_registry())

    assert result.offered == 3
    # t2 itself, and the three events that were waiting for it.
    assert result.applied == {
        TURN: 1,
        "chat.feedback.submitted": 1,
        "chat.offering.clicked": 1,
        "chat.session.reviewed": 1,
    }
    assert result.duplicates == 1  # the second copy of t2, as on the live log
    assert result.still_dead == {"session_mismatch": 1}
    assert reasons(con) == [(0, 5, "session_mismatch")]
    assert con.execute("SELECT count(*) FROM pending_events").fetchall() == [(0,)]
    served = con.execute(
        "SELECT fb_score, click_count, llm_resolution_score FROM interactions WHERE uuid = ?",
        [t2["data"]["interaction_uuid"]],
    ).fetchall()
    assert served == [(-1, 1, 5)]

    rebuilt = fresh_fold(tmp_path, log, v2_registry())
    assert diff(table_rows(con), table_rows(rebuilt)) == {}
    rebuilt.close()


def test_retry_is_exactly_once_a_second_retry_and_a_later_copy_change_nothing(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    t2 = turn_v2("s2")
    first = to_records([t2, feedback(t2, 1)])
    apply_batch(con, first)
    retry(con, registry=v2_registry())
    once = table_rows(con)

    again = retry(con, registry=v2_registry())
    assert again.offered == 0
    assert table_rows(con) == once

    # The same event published once more later: the live fold (now the v2 release) skips it.
    later = to_records([t2], start=len(first))
    stats = apply_batch(con, later, v2_registry())
    assert stats.duplicates == 1 and not stats.applied
    assert con.execute("SELECT count(*) FROM interactions").fetchall() == [(1,)]
    assert con.execute("SELECT events FROM applied_counts WHERE type = ?", [TURN]).fetchall() == [(1,)]

    rebuilt = fresh_fold(tmp_path, first + later, v2_registry())
    assert diff(table_rows(con), table_rows(rebuilt)) == {}
    rebuilt.close()


def test_those_that_still_fail_stay_with_their_new_reason_and_detail(con: duckdb.DuckDBPyConnection) -> None:
    bad = turn_v2("s3", channel="carrier-pigeon")  # a v2 the v2 release still refuses
    apply_batch(con, to_records([bad]))
    (before,) = iter_dead_letters(con)
    assert before.reason == "unsupported_version"

    result = retry(con, registry=v2_registry())

    assert result.applied == {} and result.still_dead == {"invalid_data": 1}
    (after,) = iter_dead_letters(con)
    assert after.reason == "invalid_data"
    assert "data.channel" in after.detail
    assert (after.partition, after.offset, after.value, after.key) == (0, 0, before.value, before.key)


def test_retry_goes_in_log_order_partition_then_offset(con: duckdb.DuckDBPyConnection) -> None:
    # Two v2 turns for one interaction under different event ids: whichever the log has first stands.
    same = str(uuid.uuid4())
    early = turn_v2("s4", interaction_uuid=same, user_input="partition 0")
    late = turn_v2("s4", interaction_uuid=same, user_input="partition 1")
    # Folded (and dead-lettered) partition 1 first, so table order alone would put `late` first.
    apply_batch(con, to_records([late], partition=1, start=0))
    apply_batch(con, to_records([early], partition=0, start=7))

    retry(con, registry=v2_registry())

    assert con.execute("SELECT user_input FROM interactions").fetchall() == [("partition 0",)]
    assert reasons(con) == [(1, 0, "duplicate_interaction")]


def test_a_fold_reason_is_decided_again_not_dropped_as_a_duplicate_of_itself(con: duckdb.DuckDBPyConnection) -> None:
    # The fold records the id of a session_mismatch in applied_events before setting it aside; a
    # retry that left it there would skip the event as already applied and lose the dead letter.
    t = turn("s5", offering_uuids=[OFFER])
    mismatch = feedback(t, 1, session_id="s-other")
    apply_batch(con, to_records([t, mismatch]))
    retry(con)
    retry(con)
    assert reasons(con) == [(0, 1, "session_mismatch")]
    assert con.execute("SELECT count(*) FROM applied_events WHERE event_id = ?", [mismatch["event_id"]]).fetchall() == [
        (1,)
    ]


def test_retry_of_one_reason_leaves_the_others_untouched(con: duckdb.DuckDBPyConnection) -> None:
    t = turn("s6", offering_uuids=[OFFER])
    apply_batch(con, to_records([t, b"{not json", turn_v2("s7"), click(t, str(uuid.uuid4()))]))
    before = {(d.offset, d.reason): d.dead_lettered_at for d in iter_dead_letters(con)}

    result = retry(con, reason="unsupported_version", registry=v2_registry())

    assert result.offered == 1 and result.applied == {TURN: 1}
    after = {(d.offset, d.reason): d.dead_lettered_at for d in iter_dead_letters(con)}
    assert after == {k: v for k, v in before.items() if k[1] != "unsupported_version"}


# -- the command line ---------------------------------------------------------------------------------


@pytest.fixture
def file_with_dead_letters(tmp_path: Path) -> tuple[Path, list[Record]]:
    path = tmp_path / "rm.duckdb"
    t = turn("s8", offering_uuids=[OFFER])
    records = to_records(
        [t, b"\xff\xfe not even utf-8", turn_v2("s9"), feedback(t, 1, session_id="nope"), click(t, str(uuid.uuid4()))]
    )
    c = connect(path)
    apply_batch(c, records)
    c.close()
    return path, records


def test_export_writes_json_lines_whose_base64_gives_back_the_raw_bytes(
    file_with_dead_letters: tuple[Path, list[Record]], tmp_path: Path
) -> None:
    path, records = file_with_dead_letters
    out = tmp_path / "dead.jsonl"
    assert main(["dead-letters", "export", str(out), "--db", str(path)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(d["partition"], d["offset"], d["reason"]) for d in lines] == [
        (0, 1, "invalid_json"),
        (0, 2, "unsupported_version"),
        (0, 3, "session_mismatch"),
        (0, 4, "unknown_offering"),
    ]
    for d in lines:
        record = records[d["offset"]]
        assert base64.b64decode(d["value"]) == record.value
        assert (None if d["key"] is None else base64.b64decode(d["key"])) == record.key
        assert d["topic"] == "chat.events" and d["detail"]
    assert lines[0]["key"] is None and lines[2]["key"] == base64.b64encode(b"nope").decode()


def test_list_filters_by_reason_and_limits(
    file_with_dead_letters: tuple[Path, list[Record]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = file_with_dead_letters
    assert main(["dead-letters", "list", "--db", str(path), "--json", "--reason", "unknown_offering"]) == 0
    (only,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert only["reason"] == "unknown_offering" and "data.offering_uuid" in only["detail"]

    assert main(["dead-letters", "list", "--db", str(path), "--limit", "2"]) == 0
    text = capsys.readouterr().out
    assert "invalid_json" in text and "unsupported_version" in text and "session_mismatch" not in text
    assert "--limit N for more" in text


def test_cli_retry_with_nothing_new_to_apply_keeps_every_dead_letter(
    file_with_dead_letters: tuple[Path, list[Record]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = file_with_dead_letters
    c = connect(path)
    before = table_rows(c)
    c.close()
    assert main(["dead-letters", "retry", "--db", str(path)]) == 0
    assert "offered 4 dead letters" in capsys.readouterr().out
    c = connect(path)
    assert table_rows(c) == before
    c.close()


def test_a_file_that_does_not_exist_is_an_error_not_a_new_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.duckdb"
    assert main(["dead-letters", "list", "--db", str(missing)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()
