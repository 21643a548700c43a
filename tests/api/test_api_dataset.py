"""The hand-built data set of tests/support/api_data.py folds as its table says."""

from __future__ import annotations

from pathlib import Path

from tests.support.api_data import build_read_model


def test_the_dataset_folds_without_dead_letters_or_waiting_events(tmp_path: Path) -> None:
    handle = build_read_model(tmp_path / "rm.duckdb")
    con = handle.connection
    assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM pending_events").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM interactions").fetchone() == (7,)
