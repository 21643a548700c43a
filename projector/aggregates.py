"""Recomputes `sessions`, `user_stats` and `daily_counters` for the keys one batch touched.

Each touched key's row is rebuilt from the fact tables (`interactions`, `usage_events`) with
DELETE + INSERT ... SELECT ... GROUP BY inside the batch's transaction. That is always right, whatever
order events arrive in (a late, older turn can move a session's first day), and it costs a scan of
the touched keys' rows only. The definitions follow API.md (by-user) and the column comments of
schemas/readmodel.py (daily counters).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import duckdb
import pyarrow as pa

_REFRESH_SESSIONS = """
INSERT INTO sessions
SELECT
    session_id,
    first(user_slug ORDER BY created, uuid) AS user_slug,
    min(created) AS first_created,
    max(created) AS last_created,
    count(*) AS turns,
    count(llm_reviewed_at) AS reviewed_turns
FROM interactions
WHERE session_id IN (SELECT session_id FROM touched_sessions)
GROUP BY session_id
"""

_REFRESH_USERS = """
INSERT INTO user_stats
SELECT
    user_slug,
    max(created) AS last_seen,
    count(*) AS total_interactions,
    count(DISTINCT session_id) AS session_count,
    count(*) FILTER (WHERE fb_score = 1) AS positive_feedback,
    count(*) FILTER (WHERE fb_score = -1) AS negative_feedback,
    count(*) FILTER (WHERE fb_score IS NULL OR fb_score NOT IN (1, -1)) AS no_feedback,
    count(*) FILTER (WHERE action_taken IN ('block', 'redact')) AS injection_strikes
FROM interactions
WHERE user_slug <> '' AND user_slug IN (SELECT user_slug FROM touched_slugs)
GROUP BY user_slug
"""

_REFRESH_DAYS = """
INSERT INTO daily_counters
WITH t AS (
    SELECT
        created_date AS day,
        count(*) AS turns,
        count(*) FILTER (WHERE is_flagged) AS flagged,
        count(*) FILTER (WHERE severity = 'none') AS severity_none,
        count(*) FILTER (WHERE severity = 'low') AS severity_low,
        count(*) FILTER (WHERE severity = 'medium') AS severity_medium,
        count(*) FILTER (WHERE severity = 'high') AS severity_high,
        count(*) FILTER (WHERE severity = 'critical') AS severity_critical,
        sum(click_count) AS clicks,
        count(*) FILTER (WHERE fb_score = 1) AS feedback_up,
        count(*) FILTER (WHERE fb_score = -1) AS feedback_down,
        count(*) FILTER (WHERE is_clarification) AS clarifications,
        sum(input_tokens) AS turn_input_tokens,
        sum(output_tokens) AS turn_output_tokens,
        count(llm_reviewed_at) AS reviewed,
        coalesce(sum(llm_resolution_score) FILTER (WHERE llm_reviewed_at IS NOT NULL), 0) AS review_score_sum,
        count(*) FILTER (WHERE llm_reviewed_at IS NOT NULL AND llm_hallucination_detected) AS hallucinations,
        sum(llm_input_tokens) AS review_input_tokens,
        sum(llm_output_tokens) AS review_output_tokens
    FROM interactions
    WHERE created_date IN (SELECT day FROM touched_days)
    GROUP BY created_date
),
s AS (
    SELECT CAST(first_created AS DATE) AS day, count(*) AS sessions_started
    FROM sessions
    WHERE CAST(first_created AS DATE) IN (SELECT day FROM touched_days)
    GROUP BY 1
),
u AS (
    SELECT day, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, count(*) AS n
    FROM usage_events
    WHERE day IN (SELECT day FROM touched_days)
    GROUP BY day
)
SELECT
    d.day,
    coalesce(t.turns, 0),
    coalesce(s.sessions_started, 0),
    coalesce(t.flagged, 0),
    coalesce(t.severity_none, 0),
    coalesce(t.severity_low, 0),
    coalesce(t.severity_medium, 0),
    coalesce(t.severity_high, 0),
    coalesce(t.severity_critical, 0),
    coalesce(t.clicks, 0),
    coalesce(t.feedback_up, 0),
    coalesce(t.feedback_down, 0),
    coalesce(t.clarifications, 0),
    coalesce(t.turn_input_tokens, 0),
    coalesce(t.turn_output_tokens, 0),
    coalesce(u.input_tokens, 0),
    coalesce(u.output_tokens, 0),
    coalesce(u.n, 0),
    coalesce(t.reviewed, 0),
    coalesce(t.review_score_sum, 0),
    coalesce(t.hallucinations, 0),
    coalesce(t.review_input_tokens, 0),
    coalesce(t.review_output_tokens, 0)
FROM touched_days d
LEFT JOIN t ON t.day = d.day
LEFT JOIN s ON s.day = d.day
LEFT JOIN u ON u.day = d.day
WHERE t.day IS NOT NULL OR s.day IS NOT NULL OR u.day IS NOT NULL
"""


def refresh(
    con: duckdb.DuckDBPyConnection, *, sessions: Iterable[str], slugs: Iterable[str], days: Iterable[date]
) -> None:
    """Rebuilds the rows of the given keys; call inside the batch's transaction, after its facts are written."""
    sessions = sorted(set(sessions))
    days = set(days)
    if sessions:
        con.register("touched_sessions", pa.table({"session_id": pa.array(sessions, pa.string())}))
        try:
            # A session's first day can move when an older turn arrives late: its old day changes too.
            old_days = con.execute(
                "SELECT DISTINCT CAST(first_created AS DATE) FROM sessions"
                " WHERE session_id IN (SELECT session_id FROM touched_sessions)"
            ).fetchall()
            days.update(d for (d,) in old_days)
            con.execute("DELETE FROM sessions WHERE session_id IN (SELECT session_id FROM touched_sessions)")
            con.execute(_REFRESH_SESSIONS)
        finally:
            con.unregister("touched_sessions")
    slugs = sorted({s for s in slugs if s})
    if slugs:
        con.register("touched_slugs", pa.table({"user_slug": pa.array(slugs, pa.string())}))
        try:
            con.execute("DELETE FROM user_stats WHERE user_slug IN (SELECT user_slug FROM touched_slugs)")
            con.execute(_REFRESH_USERS)
        finally:
            con.unregister("touched_slugs")
    if days:
        con.register("touched_days", pa.table({"day": pa.array(sorted(days), pa.date32())}))
        try:
            con.execute("DELETE FROM daily_counters WHERE day IN (SELECT day FROM touched_days)")
            con.execute(_REFRESH_DAYS)
        finally:
            con.unregister("touched_days")
