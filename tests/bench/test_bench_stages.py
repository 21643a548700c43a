"""`python -m bench.stages`: each stage of a rebuild measured alone, on a real topic and a real file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

from bench.stages import TimedConnection, measure, report
from bench.traffic import publish_topic


def test_every_stage_is_measured_over_every_record_of_the_topic(
    bootstrap_servers: str, topic: str, tmp_path: Path
) -> None:
    published = publish_topic(bootstrap_servers, topic, 3_000, 1, datetime.now(UTC))
    figures = measure(bootstrap_servers, topic, tmp_path, statements=5)
    assert figures["events"] == published.events
    for stage in ("fetch_us", "prepare_us", "pickle_us", "receive_us", "fold_us", "fold_duckdb_us"):
        assert figures[stage] > 0, stage
    assert figures["fold_duckdb_us"] <= figures["fold_us"]
    # The costliest statements are the fold's own, the commit of each transaction among them.
    assert len(figures["statements_us"]) == 5
    assert any(name == "COMMIT" for name in figures["statements_us"])
    assert "per event" in report(figures)
    assert not list(tmp_path.glob("*.duckdb")), "the scratch file is removed"


def test_a_timed_connection_answers_as_the_connection_does_and_counts_each_statement() -> None:
    con = duckdb.connect()
    timed = TimedConnection(con)
    timed.execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)")
    assert timed.execute("SELECT sum(x) FROM t").fetchall() == [(499500,)]
    assert timed.sql("SELECT count(*) FROM t WHERE x < ?", params=[10]).fetchall() == [(10,)]
    assert set(timed.by_statement) == {
        "CREATE TABLE t AS SELECT range AS x FROM range(1000)",
        "SELECT sum(x) FROM t",
        "SELECT count(*) FROM t WHERE x < ?",
    }
    assert timed.cpu == sum(timed.by_statement.values())
