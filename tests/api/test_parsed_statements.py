"""Statements parsed once (serving.parsed): a parsed statement answers exactly as its text does, with any
parameters, from any thread, and a table lent to it is still found."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from api.interactions_sql import SELECT_ONE
from projector.arrow_views import arrow_with, execute_with
from projector.fold import apply_batch
from schemas.readmodel import connect
from serving.changes import MARK_SQL
from serving.parsed import parsed, text_of
from tests.support.events import feedback, to_records, turn


@pytest.fixture
def folded(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / "rm.duckdb")
    turns = [turn(f"s{i % 7}", user_input=f"question {i}") for i in range(60)]
    apply_batch(con, to_records([*turns, feedback(turns[3], score=1), feedback(turns[9], score=-1)]))
    return con


def _uuids(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [u for (u,) in con.execute("SELECT uuid::VARCHAR FROM interactions ORDER BY uuid").fetchall()]


def test_a_parsed_statement_gives_the_rows_its_text_gives(folded: duckdb.DuckDBPyConnection) -> None:
    uuids = _uuids(folded)
    assert len(uuids) == 60
    for uuid in [*uuids, "00000000-0000-0000-0000-000000000000"]:
        assert folded.execute(parsed(SELECT_ONE), [uuid]).fetchall() == folded.execute(SELECT_ONE, [uuid]).fetchall()
    assert folded.execute(parsed(MARK_SQL)).fetchall() == folded.execute(MARK_SQL).fetchall()
    # Named parameters, and a relation (`sql`) as well as a result.
    named = "SELECT count(*) FROM interactions WHERE session_id = $1 OR session_id = $2"
    assert folded.execute(parsed(named), ["s1", "s2"]).fetchall() == [(18,)]
    assert folded.sql(parsed("SELECT count(*) FROM interactions WHERE fb_score = ?"), params=[1]).fetchall() == [(1,)]


def test_the_same_text_is_parsed_once_and_its_text_kept() -> None:
    sql = "SELECT 1 AS one -- test_the_same_text_is_parsed_once"
    assert parsed(sql) is parsed(sql)
    assert text_of(parsed(sql)) == sql
    assert text_of(sql) == sql


def test_only_one_statement_and_a_syntax_error_is_duckdbs() -> None:
    with pytest.raises(ValueError, match="one statement"):
        parsed("SELECT 1; SELECT 2")
    with pytest.raises(duckdb.ParserException):
        parsed("SELEC 1")


def test_a_lent_table_is_found_by_a_parsed_statement(folded: duckdb.DuckDBPyConnection) -> None:
    """The fold's tables lent for one statement (projector.arrow_views) go through `parsed`: DuckDB still
    finds them when it binds the parsed copy."""
    uuids = _uuids(folded)
    keys = pa.table({"uuid": pa.array([uuids[0], uuids[5], "not-a-uuid"], pa.string())})
    sql = "SELECT count(*) FROM interactions i JOIN wanted w ON i.uuid::VARCHAR = w.uuid"
    assert execute_with(folded, sql, wanted=keys).fetchall() == [(2,)]
    assert arrow_with(folded, sql, wanted=keys).to_pylist() == [{"count_star()": 2}]


def test_one_parsed_statement_serves_many_threads_at_once(folded: duckdb.DuckDBPyConnection) -> None:
    """Requests run on threads of their own, each with its own cursor, and share the parsed statements."""
    uuids = _uuids(folded)
    expected = {u: folded.execute(SELECT_ONE, [u]).fetchall() for u in uuids}
    statement = parsed(SELECT_ONE)
    wrong: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def work(offset: int) -> None:
        cur = folded.cursor()
        try:
            start.wait()
            for i in range(150):
                uuid = uuids[(offset * 17 + i) % len(uuids)]
                if cur.execute(statement, [uuid]).fetchall() != expected[uuid]:
                    wrong.append(uuid)
        except BaseException as exc:  # reported below, in the test's own thread
            failures.append(exc)
        finally:
            cur.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert not wrong
    assert not any(t.is_alive() for t in threads)
