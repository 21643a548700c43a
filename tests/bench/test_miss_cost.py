"""`python -m bench.miss_cost`: the cost of each cache-miss request, per row and per statement."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import miss_cost


def test_each_row_asked_for_is_measured_with_the_statements_it_ran(
    small_read_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["retrieve (miss)", "kpi (miss)", "feedbacks list ?submitted_to (miss)"]
    argv = ["--db", str(small_read_model), "--requests", "4", "--warmup", "1", "--statements"]
    assert miss_cost.main([*argv, *(arg for row in rows for arg in ("--row", row))]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ") and "(miss)" in line]
    assert [line.split("|")[1].strip() for line in table] == rows
    # Each row's breakdown names the statements a miss runs: the snapshot mark, then the row's own.
    retrieve = out.split("retrieve (miss): CPU p50")[1].split("\n\n")[0]
    assert "FROM offsets" in retrieve and "FROM interactions WHERE uuid = ?" in retrieve
    assert "FROM feedback_records" in out.split("feedbacks list ?submitted_to (miss): CPU p50")[1]


def test_a_row_the_benchmark_has_not_is_refused_with_the_rows_it_has(small_read_model: Path) -> None:
    with pytest.raises(SystemExit, match="kpi \\(miss\\)"):
        miss_cost.main(["--db", str(small_read_model), "--row", "no such row"])
