"""What the fold's Arrow kernels (projector/dependents.py, batch_counts.py, session_plan.py) need of SQL,
spelled once with `pyarrow.compute`: a column of the row a key joins to, and `IS DISTINCT FROM`."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def joined(table: pa.Table, column: str, indices: pa.Array) -> pa.Array:
    """`table[column]` at `indices` (from `pc.index_in` on its key), null where the index is null: the
    column as a LEFT JOIN on that key gives it."""
    return table[column].combine_chunks().take(indices)


def is_distinct_from(a: pa.Array | pa.ChunkedArray, b: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """SQL's `a IS DISTINCT FROM b`: unequal, or exactly one of the two null."""
    same = pc.or_kleene(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))
    return pc.invert(same)
