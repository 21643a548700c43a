"""Keeps `feedback_records` up to date with each batch, inside its transaction: the record of every
turn whose feedback or review a batch applied (pending events released by their turn's arrival
included) is copied again from its `interactions` row.

So the feedbacks endpoints count, filter and order the few turns that have a record in a narrow table
of their own instead of scanning the wide `interactions` table for them. The rows are a pure function
of `interactions`, so a rebuild, which runs the same fold, reaches the same table. Turns leave it with
their other rows: it is in `TURN_TABLES`, which an erasure or the retention purge deletes from
(projector/forget.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb

from schemas.readmodel import FEEDBACK_RECORD_COLUMNS, IS_FEEDBACK_RECORD

_DELETE = "DELETE FROM feedback_records WHERE uuid IN (SELECT unnest(?::UUID[]))"

_COPY = f"""
INSERT INTO feedback_records BY NAME
SELECT {", ".join(FEEDBACK_RECORD_COLUMNS)}
FROM interactions
WHERE uuid IN (SELECT unnest(?::UUID[])) AND {IS_FEEDBACK_RECORD}
"""


def refresh(con: duckdb.DuckDBPyConnection, uuids: Iterable[str]) -> None:
    """Copies the records of the turns `uuids` (interaction uuids) from `interactions` again, after the
    batch updated them; call inside the batch's transaction."""
    touched = sorted(set(uuids))
    if not touched:
        return
    con.execute(_DELETE, [touched])
    con.execute(_COPY, [touched])
