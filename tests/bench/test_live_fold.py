"""`python -m bench.live_fold`: the live batches it times are real folds of the demo stream, and the
tables they leave are the ones the fold keeps (the narrow records equal a fresh copy)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from bench import live_fold
from tests.support.kept import kept_and_copied_records


def test_live_batches_are_folded_and_timed(tmp_path: Path) -> None:
    figures, costliest = live_fold.run(base=3_000, live=1_000, batch=250, directory=tmp_path, seed=3, statements=5)

    assert figures["batches"] == 4
    assert figures["cpu_mean_ms"] > 0
    # The breakdown names the fold's own statements, costliest first, within what the batches cost.
    assert len(costliest) == 5
    assert [ms for ms, _ in costliest] == sorted((ms for ms, _ in costliest), reverse=True)
    verbs = ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "(register an Arrow table)")
    assert all(name.startswith(verbs) for _, name in costliest), costliest
    assert sum(ms for ms, _ in costliest) <= figures["duckdb_cpu_mean_ms"] <= figures["cpu_mean_ms"]
    con = duckdb.connect(str(tmp_path / "live-fold-served.duckdb"), read_only=True)
    try:
        (folded,) = con.execute("SELECT count(*) FROM applied_events").fetchone() or (0,)
        kept, copied = kept_and_copied_records(con)
    finally:
        con.close()
    assert folded == 4_000
    assert kept and kept == copied
    # The base file is kept for the next run with the same --base.
    assert (tmp_path / "live-fold-base-3000.duckdb").exists()
