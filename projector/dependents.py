"""Feedback, clicks and reviews against the turns they name, as Arrow kernels over one batch's rows.

A dependent event applies to its turn, waits for it, or is a dead letter; the turns it applies to are
counted out as they stood and in as the batch leaves them. Those are decisions over a batch's few rows
(a few hundred in a live batch): as DuckDB statements over registered Arrow tables they cost a live batch
~25 ms of binding and planning alone (~10 and ~14 ms for the two statements, plus ~1 ms per registered
table), whatever their rows; these kernels do the same in well under a millisecond, and stay linear in
a catch-up batch. `tests/projector/test_dependents.py` holds the statements they replaced and proves
both give the same rows on generated batches.

The tables (projector/apply.py builds them): `turns`, the turns the batch's dependents may name
(`named_turns`: the stored ones as the lookup read them, then the batch's new ones); `feedback`,
`reviews`, `clicks`, one row per dependent event (`_dependent_table`: its row's fields, `ord`, its
place in log order among the dependents, and the session it names).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from projector.aggregates import TURN_STATE
from projector.arrow_sql import is_distinct_from, joined
from schemas.events import FEEDBACK_SUBMITTED as FEEDBACK
from schemas.events import OFFERING_CLICKED as CLICK
from schemas.events import SESSION_REVIEWED as REVIEW
from schemas.registry import SESSION_MISMATCH, UNKNOWN_OFFERING

# The verdict of a dependent event when it applies, and when its turn is not there (it waits, or is
# dropped as older than the retention horizon).
APPLY = "apply"
NO_TURN = "no_turn"

# What a turn is named by and what the dependents read of it; then the state they change.
TURN_KEYS = ("uuid", "session_id", "offering_uuids", "user_slug", "created_date", "created")
NAMED_COLUMNS = (*TURN_KEYS, *TURN_STATE)
# The state of a turn the batch has just inserted: no clicks, feedback or review yet (as _INSERT_TURNS
# of projector/apply.py writes it: `schemas.readmodel.RECORD_DEFAULTS` and a click count of 0).
NEW_TURN_STATE: dict[str, object] = {
    "click_count": 0,
    "fb_score": None,
    "llm_reviewed_at": None,
    "llm_resolution_score": None,
    "llm_hallucination_detected": False,
    "llm_input_tokens": 0,
    "llm_output_tokens": 0,
}
assert tuple(NEW_TURN_STATE) == TURN_STATE, "a turn state column without its value for a new turn"

VERDICT_SCHEMA = pa.schema(
    [("ord", pa.int64()), ("type", pa.string()), ("verdict", pa.string()), ("turn_session", pa.string())]
)
# What a review sets, by the column of the turn's state it replaces.
_REVIEW_STATE = {
    "llm_reviewed_at": "reviewed_at",
    "llm_resolution_score": "resolution_score",
    "llm_hallucination_detected": "hallucination_detected",
    "llm_input_tokens": "input_tokens",
    "llm_output_tokens": "output_tokens",
}


def named_turns(stored: pa.Table, arrived: pa.Table | None) -> pa.Table:
    """The turns a batch's dependents may name: `stored` (as `_READ_TURNS` read them, which gives the
    types), then the `arrived` turns the batch inserts, in the state of a new turn. A uuid is in at most
    one of them: a second turn of an interaction never reaches `arrived`."""
    named = stored.select(list(NAMED_COLUMNS))
    if arrived is None or not arrived.num_rows:
        return named
    n = arrived.num_rows
    schema = named.schema
    columns = [arrived[name].cast(schema.field(name).type) for name in TURN_KEYS]
    columns += [pa.array([NEW_TURN_STATE[name]] * n, schema.field(name).type) for name in TURN_STATE]
    return pa.concat_tables([named, pa.Table.from_arrays(columns, schema=schema)])


def _lookup(keys: pa.ChunkedArray | pa.Array, table: pa.Table, key: str) -> pa.Array:
    """For each of `keys`, the index of its row in `table` by the column `key` (unique there), or null."""
    return pc.index_in(keys, value_set=table[key])


def verdicts(turns: pa.Table, feedback: pa.Table, reviews: pa.Table, clicks: pa.Table) -> pa.Table:
    """Each dependent event's verdict in log order (`ord`), with its type and its turn's session: no turn
    (NO_TURN), a turn of another session (SESSION_MISMATCH), a click on an offering its turn did not
    suggest (UNKNOWN_OFFERING), else APPLY. The offering is looked for as the quoted canonical UUID in
    the turn's stored JSON array (both prepare paths write it so); a turn without that array accepts it."""
    sizes = (feedback.num_rows, reviews.num_rows, clicks.num_rows)
    ords = pa.concat_arrays([t["ord"].combine_chunks().cast(pa.int64()) for t in (feedback, reviews, clicks)])
    types = pa.array([t for t, n in zip((FEEDBACK, REVIEW, CLICK), sizes, strict=True) for _ in range(n)], pa.string())
    named = pa.concat_arrays(
        [c.combine_chunks().cast(pa.string()) for c in (feedback["uuid"], reviews["uuid"], clicks["interaction_uuid"])]
    )
    sessions = pa.concat_arrays(
        [t["session_id"].combine_chunks().cast(pa.string()) for t in (feedback, reviews, clicks)]
    )
    found = _lookup(named, turns, "uuid")
    turn_session = joined(turns, "session_id", found).cast(pa.string())
    mismatched = is_distinct_from(sessions, turn_session)
    offered = joined(turns, "offering_uuids", found[sizes[0] + sizes[1] :]).to_pylist()
    unknown = pa.array(
        [False] * (sizes[0] + sizes[1])
        + [
            offering is not None and listed is not None and f'"{offering}"' not in listed
            for offering, listed in zip(clicks["offering_uuid"].to_pylist(), offered, strict=True)
        ],
        pa.bool_(),
    )
    verdict = pc.if_else(
        pc.is_null(found),
        NO_TURN,
        pc.if_else(mismatched, SESSION_MISMATCH, pc.if_else(unknown, UNKNOWN_OFFERING, APPLY)),
    )
    table = pa.Table.from_arrays([ords, types, verdict, turn_session], schema=VERDICT_SCHEMA)
    return table.take(pc.sort_indices(ords))


def applied_rows(table: pa.Table, applied: pa.Table) -> pa.Table:
    """The rows of a dependent table whose event applies (`applied`: its verdicts of APPLY), in log order."""
    return table.filter(pc.is_in(table["ord"], value_set=applied["ord"]))


def latest_of_each_turn(table: pa.Table, applied: pa.Table) -> pa.Table:
    """The last applied row of each turn in a feedback or review table, with its row's fields, and in
    `applied` how many of the turn's rows apply (each one a change of the turn: `row_version`)."""
    fields = [name for name in table.column_names if name not in ("ord", "session_id")]
    rows = applied_rows(table, applied)
    per_turn = rows.group_by("uuid", use_threads=False).aggregate([("ord", "max"), ("ord", "count")])
    latest = rows.filter(pc.is_in(rows["ord"], value_set=per_turn["ord_max"])).select(fields)
    counts = joined(per_turn, "ord_count", pc.index_in(latest["uuid"], value_set=per_turn["uuid"]))
    return latest.append_column("applied", counts.cast(pa.int32()))


def applied_by_type(applied: pa.Table) -> tuple[list[str], list[int], list[list[str]]]:
    """Applied dependents by type: how many, and the sessions whose conversation rows they change."""
    grouped = applied.group_by("type", use_threads=False).aggregate([("ord", "count"), ("turn_session", "distinct")])
    return grouped["type"].to_pylist(), grouped["ord_count"].to_pylist(), grouped["turn_session_distinct"].to_pylist()


def changed_turns(turns: pa.Table, feedback: pa.Table, reviews: pa.Table, clicks: pa.Table) -> pa.Table:
    """Every turn the batch's applied feedback, reviews or clicks update, as it stood (`before_*`) and as
    the updates leave it (`after_*`), the columns of aggregates.TURN_STATE (`aggregates.Deltas.change_turns`).
    `feedback` and `reviews`: the last applied one of each turn (`latest_of_each_turn`); `clicks`: the
    applied ones (`applied_rows`)."""
    clicked = clicks.group_by("interaction_uuid", use_threads=False).aggregate([("ord", "count")])
    by_feedback = _lookup(turns["uuid"], feedback, "uuid")
    by_review = _lookup(turns["uuid"], reviews, "uuid")
    by_clicks = _lookup(turns["uuid"], clicked, "interaction_uuid")
    touched = pc.or_(pc.or_(pc.is_valid(by_feedback), pc.is_valid(by_review)), pc.is_valid(by_clicks))
    rows = turns.filter(touched)
    by_feedback, by_review, by_clicks = (pc.filter(i, touched) for i in (by_feedback, by_review, by_clicks))
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "uuid": rows["uuid"],
        "day": rows["created_date"],
        "user_slug": rows["user_slug"],
        "session_id": rows["session_id"],
        "created": rows["created"],
    }
    columns.update({f"before_{c}": rows[c] for c in TURN_STATE})
    clicks_added = pc.fill_null(joined(clicked, "ord_count", by_clicks), 0)
    columns["after_click_count"] = pc.add(rows["click_count"].cast(pa.int64()), clicks_added)

    def replaced(column: str, by: pa.Array, source: pa.Table, field: str) -> pa.Array:
        # The event's value where the turn has one (null included), else the turn's own.
        before = rows[column].combine_chunks()
        return pc.if_else(pc.is_valid(by), joined(source, field, by).cast(before.type), before)

    columns["after_fb_score"] = replaced("fb_score", by_feedback, feedback, "score")
    for column, field in _REVIEW_STATE.items():
        columns[f"after_{column}"] = replaced(column, by_review, reviews, field)
    return pa.table(columns)
