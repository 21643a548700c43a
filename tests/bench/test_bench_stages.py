"""`python -m bench.stages`: each stage of a rebuild measured alone, on a real topic and a real file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

from bench.stages import TABLES, TimedConnection, measure, report, write_rows
from bench.traffic import publish_topic
from projector.rebuild import fold_to, log_bounds, rebuild_source
from schemas.readmodel import connect


def test_every_stage_is_measured_over_every_record_of_the_topic(
    bootstrap_servers: str, topic: str, tmp_path: Path
) -> None:
    published = publish_topic(bootstrap_servers, topic, 3_000, 1, datetime.now(UTC))
    figures = measure(bootstrap_servers, topic, tmp_path, statements=5)
    assert figures["events"] == published.events
    stages = ("fetch_us", "prepare_us", "pickle_us", "receive_us", "fold_us", "fold_duckdb_us")
    for stage in (*stages, "write_floor_us", "search_terms_us", "parse_us"):
        assert figures[stage] > 0, stage
    assert figures["fold_duckdb_us"] <= figures["fold_us"]
    # The costliest statements are the fold's own, the commit of each transaction among them.
    assert len(figures["statements_us"]) == 5
    assert any(name == "COMMIT" for name in figures["statements_us"])
    assert "per event" in report(figures)
    assert "the floor of any fold" in report(figures)
    assert "the contract's checks" in report(figures)
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


def test_the_floor_writes_every_row_of_the_folded_file_again(
    bootstrap_servers: str, topic: str, tmp_path: Path
) -> None:
    publish_topic(bootstrap_servers, topic, 2_000, 1, datetime.now(UTC))
    folded_path = tmp_path / "folded.duckdb"
    folded = connect(folded_path)
    fold_to(folded, source=rebuild_source(bootstrap_servers, topic), bounds=log_bounds(bootstrap_servers, topic))
    assert write_rows(folded, tmp_path / "floor.duckdb", transactions=3) > 0
    folded.execute(f"ATTACH '{tmp_path / 'floor.duckdb'}' AS floor (READ_ONLY)")
    # The file's own tables are the schema's list, so the loop below compares every one of them.
    catalogue = "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    tables = {t for (t,) in folded.execute(catalogue).fetchall()}
    assert tables == set(TABLES)
    for table in TABLES:
        for a, b in (("main", "floor"), ("floor", "main")):
            ((extra,),) = folded.execute(
                f'SELECT count(*) FROM (SELECT * FROM {a}."{table}" EXCEPT ALL SELECT * FROM {b}."{table}")'
            ).fetchall()
            assert extra == 0, (table, a, b)
    ((turns,),) = folded.execute("SELECT count(*) FROM floor.interactions").fetchall()
    assert turns > 0
