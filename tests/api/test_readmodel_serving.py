"""A served read model (schemas.readmodel.serving_settings): its session index, kept up to date by the
fold, and a read-only file served as it is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from projector.fold import apply_batch
from schemas.readmodel import ROW_GROUP_SIZE, connect
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, make_client
from tests.support.events import to_records, turn

PREFIX = "/api/anonymous-chat-interactions"
AT = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)


def _indexes(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}


SERVING = {"interactions_session_id", "interactions_user_slug"}


def test_a_served_file_gets_the_serving_indexes_and_the_fold_keeps_them_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "rm.duckdb"
    con = connect(path)
    early = [turn("s1", at=AT, user_slug="ann"), turn("s2", at=AT.replace(minute=1))]
    apply_batch(con, to_records(early))
    assert not SERVING & _indexes(con)  # a rebuild does not pay for them

    handle = ReadModelHandle(con, path)
    assert _indexes(con) >= SERVING
    client = make_client(handle)
    late = turn("s1", at=AT.replace(minute=2), user_slug="ann")
    apply_batch(con, to_records([late], start=2))

    page = client.get(f"{PREFIX}/by-user/ann/", params={"page_size": 1, "page": 2}, headers=AUTH)
    assert [r["uuid"] for r in page.json()] == [late["data"]["interaction_uuid"]]  # oldest first
    assert page.headers["X-Result-Count"] == "2"

    body = client.get(f"{PREFIX}/by-session/s1/", headers=AUTH)
    assert [r["uuid"] for r in body.json()] == [early[0]["data"]["interaction_uuid"], late["data"]["interaction_uuid"]]
    assert body.headers["X-Result-Count"] == "2"
    assert len(client.get(f"{PREFIX}/by-session/s2/", headers=AUTH).json()) == 1
    assert client.get(f"{PREFIX}/by-session/nobody/", headers=AUTH).json() == []


def test_the_next_file_of_a_switch_is_served_with_the_same_settings(tmp_path: Path) -> None:
    handle = ReadModelHandle(connect(tmp_path / "a.duckdb"), tmp_path / "a.duckdb")
    new = connect(tmp_path / "b.duckdb")
    handle.swap(new, tmp_path / "b.duckdb").close()
    assert _indexes(new) >= SERVING
    assert new.execute("SELECT current_setting('threads')").fetchone() == (1,)


def test_a_read_only_file_is_served_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "rm.duckdb"
    con = connect(path)
    first = turn("s1", at=AT)
    apply_batch(con, to_records([first]))
    con.close()

    read_only = duckdb.connect(str(path), read_only=True)
    client = make_client(ReadModelHandle(read_only, path))
    assert not SERVING & _indexes(read_only)
    assert [r["uuid"] for r in client.get(f"{PREFIX}/by-session/s1/", headers=AUTH).json()] == [
        first["data"]["interaction_uuid"]
    ]


def test_a_writer_appends_small_row_groups_and_its_cursors_read_the_file(tmp_path: Path) -> None:
    """A checkpoint rewrites each row group that filled since the last one whole, old rows included:
    the writer's row groups are ROW_GROUP_SIZE rows, not DuckDB's 122,880 (docs/architecture.md,
    "Checkpoints and freshness")."""
    path = tmp_path / "rm.duckdb"
    turns = [turn(f"s{i % 500}", at=AT.replace(second=i % 60)) for i in range(ROW_GROUP_SIZE + 2_000)]
    con = connect(path)
    for start in range(0, len(turns), 5_000):  # live batches, each appended to the last row group
        apply_batch(con, to_records(turns[start : start + 5_000], start=start))
    con.execute("CHECKPOINT")

    cursor = con.cursor()  # what every request and the projector use: the file, unnamed
    assert cursor.execute("SELECT count(*) FROM interactions").fetchone() == (len(turns),)
    sizes = cursor.execute(
        "SELECT row_group_id, max(count) FROM pragma_storage_info('interactions') GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert [rows for _group, rows in sizes] == [ROW_GROUP_SIZE, len(turns) - ROW_GROUP_SIZE]
    con.close()


def test_leases_reuse_idle_cursors_but_not_one_whose_work_failed_and_the_write_side_closes_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rm.duckdb"
    handle = ReadModelHandle(connect(path), path)
    with handle.reading() as cur:
        first = cur
        cur.execute("BEGIN TRANSACTION")
        cur.execute("ROLLBACK")
    with handle.reading() as cur:
        assert cur is first  # opening and closing a cursor per request costs more than a statement
        with pytest.raises(duckdb.Error):
            cur.execute("SELECT no_such_column FROM interactions")
    with handle.reading() as cur:
        assert cur is first  # the failure was caught inside the lease: the cursor is fine
    with pytest.raises(RuntimeError), handle.reading() as cur:
        cur.execute("BEGIN TRANSACTION")
        raise RuntimeError("the work failed inside its transaction")
    with pytest.raises(duckdb.ConnectionException):
        first.execute("SELECT 1")  # closed, never lent again with its transaction open
    with handle.reading() as cur:
        second = cur
        assert cur.execute("SELECT count(*) FROM interactions").fetchone() == (0,)
    with handle.exclusive(), pytest.raises(duckdb.ConnectionException):
        second.execute("SELECT 1")  # closed: a blue/green switch may close and replace the file
    with handle.reading() as cur:
        assert cur is not second
    handle.close()
