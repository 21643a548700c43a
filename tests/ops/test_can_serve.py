"""`api.admin.can_serve`: whether an older file may keep answering while `serve` rebuilds it. It must
say no when any endpoint's query would fail on the file (the endpoints would answer 500s), and yes for
a file every endpoint can read, such as one without `feedback_records`, which the feedbacks endpoints
then read from `interactions`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from api.admin import can_serve
from projector.fold import apply_batch
from schemas.readmodel import FEEDBACK_RECORDS_VERSION, connect
from serving.handle import ReadModelHandle
from tests.support.events import stream, to_records


def folded(path: Path, *statements: str) -> ReadModelHandle:
    """A small folded file, changed by `statements` as an older release might have left it."""
    con = connect(path)
    apply_batch(con, to_records(list(stream(400, seed=5, sessions=30))))
    for statement in statements:
        con.execute(statement)
    return ReadModelHandle(con, path)


def test_a_file_of_this_release_can_be_served(tmp_path: Path) -> None:
    assert can_serve(folded(tmp_path / "rm.duckdb"))


def test_a_file_from_before_feedback_records_can_be_served_from_interactions(tmp_path: Path) -> None:
    handle = folded(tmp_path / "rm.duckdb", "DROP TABLE feedback_records")
    handle.version = FEEDBACK_RECORDS_VERSION - 1
    assert can_serve(handle)
    # The same file claiming the version that has the table cannot serve the feedbacks endpoints.
    handle.version = FEEDBACK_RECORDS_VERSION
    assert not can_serve(handle)


@pytest.mark.parametrize(
    "statement",
    [
        # Read only by conversations/ without turn-level filters (the rows the projector keeps).
        "ALTER TABLE conversations DROP COLUMN body",
        # Read only by conversations/ and the KPI's conversation-level filters over grouped turns.
        "ALTER TABLE interactions DROP COLUMN model",
        # Read only by the feedbacks endpoints' `has_comment` filter.
        "ALTER TABLE feedback_records DROP COLUMN fb_comment",
        # Read by the list's `query` filter.
        "ALTER TABLE interactions DROP COLUMN search_terms",
    ],
)
def test_a_file_missing_what_an_endpoint_reads_cannot_be_served(tmp_path: Path, statement: str) -> None:
    assert not can_serve(folded(tmp_path / "rm.duckdb", statement))
