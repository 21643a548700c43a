"""The counting kernels (projector/batch_counts.py) against the DuckDB statements they replaced.

Hypothesis builds a batch's new turns as the fold inserts them (NULLs in every column counted, empty
and null user slugs, several days, ties of `created`, token counts whose sums pass 2^63), and its
updated turns as `projector.dependents.changed_turns` gives them (in its
types: each turn before and after, unchanged ones too), with NULLs in every state column, empty and
null user slugs, several days, ties of `created` and token counts whose sums pass 2^63. The statements
below are `projector/aggregates.py`'s before the kernels, verbatim; both must give the same counts, per
day and per user, for every column `aggregates.Deltas` reads.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector import batch_counts, dependents
from projector.aggregates import TURN_STATE
from projector.arrow_views import execute_with
from projector.prepare import CLICK_SCHEMA, FEEDBACK_SCHEMA, REVIEW_SCHEMA, TURN_SCHEMA_WITH_POS
from tests.projector.test_dependents import _SCHEMA, with_ord

# -- the statements the kernels replaced -------------------------------------------------------------

_SEVERITIES = ("none", "low", "medium", "high", "critical")
# What the batch's new turns contribute, per created day to daily_counters and per user to user_stats.
_NEW_TURN_COUNTERS = f"""
SELECT
    grouping(created_date) AS by_user,
    created_date,
    user_slug,
    max(created),
    count(*),
    count(*) FILTER (WHERE is_flagged),
    {", ".join(f"count(*) FILTER (WHERE severity = '{s}')" for s in _SEVERITIES)},
    count(*) FILTER (WHERE is_clarification),
    coalesce(sum(input_tokens), 0),
    coalesce(sum(output_tokens), 0),
    count(*) FILTER (WHERE action_taken IN ('block', 'redact'))
FROM new_turns
GROUP BY GROUPING SETS ((created_date), (user_slug))
"""


def _state_counts(side: str) -> dict[str, str]:
    """What one side (`before` or `after`) of a row of `changed_turns` counts, per counter column."""
    reviewed = f"{side}_llm_reviewed_at IS NOT NULL"
    up, down = f"coalesce({side}_fb_score = 1, false)", f"coalesce({side}_fb_score = -1, false)"
    return {
        "clicks": f"{side}_click_count",
        "feedback_up": f"{up}::INT",
        "feedback_down": f"{down}::INT",
        "reviewed": f"({reviewed})::INT",
        "review_score_sum": f"CASE WHEN {reviewed} THEN coalesce({side}_llm_resolution_score, 0) ELSE 0 END",
        "hallucinations": f"({reviewed} AND coalesce({side}_llm_hallucination_detected, false))::INT",
        "review_input_tokens": f"{side}_llm_input_tokens",
        "review_output_tokens": f"{side}_llm_output_tokens",
        "positive_feedback": f"{up}::INT",
        "negative_feedback": f"{down}::INT",
        "no_feedback": f"(NOT ({up} OR {down}))::INT",
    }


_CHANGED_DAY_COLUMNS = [
    "clicks",
    "feedback_up",
    "feedback_down",
    "reviewed",
    "review_score_sum",
    "hallucinations",
    "review_input_tokens",
    "review_output_tokens",
]
_CHANGED_USER_COLUMNS = ["positive_feedback", "negative_feedback", "no_feedback"]
_CHANGED_COLUMNS = _CHANGED_DAY_COLUMNS + _CHANGED_USER_COLUMNS
_BEFORE, _AFTER = _state_counts("before"), _state_counts("after")
_CHANGED_TURN_COUNTERS = f"""
SELECT
    grouping(day, user_slug) AS grouped,
    day,
    user_slug,
    count(*) FILTER (WHERE changed) AS changed,
    max(created) AS last_created,
    {", ".join(f"coalesce(sum(({_AFTER[c]}) - ({_BEFORE[c]})), 0)" for c in _CHANGED_COLUMNS)}
FROM (
    SELECT *, {" OR ".join(f"before_{c} IS DISTINCT FROM after_{c}" for c in TURN_STATE)} AS changed
    FROM changed_turns
)
GROUP BY GROUPING SETS ((day), (user_slug))
"""
_BY_DAY = 1  # `grouped` of the day rows (the bit of the column not grouped by); the user rows have 2

# -- generated batches ----------------------------------------------------------------------------------

BASE = datetime(2026, 11, 1, 23, 0)
# A few instants over three days, so that days and users share turns and `created` ties.
times = st.integers(0, 12).map(lambda i: BASE + timedelta(hours=2 * (i // 4), seconds=i % 4))
slugs = st.sampled_from([None, "", "u1", "u2", "u3"])
# Token counts up to 2^62: a few of them pass 2^63 in a sum, never in one difference.
tokens = st.none() | st.integers(0, 900) | st.integers(2**61, 2**62)


@st.composite
def new_turns(draw: st.DrawFn) -> pa.Table:
    rows = []
    for i in range(draw(st.integers(0, 12))):
        created = draw(times)
        rows.append(
            {"uuid": f"t{i}", "session_id": "s", "user_slug": draw(slugs), "created": created,
             "created_date": created.date(), "is_flagged": draw(st.none() | st.booleans()),
             "severity": draw(st.sampled_from([None, "", *_SEVERITIES, "HIGH"])),
             "is_clarification": draw(st.none() | st.booleans()),
             "action_taken": draw(st.sampled_from([None, "", "block", "redact", "warn"])),
             "input_tokens": draw(tokens), "output_tokens": draw(tokens), "pos": i}
        )  # fmt: skip
    return pa.Table.from_pylist(rows, schema=TURN_SCHEMA_WITH_POS)


def _changed_schema() -> pa.Schema:
    """The schema `dependents.changed_turns` gives (the types `Deltas.change_turns` gets)."""
    nothing = dependents.VERDICT_SCHEMA.empty_table()
    feedback, reviews, clicks = (with_ord([], s, []) for s in (FEEDBACK_SCHEMA, REVIEW_SCHEMA, CLICK_SCHEMA))
    turns = dependents.named_turns(_SCHEMA.empty_table(), None)
    feedback = dependents.latest_of_each_turn(feedback, nothing)
    reviews = dependents.latest_of_each_turn(reviews, nothing)
    return dependents.changed_turns(turns, feedback, reviews, dependents.applied_rows(clicks, nothing)).schema


CHANGED_SCHEMA = _changed_schema()


@st.composite
def turn_state(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "click_count": draw(st.none() | st.integers(0, 6)),
        "fb_score": draw(st.sampled_from([None, 1, -1, 0])),
        "llm_reviewed_at": draw(st.none() | times),
        "llm_resolution_score": draw(st.none() | st.integers(1, 5)),
        "llm_hallucination_detected": draw(st.none() | st.booleans()),
        "llm_input_tokens": draw(tokens),
        "llm_output_tokens": draw(tokens),
    }


@st.composite
def changed_turns(draw: st.DrawFn) -> pa.Table:
    rows = []
    for i in range(draw(st.integers(0, 12))):
        created = draw(times)
        before = draw(turn_state())
        after = dict(before)
        for column in draw(st.sets(st.sampled_from(TURN_STATE))):  # none: a turn the batch left as it was
            after[column] = draw(turn_state())[column]
        row = {"uuid": f"t{i}", "day": created.date(), "user_slug": draw(slugs), "session_id": "s", "created": created}
        row |= {f"before_{c}": v for c, v in before.items()}
        row |= {f"after_{c}": v for c, v in after.items()}
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=CHANGED_SCHEMA)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as Python compares them: decimals and HUGEINTs as ints."""
    return {k: int(v) if isinstance(v, (int, Decimal)) and not isinstance(v, bool) else v for k, v in row.items()}


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((_plain(r) for r in rows), key=repr)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=new_turns())
def test_the_new_turn_counts_are_the_statement_s(turns: pa.Table) -> None:
    con = duckdb.connect()
    result = execute_with(con, _NEW_TURN_COUNTERS, new_turns=turns).fetchall()
    con.close()
    expected_days, expected_users = [], []
    for by_user, day, slug, last, n, *counts, strikes in result:
        if by_user:
            expected_users.append(
                {"user_slug": slug, "last_seen": last, "total_interactions": n, "injection_strikes": strikes}
            )
        else:
            expected_days.append({"day": day} | dict(zip(batch_counts.NEW_DAY_COLUMNS, [n, *counts], strict=True)))
    days, users = batch_counts.new_turn_counts(turns)
    assert _rows(days.to_pylist()) == _rows(expected_days)
    assert _rows(users.to_pylist()) == _rows(expected_users)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changed=changed_turns())
def test_the_changed_turn_counts_are_the_statement_s(changed: pa.Table) -> None:
    con = duckdb.connect()
    result = execute_with(con, _CHANGED_TURN_COUNTERS, changed_turns=changed).fetchall()
    con.close()
    expected_days, expected_users = [], []
    for grouped, day, slug, n_changed, last, *counts in result:
        by_column = dict(zip(_CHANGED_COLUMNS, counts, strict=True))
        if grouped == _BY_DAY:
            expected_days.append({"day": day, "changed": n_changed} | {c: by_column[c] for c in _CHANGED_DAY_COLUMNS})
        else:
            expected_users.append(
                {"user_slug": slug, "changed": n_changed, "last_created": last}
                | {c: by_column[c] for c in _CHANGED_USER_COLUMNS}
            )
    days, users = batch_counts.changed_turn_counts(changed)
    assert _rows(days.to_pylist()) == _rows(expected_days)
    assert _rows(users.to_pylist()) == _rows(expected_users)


def test_a_turn_counted_out_and_in() -> None:
    """One case by hand, so that a failure above has a readable twin: a turn of u1 gets a thumbs up and
    its first review; another of the same day is left as it was but still says when u1 was last seen."""
    day = date(2026, 11, 2)
    state = {"click_count": 1, "fb_score": None, "llm_reviewed_at": None, "llm_resolution_score": None,
             "llm_hallucination_detected": False, "llm_input_tokens": 0, "llm_output_tokens": 0}  # fmt: skip
    reviewed = {"fb_score": 1, "llm_reviewed_at": BASE, "llm_resolution_score": 4, "llm_input_tokens": 10}
    rows = [
        {"uuid": "a", "day": day, "user_slug": "u1", "session_id": "s", "created": BASE - timedelta(hours=1)}
        | {f"before_{c}": v for c, v in state.items()}
        | {f"after_{c}": v for c, v in (state | reviewed).items()},
        {"uuid": "b", "day": day, "user_slug": "u1", "session_id": "s", "created": BASE}
        | {f"{side}_{c}": v for c, v in state.items() for side in ("before", "after")},
    ]
    days, users = batch_counts.changed_turn_counts(pa.Table.from_pylist(rows, schema=CHANGED_SCHEMA))
    (counts,) = (_plain(r) for r in days.to_pylist())
    assert counts == {"day": day, "changed": 1, "clicks": 0, "feedback_up": 1, "feedback_down": 0, "reviewed": 1,
                      "review_score_sum": 4, "hallucinations": 0, "review_input_tokens": 10,
                      "review_output_tokens": 0}  # fmt: skip
    (user,) = (_plain(r) for r in users.to_pylist())
    assert user == {"user_slug": "u1", "changed": 1, "last_created": BASE, "positive_feedback": 1,
                    "negative_feedback": 0, "no_feedback": -1}  # fmt: skip
