"""The duplicate check reads only the stored event ids within ranges around a batch's
(`keysets.id_ranges`, `apply.accept_new_event_ids`): it must accept exactly the ids not stored yet,
whatever mix of time-ordered (UUIDv7) and random (version 4) ids, old re-sends and repeats a batch
holds, and with time-ordered ids DuckDB must skip the row groups of the older ones."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.envelope import new_event_id, uuid7_int
from projector.apply import accept_new_event_ids, accept_statement
from projector.arrow_views import execute_with
from projector.keysets import ID_RANGES_MAX_SHARE, MAX_RANGES, id_ranges
from schemas.readmodel import connect

START_MS = 1_764_000_000_000  # 2025-11-24
STORED_V7 = 300_000  # more than two of DuckDB's row groups (122,880 rows)
STORED_V4 = 50


def _v7(ms: int, rng: random.Random) -> str:
    return str(uuid.UUID(int=uuid7_int(ms, rng.getrandbits(74))))


def _v4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _top(text: str) -> int:
    """A UUID's first 64 bits, which `id_ranges` splits and bounds on."""
    return uuid.UUID(text).int >> 64


def _file(directory: Path, ids: list[str]) -> duckdb.DuckDBPyConnection:
    """A read-model file whose `applied_events` holds `ids` in this order (the fold stores them in arrival
    order); checkpointed, so that DuckDB keeps each row group's min/max."""
    con = connect(directory / "ids.duckdb")
    execute_with(
        con, "INSERT INTO applied_events SELECT event_id::UUID FROM stored_ids", stored_ids=pa.table({"event_id": ids})
    )
    con.execute("CHECKPOINT")
    return con


def _time_ordered(rng: random.Random) -> list[str]:
    return [_v7(START_MS + 10 * i, rng) for i in range(STORED_V7)]  # one every 10 ms


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[str]]]:
    """Time-ordered ids with a few random version-4 ids among them."""
    rng = random.Random(5)
    ids = _time_ordered(rng)
    for _ in range(STORED_V4):
        ids.insert(rng.randrange(len(ids)), _v4(rng))
    con = _file(tmp_path_factory.mktemp("mixed"), ids)
    yield con, ids
    con.close()


@pytest.fixture(scope="module")
def stored_in_time_order(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[str]]]:
    """Only time-ordered ids, as a producer that makes UUIDv7 ids publishes them."""
    ids = _time_ordered(random.Random(6))
    con = _file(tmp_path_factory.mktemp("ordered"), ids)
    yield con, ids
    con.close()


def _accept(con: duckdb.DuckDBPyConnection, batch: list[str]) -> tuple[set[str], int]:
    """The ids the check accepts for `batch`, and `applied_events`' rows afterwards; rolled back."""
    con.execute("BEGIN TRANSACTION")
    try:
        table = pa.table({"event_id": pa.array(batch, pa.string())})
        accepted = accept_new_event_ids(con, table).to_pylist()
        ((rows,),) = con.execute("SELECT count(*) FROM applied_events").fetchall()
    finally:
        con.execute("ROLLBACK")
    assert len(accepted) == len(set(accepted)), "an id accepted twice"
    return set(accepted), rows


@st.composite
def batches(draw: st.DrawFn, stored_ids: list[str]) -> list[str]:
    """New time-ordered ids after the stored ones (the live case), re-sends of stored ids of any age,
    new random ids, and repeats within the batch, in any order."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    fresh = [
        _v7(START_MS + 10 * STORED_V7 + draw(st.integers(0, 60_000)), rng) for _ in range(draw(st.integers(0, 300)))
    ]
    # Any spelling DuckDB reads as the same UUID is the same id (the prepare paths send its own).
    spell = st.sampled_from([str, str.upper, lambda i: i.replace("-", ""), lambda i: "{" + i + "}"])
    resent = [draw(spell)(i) for i in draw(st.lists(st.sampled_from(stored_ids), max_size=12))]
    random_new = [_v4(rng) for _ in range(draw(st.integers(0, 10)))]
    batch = fresh + resent + random_new
    batch += draw(st.lists(st.sampled_from(batch), max_size=5)) if batch else []
    return draw(st.permutations(batch)) if batch else [_v7(START_MS, rng)]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_check_accepts_exactly_the_ids_not_stored_yet(
    stored: tuple[duckdb.DuckDBPyConnection, list[str]], data: st.DataObject
) -> None:
    con, stored_ids = stored
    batch = data.draw(batches(stored_ids))
    accepted, rows = _accept(con, batch)
    assert accepted == {str(uuid.UUID(i)) for i in batch} - set(stored_ids)
    assert rows == len(stored_ids) + len(accepted)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.integers(0, 2**128 - 1), st.integers(START_MS, START_MS + 10**7)), min_size=1, max_size=80)
)
def test_the_ranges_cover_every_id_and_are_few_sorted_and_apart(numbers: list[int]) -> None:
    rng = random.Random(len(numbers))
    # A number below 2**48 is a UUIDv7's milliseconds; above, the id itself.
    ids = [_v7(n, rng) if n < 2**48 else str(uuid.UUID(int=n)) for n in numbers]
    spans = id_ranges(pa.array(ids))
    if spans is None:
        return
    assert 1 <= len(spans) <= MAX_RANGES
    assert all(low <= high for low, high in spans)
    assert all(high < low for (_, high), (low, _) in zip(spans, spans[1:], strict=False))
    assert all(any(uuid.UUID(low) <= uuid.UUID(i) <= uuid.UUID(high) for low, high in spans) for i in ids)
    # No wider than the ids' first 64 bits: each range starts and ends at some id's, all of them its own.
    tops = {_top(i) for i in ids}
    assert all(_top(low) in tops and _top(high) in tops for low, high in spans)
    assert all(low.endswith("-0000-000000000000") and high.endswith("-ffff-ffffffffffff") for low, high in spans)


@pytest.mark.parametrize(
    "odd",
    [
        "0190a1b2c3d47e5f8a6b7c8d9e0f1a2b3c4d",  # 36 hex digits, no dashes
        "0190a1b2-c3d4-7e5f-8a6b7c8d-9e0f1a2b",  # 36 characters, dashes elsewhere
        "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2",  # 35 characters
        "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2g",  # not hex
        "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f 1a2",  # a space, which bytes.fromhex would skip
    ],
)
def test_ids_spelled_otherwise_get_no_ranges_at_all(odd: str) -> None:
    rng = random.Random(9)
    ids = [_v7(START_MS + i, rng) for i in range(50)]
    assert id_ranges(pa.array(ids)) is not None
    assert id_ranges(pa.array([*ids[:25], odd, *ids[25:]])) is None


def test_random_ids_are_not_bounded_and_time_ordered_ones_are_even_with_a_few_old_ones_among_them() -> None:
    rng = random.Random(3)
    assert id_ranges(pa.array([_v4(rng) for _ in range(500)])) is None
    live = [_v7(START_MS + i, rng) for i in range(500)]
    old = [_v4(rng) for _ in range(3)] + [_v7(START_MS - 86_400_000 * 300, rng)]
    spans = id_ranges(pa.array(live + old))
    assert spans is not None
    width = sum(int(high.replace("-", ""), 16) - int(low.replace("-", ""), 16) for low, high in spans)
    assert width <= ID_RANGES_MAX_SHARE * 2**128
    # Each old id alone in a range of its own: a range bounds the first 64 bits of its ids.
    assert sorted(_top(o) for o in old) == [_top(low) for low, high in spans if _top(low) == _top(high)]


def test_with_time_ordered_ids_duckdb_reads_only_the_row_groups_of_the_recent_ones(
    stored_in_time_order: tuple[duckdb.DuckDBPyConnection, list[str]],
) -> None:
    """The point of the ranges: a live batch of new ids with an old re-send among them reads the row
    groups that hold them, not every one. (A row group that holds one random id among its time-ordered
    ones spans nearly all ids, and is read whatever the ranges: the check stays exact, only slower.)"""
    con, stored_ids = stored_in_time_order
    rng = random.Random(9)
    batch = [_v7(START_MS + 10 * STORED_V7 + i, rng) for i in range(500)] + [stored_ids[1]]
    ((groups,),) = con.execute(
        "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('applied_events')"
    ).fetchall()
    assert groups >= 3
    table = pa.table({"event_id": batch})
    sql, params = accept_statement(table["event_id"])
    con.execute("BEGIN TRANSACTION")
    try:
        ((_, plan),) = execute_with(con, f"EXPLAIN ANALYZE {sql}", params, batch_event_ids=table).fetchall()
    finally:
        con.execute("ROLLBACK")
    scans = [(int(a), int(b)) for a, b in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", plan)]
    assert [total for _, total in scans] == [groups], plan
    ((scanned, _),) = scans
    assert scanned <= 2, plan  # the first row group (the re-send) and the last one (the new ids' neighbours)


def test_ids_made_later_sort_after_in_duckdb_as_in_text() -> None:
    ids = [new_event_id(START_MS + step) for step in (0, 1, 1, 2, 1_000, 86_400_000)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert [uuid.UUID(i).int >> 80 for i in ids] == [START_MS + s for s in (0, 1, 1, 2, 1_000, 86_400_000)]
    con = duckdb.connect()
    ordered = [str(u) for (u,) in con.execute("SELECT unnest(?::UUID[]) AS u ORDER BY u", [ids]).fetchall()]
    assert ordered == sorted(ids)
    by_time = [i for _, i in sorted((uuid.UUID(i).int >> 80, i) for i in ids)]
    assert [uuid.UUID(i).int >> 80 for i in ordered] == [uuid.UUID(i).int >> 80 for i in by_time]
