"""Arrow tables lent to DuckDB for one statement (`projector.arrow_views`): what the fold's statements rely on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from projector.arrow_views import arrow_with, execute_with


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(tmp_path / "lent.duckdb")
    c.execute("CREATE TABLE kept (n BIGINT)")
    yield c
    c.close()


def test_a_statement_reads_and_writes_the_tables_lent_to_it(con: duckdb.DuckDBPyConnection) -> None:
    numbers = pa.table({"n": pa.array([1, 2, 3, 4], pa.int64())})
    evens = pa.table({"n": pa.array([2, 4, 6], pa.int64())})
    execute_with(con, "INSERT INTO kept SELECT n FROM numbers WHERE n > ?", [1], numbers=numbers)
    assert con.execute("SELECT n FROM kept ORDER BY n").fetchall() == [(2,), (3,), (4,)]
    both = execute_with(con, "SELECT count(*) FROM kept JOIN evens USING (n)", evens=evens).fetchall()
    assert both == [(2,)]
    table = arrow_with(con, "SELECT n * 10 AS n FROM numbers WHERE n <= $1 ORDER BY n", [2], numbers=numbers)
    assert table.to_pylist() == [{"n": 10}, {"n": 20}]


def test_nothing_lent_outlives_its_statement(con: duckdb.DuckDBPyConnection) -> None:
    execute_with(con, "SELECT count(*) FROM lent_once", lent_once=pa.table({"n": [1]})).fetchall()
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT count(*) FROM lent_once")
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall() == [(0,)]


@pytest.mark.parametrize("name", ["call", "sql", "options", "not a name", "class", "1st"])
def test_a_name_that_cannot_carry_a_table_is_refused(con: duckdb.DuckDBPyConnection, name: str) -> None:
    with pytest.raises(ValueError, match="cannot name a table lent"):
        execute_with(con, "SELECT 1", **{name: pa.table({"n": [1]})})


def test_threads_lending_the_same_name_each_read_their_own_table(tmp_path: Path) -> None:
    # The serving process folds in one thread while others may run statements: a lent table is the
    # statement's own, never another thread's of the same name.
    db = duckdb.connect(tmp_path / "threads.duckdb")
    rounds, threads = 200, 4
    start = threading.Barrier(threads)
    wrong: list[tuple[int, int]] = []

    def lend(value: int) -> None:
        cursor = db.cursor()
        table = pa.table({"n": pa.array([value] * (value + 1), pa.int64())})
        start.wait()
        for _ in range(rounds):
            ((total, rows),) = execute_with(
                cursor, "SELECT sum(n), count(*) FROM batch_rows", batch_rows=table
            ).fetchall()
            if (total, rows) != (value * (value + 1), value + 1):
                wrong.append((value, total))
        cursor.close()

    workers = [threading.Thread(target=lend, args=(v,)) for v in range(1, threads + 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    db.close()
    assert wrong == []
