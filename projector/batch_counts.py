"""What a batch's own turns add to `daily_counters` and `user_stats`, as Arrow kernels over its rows.

`aggregates.Deltas` counts a batch's new turns in, and the turns it updates out (as they stood) and in
(as the batch leaves them), per created day and per user. Those are sums over a batch's few rows (tens to
hundreds in a live batch): as DuckDB statements over registered Arrow tables (a GROUPING SETS each) they
cost a live batch ~5 and ~9 ms of binding and planning alone, whatever their rows; these kernels do the
same in a fraction of a millisecond, and stay linear in a catch-up batch.
`tests/projector/test_batch_counts.py` holds the statements they replaced and proves both give the same
counts on generated batches.

Sums are DECIMAL(38, 0), as `aggregates.Deltas.write` adds them: each token count is a BIGINT, their
sum may pass 2^63. Groups are per created day and per `user_slug`, null and empty slugs included: the
caller skips those (anonymous turns have no user_stats row).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from projector.arrow_sql import is_distinct_from

SEVERITIES = ("none", "low", "medium", "high", "critical")
# The counters a new turn adds to its day, then to its user (besides its last `created`, `last_seen`).
NEW_DAY_COLUMNS = (
    "turns",
    "flagged",
    *(f"severity_{s}" for s in SEVERITIES),
    "clarifications",
    "turn_input_tokens",
    "turn_output_tokens",
)
NEW_USER_COLUMNS = ("total_interactions", "injection_strikes")
# The counters an updated turn moves, on its day, then on its user (`state_counts`).
CHANGED_DAY_COLUMNS = (
    "clicks",
    "feedback_up",
    "feedback_down",
    "reviewed",
    "review_score_sum",
    "hallucinations",
    "review_input_tokens",
    "review_output_tokens",
)
CHANGED_USER_COLUMNS = ("positive_feedback", "negative_feedback", "no_feedback")
# The columns of a turn that feedback, reviews and clicks change: what `changed_turn_counts` reads of
# each updated turn, as `before_<column>` and `after_<column>` (`aggregates.TURN_STATE`).
TURN_STATE = (
    "click_count",
    "fb_score",
    "llm_reviewed_at",
    "llm_resolution_score",
    "llm_hallucination_detected",
    "llm_input_tokens",
    "llm_output_tokens",
)
_SUM = pa.decimal128(38, 0)
_STRIKES = pa.array(["block", "redact"], pa.string())


def _flag(condition: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """1 where `condition` is true, 0 where it is false or null (SQL's count(*) FILTER (WHERE ...))."""
    return pc.fill_null(condition, False).cast(pa.int64())


def _grouped(columns: dict[str, pa.Array | pa.ChunkedArray], key: str, aggregates: dict[str, str]) -> pa.Table:
    """`columns` grouped by `key` (null a group of its own), each of `aggregates` (column: "sum" or "max")
    under its own name; a sum of no value is 0."""
    table = pa.table(columns).group_by(key, use_threads=False).aggregate([(c, f) for c, f in aggregates.items()])
    out = {key: table[key]}
    for column, function in aggregates.items():
        values = table[f"{column}_{function}"]
        out[column] = pc.fill_null(values, 0) if function == "sum" else values
    return pa.table(out)


def new_turn_counts(turns: pa.Table) -> tuple[pa.Table, pa.Table]:
    """What the batch's new turns (rows as `_INSERT_TURNS` of projector/apply.py inserts them) add: per
    `created_date` (`day` and NEW_DAY_COLUMNS) and per `user_slug` (`last_seen`, the latest `created`, and
    NEW_USER_COLUMNS). A new turn has no feedback, review or click yet."""
    one = pa.array([1] * turns.num_rows, pa.int64())
    severity = turns["severity"]
    days: dict[str, pa.Array | pa.ChunkedArray] = {
        "day": turns["created_date"],
        "turns": one,
        "flagged": _flag(turns["is_flagged"]),
        **{f"severity_{s}": _flag(pc.equal(severity, s)) for s in SEVERITIES},
        "clarifications": _flag(turns["is_clarification"]),
        "turn_input_tokens": turns["input_tokens"].cast(_SUM),
        "turn_output_tokens": turns["output_tokens"].cast(_SUM),
    }
    users: dict[str, pa.Array | pa.ChunkedArray] = {
        "user_slug": turns["user_slug"],
        "last_seen": turns["created"],
        "total_interactions": one,
        "injection_strikes": _flag(pc.is_in(turns["action_taken"], value_set=_STRIKES)),
    }
    return (
        _grouped(days, "day", dict.fromkeys(NEW_DAY_COLUMNS, "sum")),
        _grouped(users, "user_slug", {"last_seen": "max", **dict.fromkeys(NEW_USER_COLUMNS, "sum")}),
    )


def state_counts(changed: pa.Table, side: str) -> dict[str, pa.Array | pa.ChunkedArray]:
    """What one side (`before` or `after`) of each updated turn counts, per counter column: its clicks and
    review tokens as they are (null stays null), feedback up or down (a null score is neither), reviewed
    when it has a review time, its score (0 when null) and hallucination (false when null) only then."""
    reviewed = pc.is_valid(changed[f"{side}_llm_reviewed_at"])
    score = changed[f"{side}_fb_score"]
    up, down = pc.fill_null(pc.equal(score, 1), False), pc.fill_null(pc.equal(score, -1), False)
    resolution = pc.fill_null(changed[f"{side}_llm_resolution_score"].cast(pa.int64()), 0)
    hallucination = pc.fill_null(changed[f"{side}_llm_hallucination_detected"], False)
    return {
        "clicks": changed[f"{side}_click_count"].cast(pa.int64()),
        "feedback_up": up.cast(pa.int64()),
        "feedback_down": down.cast(pa.int64()),
        "reviewed": reviewed.cast(pa.int64()),
        "review_score_sum": pc.if_else(reviewed, resolution, 0),
        "hallucinations": pc.and_(reviewed, hallucination).cast(pa.int64()),
        "review_input_tokens": changed[f"{side}_llm_input_tokens"].cast(pa.int64()),
        "review_output_tokens": changed[f"{side}_llm_output_tokens"].cast(pa.int64()),
        "positive_feedback": up.cast(pa.int64()),
        "negative_feedback": down.cast(pa.int64()),
        "no_feedback": pc.invert(pc.or_(up, down)).cast(pa.int64()),
    }


def changed_turn_counts(changed: pa.Table) -> tuple[pa.Table, pa.Table]:
    """What the batch's updated turns (`projector.dependents.changed_turns`: each as it stood, `before_*`,
    and as the batch leaves it, `after_*`) move: per `day` (`changed`, how many of its turns changed at
    all, and CHANGED_DAY_COLUMNS) and per `user_slug` (`changed`, `last_created`, the latest `created` of
    its updated turns, changed or not, and CHANGED_USER_COLUMNS), each the sum of after minus before
    (a row with either side null adds nothing, as SQL's sum skips a null difference)."""
    before, after = state_counts(changed, "before"), state_counts(changed, "after")
    moved = {c: pc.subtract_checked(after[c], before[c]).cast(_SUM) for c in before}
    any_change = is_distinct_from(changed[f"before_{TURN_STATE[0]}"], changed[f"after_{TURN_STATE[0]}"])
    for column in TURN_STATE[1:]:
        any_change = pc.or_(any_change, is_distinct_from(changed[f"before_{column}"], changed[f"after_{column}"]))
    flag = any_change.cast(pa.int64())
    days = {"day": changed["day"], "changed": flag, **{c: moved[c] for c in CHANGED_DAY_COLUMNS}}
    users = {
        "user_slug": changed["user_slug"],
        "changed": flag,
        "last_created": changed["created"],
        **{c: moved[c] for c in CHANGED_USER_COLUMNS},
    }
    return (
        _grouped(days, "day", dict.fromkeys(["changed", *CHANGED_DAY_COLUMNS], "sum")),
        _grouped(
            users, "user_slug", {"changed": "sum", "last_created": "max", **dict.fromkeys(CHANGED_USER_COLUMNS, "sum")}
        ),
    )
