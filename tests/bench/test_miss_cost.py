"""`python -m bench.miss_cost`: the cost of each cache-miss request, per row and per statement."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import miss_cost
from projector.fold import apply_batch
from schemas.readmodel import connect
from tests.support.events import stream, to_records


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("miss-cost") / "rm.duckdb"
    con = connect(path)
    apply_batch(con, to_records(list(stream(600, seed=5, sessions=40))))
    con.close()
    return path


def test_each_row_asked_for_is_measured_with_the_statements_it_ran(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["retrieve (miss)", "kpi (miss)", "feedbacks list ?submitted_to (miss)"]
    argv = ["--db", str(db), "--requests", "4", "--warmup", "1", "--statements"]
    assert miss_cost.main([*argv, *(arg for row in rows for arg in ("--row", row))]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ") and "(miss)" in line]
    assert [line.split("|")[1].strip() for line in table] == rows
    # Each row's breakdown names the statements a miss runs: the snapshot mark, then the row's own.
    retrieve = out.split("retrieve (miss): CPU p50")[1].split("\n\n")[0]
    assert "FROM offsets" in retrieve and "FROM interactions WHERE uuid = ?" in retrieve
    assert "FROM feedback_records" in out.split("feedbacks list ?submitted_to (miss): CPU p50")[1]


def test_a_row_the_benchmark_has_not_is_refused_with_the_rows_it_has(db: Path) -> None:
    with pytest.raises(SystemExit, match="kpi \\(miss\\)"):
        miss_cost.main(["--db", str(db), "--row", "no such row"])
