"""The dependents' Arrow kernels (projector/dependents.py) against the DuckDB statements they replaced.

Hypothesis builds a batch's tables as the fold builds them: stored turns in their stored types (any
state of clicks, feedback and review), the batch's new turns, and feedback, reviews and clicks naming
stored turns, new ones or none, with the right session or another, and clicks on offerings the turn
listed or not. The statements below are the fold's before the kernels (the turns dependents name, each
one's verdict, each updated turn before and after); both must give the same rows.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector import dependents
from projector.aggregates import TURN_STATE
from projector.apply import _NEW_TURN_DEFAULTS
from projector.arrow_views import arrow_with
from projector.prepare import CLICK_SCHEMA, FEEDBACK_SCHEMA, REVIEW_SCHEMA, TURN_SCHEMA_WITH_POS
from schemas.events import FEEDBACK_SUBMITTED as FEEDBACK
from schemas.events import OFFERING_CLICKED as CLICK
from schemas.events import SESSION_REVIEWED as REVIEW
from schemas.readmodel import connect
from schemas.registry import SESSION_MISMATCH, UNKNOWN_OFFERING

# -- the statements the kernels replaced -------------------------------------------------------------

NAMED_TURNS = f"""
named_turns AS (
    SELECT uuid, session_id, offering_uuids, user_slug, created_date, created, {", ".join(TURN_STATE)}
    FROM looked_up_turns
    UNION ALL
    SELECT uuid, session_id, offering_uuids, user_slug, created_date, created,
        {", ".join(f"{_NEW_TURN_DEFAULTS[c]} AS {c}" for c in TURN_STATE)}
    FROM arrived_turns
)
"""
VERDICTS = f"""
WITH dependents AS (
    SELECT ord, $1 AS type, uuid, session_id, NULL::VARCHAR AS offering_uuid FROM dep_feedback
    UNION ALL
    SELECT ord, $2, uuid, session_id, NULL FROM dep_reviews
    UNION ALL
    SELECT ord, $3, interaction_uuid, session_id, offering_uuid FROM dep_clicks
), {NAMED_TURNS}
SELECT d.ord, d.type,
    CASE
        WHEN t.uuid IS NULL THEN '{dependents.NO_TURN}'
        WHEN d.session_id IS DISTINCT FROM t.session_id THEN '{SESSION_MISMATCH}'
        WHEN d.offering_uuid IS NOT NULL AND NOT contains(t.offering_uuids, '"' || d.offering_uuid || '"')
            THEN '{UNKNOWN_OFFERING}'
        ELSE '{dependents.APPLY}'
    END AS verdict,
    t.session_id AS turn_session
FROM dependents d LEFT JOIN named_turns t ON t.uuid = d.uuid
ORDER BY d.ord
"""
CHANGED_TURNS = f"""
WITH clicked AS (
    SELECT c.interaction_uuid AS uuid, count(*) AS n
    FROM dep_clicks c SEMI JOIN verdicts v ON v.ord = c.ord AND v.verdict = $1
    GROUP BY 1
), {NAMED_TURNS}
SELECT t.uuid, t.created_date AS day, t.user_slug, t.session_id, t.created,
    {", ".join(f"t.{c} AS before_{c}" for c in TURN_STATE)},
    t.click_count + coalesce(c.n, 0) AS after_click_count,
    CASE WHEN f.uuid IS NULL THEN t.fb_score ELSE f.score END AS after_fb_score,
    CASE WHEN r.uuid IS NULL THEN t.llm_reviewed_at ELSE r.reviewed_at END AS after_llm_reviewed_at,
    CASE WHEN r.uuid IS NULL THEN t.llm_resolution_score ELSE r.resolution_score END AS after_llm_resolution_score,
    CASE WHEN r.uuid IS NULL THEN t.llm_hallucination_detected ELSE r.hallucination_detected END
        AS after_llm_hallucination_detected,
    CASE WHEN r.uuid IS NULL THEN t.llm_input_tokens ELSE r.input_tokens END AS after_llm_input_tokens,
    CASE WHEN r.uuid IS NULL THEN t.llm_output_tokens ELSE r.output_tokens END AS after_llm_output_tokens
FROM named_turns t
LEFT JOIN new_feedback f ON f.uuid = t.uuid
LEFT JOIN new_reviews r ON r.uuid = t.uuid
LEFT JOIN clicked c ON c.uuid = t.uuid
WHERE f.uuid IS NOT NULL OR r.uuid IS NOT NULL OR c.uuid IS NOT NULL
"""
# What the fold reads of a stored turn (projector/apply.py, `_READ_TURNS`), for the stored types.
STORED_TURNS = f"""
SELECT uuid::VARCHAR AS uuid, event_id::VARCHAR AS event_id, session_id, offering_uuids, user_slug, created_date,
       created, {", ".join(TURN_STATE)}
FROM interactions WHERE false
"""

# -- generated batches ----------------------------------------------------------------------------------

UUIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(10)]
SESSIONS = ["s1", "s2", "s3"]
OFFERS = [f"11111111-0000-4000-8000-{i:012d}" for i in range(3)]
BASE = datetime(2026, 11, 1, 9, 0)

times = st.integers(0, 10_000).map(lambda s: BASE + timedelta(seconds=s))
maybe_times = st.none() | times


@st.composite
def turn_rows(draw: st.DrawFn, uuids: list[str], *, stored: bool) -> list[dict[str, Any]]:
    rows = []
    for uuid in uuids:
        created = draw(times)
        row = {
            "uuid": uuid,
            "session_id": draw(st.sampled_from(SESSIONS)),
            "offering_uuids": json.dumps(draw(st.lists(st.sampled_from(OFFERS), unique=True, max_size=3))),
            "user_slug": draw(st.sampled_from(["", "u1", "u2"])),
            "created_date": created.date(),
            "created": created,
        }
        if stored:
            reviewed = draw(maybe_times)
            row |= {
                "event_id": uuid,
                "click_count": draw(st.integers(0, 5)),
                "fb_score": draw(st.sampled_from([None, 1, -1])),
                "llm_reviewed_at": reviewed,
                "llm_resolution_score": None if reviewed is None else draw(st.integers(1, 5)),
                "llm_hallucination_detected": reviewed is not None and draw(st.booleans()),
                "llm_input_tokens": 0 if reviewed is None else draw(st.integers(0, 900)),
                "llm_output_tokens": 0 if reviewed is None else draw(st.integers(0, 900)),
            }
        rows.append(row)
    return rows


def with_ord(rows: list[dict[str, Any]], schema: pa.Schema, ords: list[int]) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=schema)
    table = table.append_column("ord", pa.array(ords, pa.int64()))
    if "session_id" not in schema.names:
        table = table.append_column("session_id", pa.array([r["session_id"] for r in rows], pa.string()))
    return table


@st.composite
def batches(draw: st.DrawFn, stored_schema: pa.Schema) -> dict[str, pa.Table]:
    uuids = draw(st.permutations(UUIDS))
    n_stored = draw(st.integers(0, 5))
    n_arrived = draw(st.integers(0, 4))
    stored = pa.Table.from_pylist(draw(turn_rows(uuids[:n_stored], stored=True)), schema=stored_schema)
    arrived = pa.Table.from_pylist(
        draw(turn_rows(uuids[n_stored : n_stored + n_arrived], stored=False)), schema=TURN_SCHEMA_WITH_POS
    )
    named = uuids[: n_stored + n_arrived + 2]  # and two uuids of no turn
    kinds = draw(st.lists(st.sampled_from([FEEDBACK, REVIEW, CLICK]), max_size=14))
    ords = draw(st.permutations(range(len(kinds))))
    rows: dict[str, list[dict[str, Any]]] = {FEEDBACK: [], REVIEW: [], CLICK: []}
    places: dict[str, list[int]] = {FEEDBACK: [], REVIEW: [], CLICK: []}
    for kind, place in zip(kinds, ords, strict=True):
        uuid = draw(st.sampled_from(named))
        session = draw(st.sampled_from(SESSIONS))
        at = draw(times)
        if kind == FEEDBACK:
            rows[kind].append(
                {"uuid": uuid, "score": draw(st.sampled_from([1, -1])), "category": draw(st.none() | st.just("bug")),
                 "comment": "", "ip": None, "submitted_at": at, "session_id": session}
            )  # fmt: skip
        elif kind == REVIEW:
            rows[kind].append(
                {"uuid": uuid, "resolution_score": draw(st.integers(1, 5)), "intent_category": "",
                 "hallucination_detected": draw(st.booleans()), "hallucination_details": "", "summary": "",
                 "judge_model": "", "input_tokens": draw(st.integers(0, 900)),
                 "output_tokens": draw(st.integers(0, 900)), "reviewed_at": at, "session_id": session}
            )  # fmt: skip
        else:
            rows[kind].append(
                {"event_id": f"click-{place}", "interaction_uuid": uuid, "session_id": session, "occurred_at": at,
                 "offering_uuid": draw(st.sampled_from([*OFFERS, "22222222-0000-4000-8000-000000000000"]))}
            )  # fmt: skip
        places[kind].append(place)
    return {
        "stored": stored,
        "arrived": arrived,
        "feedback": with_ord(rows[FEEDBACK], FEEDBACK_SCHEMA, places[FEEDBACK]),
        "reviews": with_ord(rows[REVIEW], REVIEW_SCHEMA, places[REVIEW]),
        "clicks": with_ord(rows[CLICK], CLICK_SCHEMA, places[CLICK]),
    }


def by_key(table: pa.Table, key: str) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda row: row[key])


def stored_schema(path: Path) -> pa.Schema:
    con = connect(path)
    try:
        return con.sql(STORED_TURNS).to_arrow_table().schema
    finally:
        con.close()


_SCHEMA = stored_schema(Path(tempfile.mkdtemp()) / "schema.duckdb")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches(_SCHEMA))
def test_the_kernels_give_the_rows_the_statements_gave(batch: dict[str, pa.Table]) -> None:
    con = duckdb.connect()
    stored, arrived = batch["stored"], batch["arrived"]
    feedback, reviews, clicks = batch["feedback"], batch["reviews"], batch["clicks"]
    turns = dependents.named_turns(stored, arrived)
    lent = {
        "looked_up_turns": stored,
        "arrived_turns": arrived,
        "dep_feedback": feedback,
        "dep_reviews": reviews,
        "dep_clicks": clicks,
    }
    # The turns they name, a new one in the state _INSERT_TURNS gives it.
    expected_turns = arrow_with(con, f"WITH {NAMED_TURNS} SELECT * FROM named_turns", **lent)
    assert by_key(turns, "uuid") == by_key(expected_turns, "uuid")

    verdicts = dependents.verdicts(turns, feedback, reviews, clicks)
    expected = arrow_with(con, VERDICTS, [FEEDBACK, REVIEW, CLICK], **lent)
    assert verdicts.to_pylist() == expected.to_pylist()

    applied = verdicts.filter(pa.compute.field("verdict") == dependents.APPLY)
    latest_feedback = dependents.latest_of_each_turn(feedback, applied)
    latest_reviews = dependents.latest_of_each_turn(reviews, applied)
    applied_clicks = dependents.applied_rows(clicks, applied)
    changed = dependents.changed_turns(turns, latest_feedback, latest_reviews, applied_clicks)
    expected_changed = arrow_with(
        con,
        CHANGED_TURNS,
        [dependents.APPLY],
        **lent,
        verdicts=expected,
        new_feedback=latest_feedback,
        new_reviews=latest_reviews,
    )
    assert changed.column_names == expected_changed.column_names
    assert by_key(changed, "uuid") == by_key(expected_changed, "uuid")
    con.close()


def test_a_click_on_an_offering_its_turn_did_not_list_is_told_apart() -> None:
    """One case by hand, so that a failure above has a readable twin: a right click, a wrong offering, a
    wrong session and a turn that is not there, in log order."""
    turn = {"uuid": UUIDS[0], "session_id": "s1", "offering_uuids": json.dumps(OFFERS[:1]), "user_slug": "",
            "created_date": BASE.date(), "created": BASE, "event_id": UUIDS[0], "click_count": 0, "fb_score": None,
            "llm_reviewed_at": None, "llm_resolution_score": None, "llm_hallucination_detected": False,
            "llm_input_tokens": 0, "llm_output_tokens": 0}  # fmt: skip
    stored = pa.Table.from_pylist([turn], schema=_SCHEMA)
    click = {"event_id": "c", "interaction_uuid": UUIDS[0], "session_id": "s1", "occurred_at": BASE,
             "offering_uuid": OFFERS[0]}  # fmt: skip
    clicks = with_ord(
        [
            click,
            {**click, "offering_uuid": OFFERS[1]},
            {**click, "session_id": "s2"},
            {**click, "interaction_uuid": UUIDS[1]},
        ],
        CLICK_SCHEMA,
        [0, 1, 2, 3],
    )
    none = with_ord([], FEEDBACK_SCHEMA, []), with_ord([], REVIEW_SCHEMA, [])
    verdicts = dependents.verdicts(dependents.named_turns(stored, None), *none, clicks)
    assert verdicts["verdict"].to_pylist() == [dependents.APPLY, UNKNOWN_OFFERING, SESSION_MISMATCH, dependents.NO_TURN]
    assert verdicts["turn_session"].to_pylist() == ["s1", "s1", "s1", None]
    applied = verdicts.filter(pa.compute.field("verdict") == dependents.APPLY)
    changed = dependents.changed_turns(
        dependents.named_turns(stored, None), *none, dependents.applied_rows(clicks, applied)
    )
    assert changed.select(["uuid", "before_click_count", "after_click_count"]).to_pylist() == [
        {"uuid": UUIDS[0], "before_click_count": 0, "after_click_count": 1}
    ]
