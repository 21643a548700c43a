"""The sessions step of a batch (`aggregates.refresh`) planned as Arrow kernels over the batch's own rows.

Per touched session (the sessions of the batch's new turns and of its applied reviews): its row as the
file holds it (`old_*`, looked up by key by the caller, `_STORED_SESSIONS`), what the batch adds, its new
row, and whether it must be recomputed from `interactions` instead (`recount`): a session with no row
and no new turn, or whose first instant is a tie (two new turns, or a new turn and the stored first
one), since the order of uuids decides between turns of the same instant and only the table has the old
first turn's uuid. Then what that moves in `sessions_started` and the (user, session) pairs that may be
new to `session_count`.

As DuckDB statements over registered Arrow tables (`_SESSION_PLAN`, `_PLANNED_FIRST_DAYS`, `_NEW_PAIRS`,
`_SESSION_COUNTS`: ~8-12, ~3, ~4.5 and ~2 ms, and ~1 ms for each of five registered tables) this cost
a live batch ~20-25 ms of binding and planning, whatever its rows; these kernels do the same in ~2 ms
for a live batch's few hundred sessions, and stay linear in a catch-up batch. The writes stay
statements. `tests/projector/test_session_plan.py` holds the statements they replaced and proves
both give the same rows on generated batches.

The tables: `stored`, the touched sessions' `sessions` rows; `new`, the batch's new turns (`uuid`,
`user_slug`, `session_id`, `created`); `changed`, its updated turns (`session_id`,
`before_llm_reviewed_at`, `after_llm_reviewed_at`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from projector.arrow_sql import joined

# The columns of a plan that the sessions step reads: the new row (written unless `recount`), the old
# row's first instant and user (what `sessions_started` and `session_count` compare against).
PLAN_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("old_slug", pa.string()),
        ("old_first", pa.timestamp("us")),
        ("recount", pa.bool_()),
        ("user_slug", pa.string()),
        ("first_created", pa.timestamp("us")),
        ("last_created", pa.timestamp("us")),
        ("turns", pa.int64()),
        ("reviewed_turns", pa.int64()),
    ]
)
PAIRS_SCHEMA = pa.schema([("user_slug", pa.string()), ("session_id", pa.string()), ("unsure", pa.bool_())])


def _count_all(column: str) -> tuple[str, str, pc.CountOptions]:
    return (column, "count", pc.CountOptions(mode="all"))


def _arrived(new: pa.Table) -> pa.Table:
    """Per session of the new turns: how many (`n`), the first and last instant, the user of the first
    turn (`first_slug`, null included) and whether two turns share the first instant (`tie`)."""
    grouped = new.group_by("session_id", use_threads=False).aggregate(
        [_count_all("created"), ("created", "min"), ("created", "max")]
    )
    own_first = joined(grouped, "created_min", pc.index_in(new["session_id"], value_set=grouped["session_id"]))
    at_first = new.filter(pc.fill_null(pc.equal(new["created"], own_first), False))
    firsts = at_first.group_by("session_id", use_threads=False).aggregate(
        [_count_all("created"), ("user_slug", "first", pc.ScalarAggregateOptions(skip_nulls=False))]
    )
    by_first = pc.index_in(grouped["session_id"], value_set=firsts["session_id"])
    return pa.table(
        {
            "session_id": grouped["session_id"],
            "n": grouped["created_count"],
            "first_new": grouped["created_min"],
            "last_new": grouped["created_max"],
            "first_slug": joined(firsts, "user_slug_first", by_first),
            "tie": pc.greater(joined(firsts, "created_count", by_first), 1),
        }
    )


def _newly_reviewed(changed: pa.Table) -> pa.Table:
    """Per session, its updated turns reviewed for the first time."""
    first = pc.and_(pc.is_null(changed["before_llm_reviewed_at"]), pc.is_valid(changed["after_llm_reviewed_at"]))
    return changed.filter(first).group_by("session_id", use_threads=False).aggregate([_count_all("session_id")])


def plan(touched: list[str], stored: pa.Table, new: pa.Table, changed: pa.Table) -> pa.Table:
    """One row per `touched` session (PLAN_SCHEMA): its new row from its stored one and the batch's new
    turns and first reviews. Its first turn (instant and user) is the earliest of the stored first and
    the new ones, its last instant the latest; `recount` where it has neither a stored row nor a new
    turn, or where its first instant is shared (two new turns, or a new turn and the stored first)."""
    sessions = pa.array(touched, pa.string())
    arrived = _arrived(new)
    reviewed = _newly_reviewed(changed)
    by_stored = pc.index_in(sessions, value_set=stored["session_id"])
    by_arrived = pc.index_in(sessions, value_set=arrived["session_id"])
    old_slug = joined(stored, "user_slug", by_stored).cast(pa.string())
    old_first = joined(stored, "first_created", by_stored).cast(pa.timestamp("us"))
    old_last = joined(stored, "last_created", by_stored).cast(pa.timestamp("us"))
    first_new = joined(arrived, "first_new", by_arrived).cast(pa.timestamp("us"))
    new_first = pc.fill_null(pc.or_kleene(pc.is_null(old_first), pc.less(first_new, old_first)), False)
    recount = pc.or_(
        pc.or_(
            pc.and_(pc.is_null(by_stored), pc.is_null(by_arrived)),
            pc.fill_null(joined(arrived, "tie", by_arrived), False),
        ),
        pc.fill_null(pc.equal(first_new, old_first), False),
    )
    old_turns = pc.fill_null(joined(stored, "turns", by_stored).cast(pa.int64()), 0)
    new_turns = pc.fill_null(joined(arrived, "n", by_arrived).cast(pa.int64()), 0)
    old_reviewed = pc.fill_null(joined(stored, "reviewed_turns", by_stored).cast(pa.int64()), 0)
    newly_reviewed = pc.fill_null(
        joined(reviewed, "session_id_count", pc.index_in(sessions, value_set=reviewed["session_id"])).cast(pa.int64()),
        0,
    )
    columns = [
        sessions,
        old_slug,
        old_first,
        recount,
        pc.if_else(new_first, joined(arrived, "first_slug", by_arrived).cast(pa.string()), old_slug),
        pc.if_else(new_first, first_new, old_first),
        pc.max_element_wise(old_last, joined(arrived, "last_new", by_arrived).cast(pa.timestamp("us"))),
        pc.add(old_turns, new_turns),
        pc.add(old_reviewed, newly_reviewed),
    ]
    return pa.Table.from_arrays(columns, schema=PLAN_SCHEMA)


def first_day_moves(plan: pa.Table) -> list[tuple[object, int]]:
    """What the plan moves in `sessions_started`, per day: each stored row's first day loses its session
    (a session's first day moves when an older turn arrives late), each new row's first day gains it.
    A day both lose and gain is there with 0."""
    old = pc.drop_null(plan["old_first"]).cast(pa.date32())
    new = pc.filter(plan["first_created"], pc.invert(plan["recount"])).cast(pa.date32())
    moves = pa.table(
        {
            "day": pa.chunked_array([*old.chunks, *new.chunks], pa.date32()),
            "n": pa.array([-1] * len(old) + [1] * len(new), pa.int64()),
        }
    )
    grouped = moves.group_by("day", use_threads=False).aggregate([("n", "sum")])
    return list(zip(grouped["day"].to_pylist(), grouped["n_sum"].to_pylist(), strict=True))


def new_pairs(new: pa.Table, plan: pa.Table) -> pa.Table:
    """The distinct (user, session) pairs of the new turns of a user that may be new to `session_count`
    (PAIRS_SCHEMA): all of a session without a stored row; of one with a row, those of another user than
    its first turn's, which only `interactions` can settle (`unsure`)."""
    named = new.filter(pc.fill_null(pc.not_equal(new["user_slug"], ""), False))
    pairs = named.group_by(["user_slug", "session_id"], use_threads=False).aggregate([])
    old_slug = joined(plan, "old_slug", pc.index_in(pairs["session_id"], value_set=plan["session_id"]))
    unsure = pc.is_valid(old_slug)
    keep = pc.or_(pc.invert(unsure), pc.fill_null(pc.not_equal(old_slug, pairs["user_slug"]), False))
    table = pa.Table.from_arrays([pairs["user_slug"], pairs["session_id"], unsure], schema=PAIRS_SCHEMA)
    return table.filter(keep)


def session_counts(pairs: pa.Table, known: pa.Table) -> list[tuple[str, int]]:
    """Per user, its pairs the file did not know (`known`, the pairs `interactions` already holds)."""
    if known.num_rows:
        pairs = pairs.join(
            known.select(["user_slug", "session_id"]),
            ["user_slug", "session_id"],
            join_type="left anti",
            use_threads=False,
        )
    grouped = pairs.group_by("user_slug", use_threads=False).aggregate([_count_all("session_id")])
    return list(zip(grouped["user_slug"].to_pylist(), grouped["session_id_count"].to_pylist(), strict=True))
