"""How a batch's set of keys (session ids, interaction uuids, event ids) goes into a statement that looks
them up.

As an IN list of parameters when the set is short: DuckDB then finds each key in the table's index
(`sessions` and `conversations` are keyed by session_id, `interactions` by uuid). As one list parameter,
unnested, it joins the list against the whole key column instead, which grows with the table: at a
million events (177,000 sessions) 10 ms for a live batch's hundred sessions, against ~3 ms looked up,
and a live batch's hundred uuids were 1.5-3x slower to find in `interactions` that way. A longer list
costs more to bind than it saves, and a catch-up batch's thousands are a join anyway (a table without
an index on the key, such as a million applied event ids, is scanned whatever the form: its callers ask
for no placeholders).

A table without an index on the key can still be read in part: DuckDB skips every row group whose
min/max of the column lies outside the ranges a statement names. That pays where the keys are stored
about in the order they arrive (a turn's `created`, an event id that begins with the time it was made:
a UUIDv7), so `ranges` merges a batch's keys into a few ranges that cover every one of them, and
`id_ranges` does so for event ids only while those ranges are a sliver of the id space (random
version-4 ids are spread over all of it, and a bound that skips nothing costs more than none).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from serving.parsed import parsed

IN_LIST_MAX = 300
# A batch's keys merged into at most this many ranges (the closest ones first): each range is one more
# comparison per row read, and a batch's keys mostly lie in one or two periods.
MAX_RANGES = 8
# Event ids are read by ranges only while these cover at most this share of the id space: a day of
# UUIDv7 ids is about 2**-38 of it, 500 random version-4 ids merged into 8 ranges over 95%.
ID_RANGES_MAX_SHARE = 2.0**-10


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...
    def __sub__(self, other: Any, /) -> Any: ...


K = TypeVar("K", bound=_Ordered)


def where_in(
    sql: str, keys: list[str], *, key_type: str = "VARCHAR", max_placeholders: int = IN_LIST_MAX
) -> tuple[str, list[Any]]:
    """`sql`, whose `{}` is where the set of `keys` goes (`... IN ({})`), and its parameters: up to
    `max_placeholders` keys as one placeholder each, more as one list of `key_type` (a fixed SQL type
    name), unnested."""
    if len(keys) <= max_placeholders:
        return sql.format(", ".join("?" * len(keys))), list(keys)
    return sql.format(f"SELECT unnest(?::{key_type}[])"), [keys]


def narrowed(
    sql: str, column: str, keys: list[str] | pa.Array | pa.ChunkedArray, *, max_placeholders: int = IN_LIST_MAX
) -> tuple[str, list[Any]]:
    """`sql`, a statement that joins a batch's rows to a table by key and ends with its WHERE clause, with
    `AND column IN (?, ...)` over `keys` when they are few, and its parameters: the join alone scans
    the table's whole key column, the list lets DuckDB find those keys in the index first. Unchanged
    for a longer set, which the join is cheaper for."""
    if not len(keys) or len(keys) > max_placeholders:
        return sql, []
    values = keys if isinstance(keys, list) else keys.to_pylist()
    return f"{sql} AND {column} IN ({', '.join('?' * len(values))})", values


def execute_in(con: duckdb.DuckDBPyConnection, sql: str, keys: list[str]) -> duckdb.DuckDBPyConnection:
    """Runs `sql` (see `where_in`) over `keys`."""
    statement, params = where_in(sql, keys)
    return con.execute(parsed(statement), params)


def ranges(spans: Sequence[tuple[K, K]], limit: int = MAX_RANGES) -> list[tuple[K, K]]:
    """The spans (low, high) merged into at most `limit` sorted, disjoint ranges covering all of them:
    overlapping ones first, then across the smallest gaps, so that the `limit - 1` largest gaps between
    them stay outside every range."""
    merged: list[tuple[K, K]] = []
    for low, high in sorted(spans):
        if merged and not merged[-1][1] < low:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    if not merged:
        return []
    gaps = pa.array([b[0] - a[1] for a, b in zip(merged, merged[1:], strict=False)])
    return [(merged[first][0], merged[last][1]) for first, last in _split_at_largest_gaps(gaps, limit)]


def _split_at_largest_gaps(gaps: pa.Array, limit: int) -> list[tuple[int, int]]:
    """For sorted items with `gaps[i]` between items i and i + 1 (numbers or durations): the (first, last)
    item indexes of at most `limit` groups, split at the `limit - 1` largest gaps. Arrow picks them
    (`select_k_unstable`: a batch's 50,000 event ids have as many gaps; which of several equal gaps it
    picks is unspecified, and the groups cover every item either way)."""
    splits: list[int] = []
    if limit > 1 and len(gaps):
        largest = pc.select_k_unstable(gaps, min(limit - 1, len(gaps)), sort_keys=[("", "descending")])
        splits = sorted(largest.to_pylist())
    starts = [0, *(i + 1 for i in splits)]
    return list(zip(starts, [*splits, len(gaps)], strict=True))


def id_ranges(ids: pa.Array | pa.ChunkedArray, limit: int = MAX_RANGES) -> list[tuple[str, str]] | None:
    """At most `limit` ranges (as UUID text) that cover every one of `ids` (UUIDs of 36 characters, as
    DuckDB prints them, which it orders as their text orders), or None when those would cover more than
    ID_RANGES_MAX_SHARE of the id space. The ranges are split at the `limit - 1` largest gaps between the
    ids' first 64 bits, and each bounds those bits only: from `…-0000-000000000000` to
    `…-ffff-ffffffffffff`. The bits are read from the ids' text in one pass of bytes functions and sorted
    as numbers in Arrow: a catch-up batch's 40,000 ids in ~8 ms, where sorting the texts took ~15."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if ids.null_count:
        ids = pc.drop_null(ids)
    if not len(ids) or pc.min_max(pc.utf8_length(ids)).as_py() != {"min": 36, "max": 36}:
        return None  # none, or some not spelled as DuckDB prints a UUID: no bounds
    offsets = ids.buffers()[1]  # int32 start of each string in the value buffer, and the end of the last
    first = struct.unpack_from("<i", offsets, 4 * ids.offset)[0]
    texts = ids.buffers()[2].to_pybytes()[first : first + 36 * len(ids)]
    if any(texts[at::36] != b"-" * len(ids) for at in (8, 13, 18, 23)):
        return None  # not all spelled 8-4-4-4-12
    try:
        # 32 hex digits per id once the dashes are gone, 16 bytes: the first 8 are the bits the ranges split on.
        digits = bytes.fromhex(texts.translate(None, b"-").decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if len(digits) != 16 * len(ids):
        return None
    tops = pa.array(struct.unpack(">" + "Q8x" * len(ids), digits), pa.uint64())
    tops = pc.unique(tops).sort()
    groups = _split_at_largest_gaps(pc.pairwise_diff(tops).slice(1), limit)  # gaps[i]: between items i and i + 1
    # Only the groups' ends become Python ints, not every id's bits.
    lows = tops.take([first for first, _ in groups]).to_pylist()
    highs = tops.take([last for _, last in groups]).to_pylist()
    if sum(high - low for low, high in zip(lows, highs, strict=True)) > ID_RANGES_MAX_SHARE * 2**64:
        return None
    return [
        (_uuid_text(low, "0000-000000000000"), _uuid_text(high, "ffff-ffffffffffff"))
        for low, high in zip(lows, highs, strict=True)
    ]


def _uuid_text(top: int, rest: str) -> str:
    """The UUID whose first 64 bits are `top`, then `rest` (its last 64, as text)."""
    head = f"{top:016x}"
    return f"{head[:8]}-{head[8:12]}-{head[12:]}-{rest}"


def within(column: str, spans: Sequence[tuple[Any, Any]], key_type: str) -> str:
    """The condition that `column` lies in one of `spans`, with two placeholders of `key_type` (a fixed SQL
    type name) each (`range_params`)."""
    return " OR ".join([f"{column} BETWEEN ?::{key_type} AND ?::{key_type}"] * len(spans))


def range_params(spans: Sequence[tuple[Any, Any]]) -> list[Any]:
    return [bound for span in spans for bound in span]
