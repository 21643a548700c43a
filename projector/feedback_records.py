"""Keeps `feedback_records` up to date with each batch, inside its transaction, from the rows the batch
already holds: the last applied feedback and review of each turn (`new_feedback`, `new_reviews`) and each
updated turn as it stood before the batch (`changed_turns`). A turn that had a record gets the columns
its events set, as `interactions` gets them (`FEEDBACK_SETS`, `REVIEW_SETS`); a turn that had none held
the defaults of a new turn (`schemas.readmodel.RECORD_DEFAULTS`), so its record is those defaults with
its events' columns over them.

So the feedbacks endpoints count, filter and order the few turns that have a record in a narrow table
of their own instead of scanning the wide `interactions` table for them, and keeping it never reads
`interactions` either: copying the records again from there cost a scan of its uuid column per batch
(`uuid IN (SELECT unnest(?))` is a join, never an index lookup), which grew with the file and was most
of what the table cost the live fold (docs/architecture.md, "How the fold stays fast").

The rows are a pure function of `interactions`, so a rebuild, which runs the same fold, reaches the same
table. Turns leave it with their other rows: it is in `TURN_TABLES`, which an erasure or the retention
purge deletes from (projector/forget.py).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from projector.arrow_views import execute_with
from projector.prepare import FeedbackRow, ReviewRow
from schemas.readmodel import RECORD_DEFAULTS

# The columns a feedback sets, from the batch's `new_feedback` rows (`projector.dependents.latest_of_each_turn`: the
# fields of `FeedbackRow`), and those a review sets, from `new_reviews` (of `ReviewRow`): the same in
# `interactions` and in `feedback_records`.
FEEDBACK_SETS: dict[str, str] = {f"fb_{name}": name for name in FeedbackRow._fields if name != "uuid"}
REVIEW_SETS: dict[str, str] = {f"llm_{name}": name for name in ReviewRow._fields if name != "uuid"}
assert {*FEEDBACK_SETS, *REVIEW_SETS} == set(RECORD_DEFAULTS), "a record column that no event sets"


def update_sql(table: str, source: str, sets: dict[str, str], also: str = "") -> str:
    """`UPDATE table` with the columns `sets` names, from the rows of `source` with the same uuid, and the
    assignment `also` (SQL) when given."""
    assignments = ", ".join([*(f"{column} = s.{value}" for column, value in sets.items()), *([also] if also else [])])
    return f"UPDATE {table} SET {assignments} FROM {source} s WHERE {table}.uuid = s.uuid::UUID"


_UPDATE_FEEDBACK = update_sql("feedback_records", "new_feedback", FEEDBACK_SETS)
_UPDATE_REVIEWS = update_sql("feedback_records", "new_reviews", REVIEW_SETS)


def _new_column(column: str) -> str:
    alias, sets = ("f", FEEDBACK_SETS) if column in FEEDBACK_SETS else ("r", REVIEW_SETS)
    return f"CASE WHEN {alias}.uuid IS NULL THEN {RECORD_DEFAULTS[column]} ELSE {alias}.{sets[column]} END AS {column}"


# The records of the updated turns that had none: no feedback nor review before the batch.
_INSERT_NEW = f"""
INSERT INTO feedback_records BY NAME
SELECT t.uuid::UUID AS uuid, {", ".join(_new_column(column) for column in RECORD_DEFAULTS)}
FROM changed_turns t
LEFT JOIN new_feedback f ON f.uuid = t.uuid
LEFT JOIN new_reviews r ON r.uuid = t.uuid
WHERE (f.uuid IS NOT NULL OR r.uuid IS NOT NULL) AND t.before_fb_score IS NULL AND t.before_llm_reviewed_at IS NULL
"""


def refresh(con: duckdb.DuckDBPyConnection, feedback: pa.Table, reviews: pa.Table, changed: pa.Table) -> None:
    """Brings the records of the turns the batch's `feedback` and `reviews` update up to date; `changed` is
    every updated turn as it stood (`projector.dependents.changed_turns`: `uuid`, `before_fb_score`,
    `before_llm_reviewed_at`). The statements read them as `new_feedback`, `new_reviews` and
    `changed_turns`; call inside the batch's transaction."""
    if not feedback.num_rows and not reviews.num_rows:
        return
    recorded = changed.filter(
        pc.or_(pc.is_valid(changed["before_fb_score"]), pc.is_valid(changed["before_llm_reviewed_at"]))
    )["uuid"]
    # Each statement runs only when it has a row to write: an UPDATE scans the table's uuid column.
    had_feedback = _count_in(feedback["uuid"], recorded)
    had_reviews = _count_in(reviews["uuid"], recorded)
    if had_feedback:
        execute_with(con, _UPDATE_FEEDBACK, new_feedback=feedback)
    if had_reviews:
        execute_with(con, _UPDATE_REVIEWS, new_reviews=reviews)
    if had_feedback < feedback.num_rows or had_reviews < reviews.num_rows:
        execute_with(con, _INSERT_NEW, changed_turns=changed, new_feedback=feedback, new_reviews=reviews)


def _count_in(uuids: pa.ChunkedArray, among: pa.ChunkedArray) -> int:
    if not len(uuids) or not len(among):
        return 0
    return int(pc.sum(pc.is_in(uuids, value_set=among), min_count=0).as_py())
