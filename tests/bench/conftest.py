"""What several benchmark tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from projector.fold import apply_batch
from schemas.readmodel import connect
from tests.support.events import stream, to_records


@pytest.fixture(scope="module")
def small_read_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read model folded from 600 generated events in 40 sessions: every endpoint has rows to answer."""
    path = tmp_path_factory.mktemp("read-model") / "rm.duckdb"
    con = connect(path)
    apply_batch(con, to_records(list(stream(600, seed=5, sessions=40))))
    con.close()
    return path
