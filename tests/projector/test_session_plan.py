"""The sessions step's kernels (projector/session_plan.py) against the DuckDB statements they replaced.

Hypothesis builds a batch as the sessions step gets it: touched sessions, the stored rows of some of
them, the batch's new turns in some of them (of users, anonymous or null, several days, ties of
`created` among them and with the stored first turn, earlier and later than it), its updated turns
(reviewed for the first time or not, in touched sessions or others) and pairs `interactions` already
knows. The statements below are `projector/aggregates.py`'s before the kernels, verbatim; both must give
the same plan, the same moves of `sessions_started`, the same new pairs and session counts.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector import session_plan
from projector.arrow_views import arrow_with, execute_with
from schemas.readmodel import connect

# -- the statements the kernels replaced -------------------------------------------------------------

_SESSION_PLAN = """
WITH instants AS (
    SELECT session_id, created, count(*) AS n, any_value(user_slug) AS user_slug
    FROM batch_new_turns GROUP BY session_id, created
), arrived AS (
    SELECT session_id, sum(n) AS n, min(created) AS first_new, max(created) AS last_new,
        arg_min_null(user_slug, created) AS first_slug, arg_min(n, created) > 1 AS tie
    FROM instants GROUP BY session_id
), reviewed AS (
    SELECT session_id, count(*) AS n FROM changed_turns
    WHERE before_llm_reviewed_at IS NULL AND after_llm_reviewed_at IS NOT NULL
    GROUP BY session_id
), plan AS (
    SELECT t.session_id,
        s.user_slug AS old_slug, s.first_created AS old_first, s.last_created AS old_last,
        s.turns AS old_turns, s.reviewed_turns AS old_reviewed,
        a.n AS new_turns, a.first_new, a.last_new, a.first_slug, coalesce(r.n, 0) AS newly_reviewed,
        (s.session_id IS NULL AND a.session_id IS NULL) OR coalesce(a.tie, false)
            OR coalesce(a.first_new = s.first_created, false) AS recount
    FROM touched_sessions t
    LEFT JOIN stored_sessions s USING (session_id)
    LEFT JOIN arrived a USING (session_id)
    LEFT JOIN reviewed r USING (session_id)
)
SELECT *,
    CASE WHEN old_first IS NULL OR first_new < old_first THEN first_slug ELSE old_slug END AS user_slug,
    CASE WHEN old_first IS NULL OR first_new < old_first THEN first_new ELSE old_first END AS first_created,
    greatest(old_last, last_new) AS last_created,
    coalesce(old_turns, 0) + coalesce(new_turns, 0) AS turns,
    coalesce(old_reviewed, 0) + newly_reviewed AS reviewed_turns
FROM plan
"""
_PLANNED_FIRST_DAYS = """
SELECT day, sum(n) FROM (
    SELECT CAST(old_first AS DATE) AS day, -1 AS n FROM session_plan WHERE old_first IS NOT NULL
    UNION ALL
    SELECT CAST(first_created AS DATE), 1 FROM session_plan WHERE NOT recount
) GROUP BY day
"""
_NEW_PAIRS = """
SELECT p.user_slug, p.session_id, s.old_slug IS NOT NULL AS unsure
FROM (SELECT DISTINCT user_slug, session_id FROM batch_new_turns WHERE coalesce(user_slug, '') <> '') p
LEFT JOIN session_plan s USING (session_id)
WHERE s.old_slug IS NULL OR s.old_slug <> p.user_slug
"""
_SESSION_COUNTS = """
SELECT user_slug, count(*) FROM new_pairs ANTI JOIN known_pairs USING (user_slug, session_id) GROUP BY user_slug
"""
# The types of a stored session row, as `_STORED_SESSIONS` (`SELECT * FROM sessions ...`) reads it.
_STORED_SESSIONS = "SELECT * FROM sessions WHERE false"

# -- generated batches ----------------------------------------------------------------------------------

SESSIONS = ["s1", "s2", "s3", "s4", "s5"]
USERS = ["", "u1", "u2", "u3"]
BASE = datetime(2026, 11, 1, 23, 0)
# A few instants over three days: new turns tie with each other and with a stored first turn.
times = st.integers(0, 9).map(lambda i: BASE + timedelta(hours=2 * (i // 3), seconds=i % 3))
NEW_SCHEMA = pa.schema(
    [("uuid", pa.string()), ("user_slug", pa.string()), ("session_id", pa.string()), ("created", pa.timestamp("us"))]
)
CHANGED_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("before_llm_reviewed_at", pa.timestamp("us")),
        ("after_llm_reviewed_at", pa.timestamp("us")),
    ]
)
PAIRS = pa.schema([("user_slug", pa.string()), ("session_id", pa.string())])


def _stored_schema() -> pa.Schema:
    con = connect(Path(tempfile.mkdtemp()) / "schema.duckdb")
    try:
        return con.sql(_STORED_SESSIONS).to_arrow_table().schema
    finally:
        con.close()


STORED_SCHEMA = _stored_schema()


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    touched = sorted(draw(st.sets(st.sampled_from(SESSIONS), min_size=1)))
    stored = []
    for session in draw(st.sets(st.sampled_from(touched))):
        first, last = sorted([draw(times), draw(times)])
        turns = draw(st.integers(1, 6))
        stored.append(
            {"session_id": session, "user_slug": draw(st.sampled_from(USERS)), "first_created": first,
             "last_created": last, "turns": turns, "reviewed_turns": draw(st.integers(0, turns))}
        )  # fmt: skip
    new = [
        {"uuid": f"t{i}", "user_slug": draw(st.none() | st.sampled_from(USERS)),
         "session_id": draw(st.sampled_from(touched)), "created": draw(times)}
        for i in range(draw(st.integers(0, 10)))
    ]  # fmt: skip
    changed = [
        {"session_id": draw(st.sampled_from(SESSIONS)), "before_llm_reviewed_at": draw(st.none() | times),
         "after_llm_reviewed_at": draw(st.none() | times)}
        for _ in range(draw(st.integers(0, 6)))
    ]  # fmt: skip
    known = draw(st.sets(st.tuples(st.sampled_from(USERS), st.sampled_from(SESSIONS))))
    return {
        "touched": touched,
        "stored": pa.Table.from_pylist(stored, schema=STORED_SCHEMA),
        "new": pa.Table.from_pylist(new, schema=NEW_SCHEMA),
        "changed": pa.Table.from_pylist(changed, schema=CHANGED_SCHEMA),
        "known": pa.Table.from_pylist([{"user_slug": u, "session_id": s} for u, s in sorted(known)], schema=PAIRS),
    }


def _plan_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The plan's rows as the sessions step reads them; the first user of a session to recount is read by
    nobody (and the statement's `any_value` picks one of a tie's users)."""
    rows = [{name: row[name] for name in session_plan.PLAN_SCHEMA.names} for row in table.to_pylist()]
    for row in rows:
        row["turns"], row["reviewed_turns"] = int(row["turns"]), int(row["reviewed_turns"])
        if row["recount"]:
            row["user_slug"] = None
    return sorted(rows, key=lambda row: row["session_id"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches())
def test_the_kernels_plan_the_sessions_the_statements_planned(batch: dict[str, Any]) -> None:
    con = duckdb.connect()
    touched, stored, new, changed, known = (
        batch["touched"],
        batch["stored"],
        batch["new"],
        batch["changed"],
        batch["known"],
    )
    plan = session_plan.plan(touched, stored, new, changed)
    lent = {
        "touched_sessions": pa.table({"session_id": pa.array(touched, pa.string())}),
        "stored_sessions": stored,
        "changed_turns": changed,
        "batch_new_turns": new,
    }
    expected = arrow_with(con, _SESSION_PLAN, **lent)
    assert _plan_rows(plan) == _plan_rows(expected)
    expected_days = execute_with(con, _PLANNED_FIRST_DAYS, **lent, session_plan=expected).fetchall()
    expected_pairs = arrow_with(con, _NEW_PAIRS, **lent, session_plan=expected)
    expected_counts = execute_with(con, _SESSION_COUNTS, **lent, new_pairs=expected_pairs, known_pairs=known).fetchall()
    con.close()
    assert sorted(session_plan.first_day_moves(plan)) == sorted((d, int(n)) for d, n in expected_days)
    pairs = session_plan.new_pairs(new, plan)
    assert pairs.schema == session_plan.PAIRS_SCHEMA
    assert sorted(pairs.to_pylist(), key=repr) == sorted(expected_pairs.to_pylist(), key=repr)
    assert sorted(session_plan.session_counts(pairs, known)) == sorted(expected_counts)
