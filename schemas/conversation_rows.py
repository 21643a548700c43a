"""How a conversation row is computed from its turns: the SQL shared by the projector, which keeps the
`conversations` table (every session over all its turns), and the API, which groups filtered turns the
same way (`api.conversations_sql`). One definition, so both give the same row, byte for byte.

Every expression reads `interactions` grouped by `session_id`; sums of BIGINTs are HUGEINTs (no
overflow); models are in code-point order (DuckDB compares strings bytewise).
"""

from __future__ import annotations

SEVERITY_RANK = (
    "CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END"
)
RANKS = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_SEVERITY_LABEL = (
    "CASE max_severity_rank WHEN 4 THEN 'critical' WHEN 3 THEN 'high' WHEN 2 THEN 'medium' WHEN 1 THEN 'low'"
    " ELSE 'none' END"
)
_INPUT, _OUTPUT = "sum(input_tokens)", "sum(output_tokens)"

# The grouped columns, by name, over a group of turns.
GROUPED: dict[str, str] = {
    "session_id": "session_id",
    "user_slug": "max(user_slug)",
    "message_count": "count(*)",
    "is_flagged": "bool_or(is_flagged)",
    "max_severity_rank": f"max({SEVERITY_RANK})",
    "has_feedback": "count(fb_score) > 0",
    "offerings_shown": "coalesce(sum(result_count), 0)",
    "offerings_clicked": "coalesce(sum(click_count), 0)",
    # Not string_agg(DISTINCT ... ORDER BY ...): a DISTINCT aggregate makes DuckDB group the turns twice
    # more and join the groups, about 40% of a search's grouping; the same string either way.
    "models_used": (
        "coalesce(array_to_string(list_sort(list_distinct(list(model) FILTER (WHERE model <> ''))), ', '), '')"
    ),
    "is_reviewed": "count(llm_reviewed_at) > 0",
    "input_tokens": _INPUT,
    "output_tokens": _OUTPUT,
    "total_tokens": f"{_INPUT} + {_OUTPUT}",
    "started": "min(created)",
    "last_active": "max(created)",
}

# Each response field, in the served order, from the grouped columns.
FIELDS: dict[str, str] = {
    "session_id": "session_id",
    "user_slug": "user_slug",
    "message_count": "message_count",
    "is_flagged": "is_flagged",
    "max_severity": _SEVERITY_LABEL,
    "max_severity_rank": "max_severity_rank",
    "has_feedback": "has_feedback",
    "offerings_shown": "offerings_shown",
    "offerings_clicked": "offerings_clicked",
    "models_used": "models_used",
    "is_reviewed": "is_reviewed",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "total_tokens": "total_tokens",
    "started": "strftime(started, '%Y-%m-%dT%H:%M:%S.%fZ')",
    "last_active": "strftime(last_active, '%Y-%m-%dT%H:%M:%S.%fZ')",
}

# One row's JSON object, rendered by DuckDB over the grouped columns.
ROW_JSON = "json_object(" + ", ".join(f"'{name}', {sql}" for name, sql in FIELDS.items()) + ")::VARCHAR"


def grouped(condition: str, having: str = "TRUE") -> str:
    """The grouped rows of the turns passing `condition`, kept when they pass `having`."""
    columns = ", ".join(f"{sql} AS {name}" for name, sql in GROUPED.items())
    return f"SELECT {columns} FROM interactions WHERE {condition} GROUP BY session_id HAVING {having}"


# What the KPI counts of a session, kept beside its row so that a KPI narrowed by conversation-level
# filters alone sums one short row per session instead of scanning the turns (`api.aggregates_sql`).
# The KPI over turns (`api.interactions_sql.kpi_totals`) counts with the same definitions.
REVIEWED = "llm_reviewed_at IS NOT NULL"
KPI_COUNTERS: dict[str, str] = {
    "flagged": "count(*) FILTER (WHERE is_flagged)",
    "feedback_up": "count(*) FILTER (WHERE fb_score = 1)",
    "feedback_down": "count(*) FILTER (WHERE fb_score = -1)",
    "clicks": "coalesce(sum(click_count), 0)",
    "clarifications": "count(*) FILTER (WHERE is_clarification)",
    "reviewed_turns": f"count(*) FILTER (WHERE {REVIEWED})",
    "review_score_sum": f"coalesce(sum(llm_resolution_score) FILTER (WHERE {REVIEWED}), 0)",
    "hallucinated_turns": f"count(*) FILTER (WHERE {REVIEWED} AND llm_hallucination_detected)",
    "review_input_tokens": f"coalesce(sum(llm_input_tokens) FILTER (WHERE {REVIEWED}), 0)",
    "review_output_tokens": f"coalesce(sum(llm_output_tokens) FILTER (WHERE {REVIEWED}), 0)",
    # The session's visitors (a session can have turns of more than one): the KPI counts them distinct.
    # No DISTINCT aggregates here: DuckDB groups the turns again for each and joins the groups.
    "users": "coalesce(list_sort(list_distinct(list(user_slug) FILTER (WHERE user_slug <> ''))), [])",
    # The intent of each reviewed turn that has one, in order: the KPI counts them per intent.
    "intents": f"coalesce(list(llm_intent_category ORDER BY llm_intent_category) FILTER (WHERE {REVIEWED}"
    " AND llm_intent_category <> ''), [])",
}
SEVERITIES = ("none", "low", "medium", "high", "critical")
# The session's turns per severity: with its one created day, the session's `days`.
_BY_SEVERITY = {f"n_{s}": f"count(*) FILTER (WHERE severity = '{s}')" for s in SEVERITIES}
# The session's turns per created day and severity (daily_volume, severity_by_day), one element per day
# in day order. Nearly every session lies within one day: its element comes from its own counts; only
# the turns of sessions that span days are grouped by day again.
_DAY = "{'day': %s, " + ", ".join(f"'{s}': %s" for s in SEVERITIES) + "}"
_SPANNING_DAYS = (
    f"SELECT session_id, list({_DAY % ('created_date', *(f'n_{s}' for s in SEVERITIES))} ORDER BY created_date)"
    " AS days FROM (SELECT session_id, created_date, "
    + ", ".join(f"{sql} AS {name}" for name, sql in _BY_SEVERITY.items())
    + " FROM turns WHERE session_id IN (SELECT session_id FROM rows WHERE first_day <> last_day)"
    " GROUP BY session_id, created_date) GROUP BY session_id"
)
_ONE_DAY = f"[{_DAY % ('first_day', *(f'n_{s}' for s in SEVERITIES))}]"
_TURN_COLUMNS = (
    "session_id, user_slug, is_flagged, severity, fb_score, result_count, click_count, model, llm_reviewed_at,"
    " input_tokens, output_tokens, created, created_date, is_clarification, llm_resolution_score,"
    " llm_hallucination_detected, llm_input_tokens, llm_output_tokens, llm_intent_category"
)
_KEPT_COLUMNS = (
    "session_id, started, last_active, message_count, max_severity_rank, is_reviewed, input_tokens,"
    " output_tokens, total_tokens, offerings_shown, " + ", ".join(KPI_COUNTERS)
)
_ROW_COLUMNS = {
    **GROUPED,
    **KPI_COUNTERS,
    **_BY_SEVERITY,
    "first_day": "min(created_date)",
    "last_day": "max(created_date)",
}


def refresh_sql(created_ranges: int = 0) -> str:
    """The statement that inserts the kept table's row of each session in `?` (a list of session ids),
    from all its turns: the grouped columns, the KPI's counters, days and intents, and the JSON. The
    session's turns are read once. With `created_ranges`, the turns read are also those created within
    one of that many ranges (`BETWEEN ? AND ?`, their bounds as parameters after the list): a bound
    DuckDB checks against each row group's min/max of `created` and skips the groups outside it, where
    the session list alone makes it read the whole session_id column (projector/conversations.py)."""
    within = " OR ".join(["created BETWEEN ? AND ?"] * created_ranges)
    return _REFRESH.replace("/*within*/", f" AND ({within})" if within else "")


_SESSIONS_IN_PARAMETER = "session_id IN (SELECT unnest(?::VARCHAR[]))"
_REFRESH = f"""
INSERT INTO conversations BY NAME
WITH turns AS MATERIALIZED (
    SELECT {_TURN_COLUMNS} FROM interactions WHERE {_SESSIONS_IN_PARAMETER}/*within*/
),
rows AS MATERIALIZED (
    SELECT {", ".join(f"{sql} AS {name}" for name, sql in _ROW_COLUMNS.items())}
    FROM turns GROUP BY session_id
)
SELECT {_KEPT_COLUMNS}, coalesce(spanning.days, {_ONE_DAY}) AS days, {ROW_JSON} AS body
FROM rows LEFT JOIN ({_SPANNING_DAYS}) AS spanning USING (session_id)
"""
# Every turn of each session in `?`, unbounded.
REFRESH = refresh_sql()
# Every session's row from all its turns, the whole table at once (no parameters): what `REFRESH` gives
# each session (`projector.conversations.settle`).
REFRESH_ALL = _REFRESH.replace(_SESSIONS_IN_PARAMETER, "TRUE").replace("/*within*/", "")
