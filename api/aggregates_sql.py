"""SQL over the incremental aggregates the projector keeps: `daily_counters`, `sessions`, `user_stats`.

These answer the unfiltered KPI, the unfiltered by-user list, the budget, and the result counts (and
page windows) of the common list queries without touching the `interactions` rows.
"""

from __future__ import annotations

from api.interactions_sql import ts
from api.params import Filters

SEVERITY_COLUMNS: dict[str, str] = {
    "none": "severity_none",
    "low": "severity_low",
    "medium": "severity_medium",
    "high": "severity_high",
    "critical": "severity_critical",
}

# The filters whose per-day counts daily_counters holds: a date range plus severity or is_flagged.
DAILY_FILTERS = ("created_from", "created_to", "severity", "is_flagged")


def daily_count_expression(filters: Filters) -> str | None:
    """daily_counters' column (expression) counting the turns of a day that pass the filters, or None
    when daily_counters cannot tell (a filter on the raw turns, or severity and is_flagged together)."""
    if not filters.only(*DAILY_FILTERS):
        return None
    if filters.severity is not None and filters.is_flagged is not None:
        return None
    if filters.severity is not None:
        return SEVERITY_COLUMNS[filters.severity]
    if filters.is_flagged is True:
        return "flagged"
    if filters.is_flagged is False:
        return "turns - flagged"
    return "turns"


def per_day(expression: str, *, newest_first: bool) -> str:
    """(day, turns that pass) for the days in [?, ?] that have any; the expression is from the fixed map."""
    direction = "DESC" if newest_first else "ASC"
    return f"""
        SELECT day, {expression} AS n FROM daily_counters
        WHERE day BETWEEN ? AND ? AND {expression} > 0
        ORDER BY day {direction}
    """


def total_for_days(expression: str) -> str:
    return f"SELECT coalesce(sum({expression}), 0) FROM daily_counters WHERE day BETWEEN ? AND ?"


SESSION_TURNS = "SELECT turns FROM sessions WHERE session_id = ?"
SESSIONS_TURNS = "SELECT session_id, turns FROM sessions WHERE session_id = ANY(?::VARCHAR[])"
USER_TURNS = "SELECT total_interactions FROM user_stats WHERE user_slug = ?"

# The KPI's additive counters, in the order of `api.interactions_sql.kpi_totals`, summed over daily_counters.
_KPI_DAILY_SUMS = ", ".join(
    f"coalesce(sum({column}), 0)"
    for column in (
        "turns",
        "flagged",
        "feedback_up",
        "feedback_down",
        "clicks",
        "clarifications",
        "turn_input_tokens",
        "turn_output_tokens",
        "reviewed",
        "review_score_sum",
        "hallucinations",
        "review_input_tokens",
        "review_output_tokens",
    )
)
_SEVERITY_DAY = "row(day, severity_none, severity_low, severity_medium, severity_high, severity_critical)"


def kpi_daily(*, between: bool) -> str:
    """The KPI's additive counters (`_KPI_DAILY_SUMS`), then the (day, turns of each severity) rows of the
    days in [?, ?] that have turns (its daily_volume and severity_by_day), as a list: both from one read of
    daily_counters, where two statements read it twice. With `between` (a KPI filtered by a date range
    alone), over the days in a second [?, ?] only."""
    days = f"list({_SEVERITY_DAY}) FILTER (WHERE day BETWEEN ? AND ? AND turns > 0)"
    where = " WHERE day BETWEEN ? AND ?" if between else ""
    return f"SELECT {_KPI_DAILY_SUMS}, {days} FROM daily_counters{where}"


# The unfiltered KPI's counts of sessions and visitors (the columns of `api.interactions_sql.kpi_sessions`),
# in one statement: each session has one kept conversation row, each visitor one user_stats row.
# docs/api.md: reviewed_total and hallucination_rate count sessions.
KPI_SESSIONS = """
    SELECT
        (SELECT count(*) FROM user_stats),
        count(*),
        count(*) FILTER (WHERE reviewed_turns > 0),
        count(*) FILTER (WHERE hallucinated_turns > 0)
    FROM conversations
"""

_USER_COLUMNS = f"""
    user_slug, {ts("last_seen")}, total_interactions, session_count,
    positive_feedback, negative_feedback, no_feedback, injection_strikes
"""
USERS_PAGE = f"""
    SELECT {_USER_COLUMNS} FROM user_stats
    ORDER BY total_interactions DESC, user_slug ASC LIMIT ? OFFSET ?
"""
USERS_ALL = f"SELECT {_USER_COLUMNS} FROM user_stats ORDER BY total_interactions DESC, user_slug ASC"
USER_ONE = f"SELECT {_USER_COLUMNS} FROM user_stats WHERE user_slug = ?"
COUNT_USERS = "SELECT count(*) FROM user_stats"

# Erased turns leave every table but stay in the budget: what they cost was spent (docs/privacy.md).
BUDGET_TODAY = """
    SELECT
        turn_input_tokens + turn_output_tokens + usage_input_tokens + usage_output_tokens + erased_tokens,
        turns + usage_events + erased_turns
    FROM daily_counters WHERE day = ?
"""


# -- the KPI narrowed by conversation-level filters alone -------------------------------------------
# Summed over the `conversations` rows that pass: each row keeps its session's KPI counters, its visitors,
# its turns per day and severity and its reviewed turns' intents (schemas.conversation_rows), so no turn
# is read.

_KEPT_COUNTERS = (
    "message_count",
    "flagged",
    "feedback_up",
    "feedback_down",
    "clicks",
    "clarifications",
    "input_tokens",
    "output_tokens",
    "reviewed_turns",
    "review_score_sum",
    "hallucinated_turns",
    "review_input_tokens",
    "review_output_tokens",
)


def kpi_kept(having: str) -> str:
    """The KPI over the kept rows passing `having`, in one statement of one row: the counters of
    `api.interactions_sql.kpi_totals` in its order then the sessions, reviewed sessions and hallucinated
    sessions (a list); the distinct visitors; the (day, turns of each severity) rows in [?, ?]; the
    (intent, reviewed turns) rows. Parameters: the HAVING's twice, the days' bounds, the HAVING's twice.

    Each part scans the passing rows itself: a MATERIALIZED CTE of them cost three times the whole
    statement (DuckDB copies the list columns), and the filter is cheap to evaluate again. The days are
    bounded after grouping (a condition on each unnested element cost more than the statement saved);
    the visitors are grouped, then counted (a DISTINCT aggregate cost more); `intents` is empty for a
    conversation without a reviewed turn, so it needs no condition of its own."""
    counters = ", ".join(f"sum({column})" for column in _KEPT_COUNTERS)
    sessions = "count(*), count(*) FILTER (WHERE reviewed_turns > 0), count(*) FILTER (WHERE hallucinated_turns > 0)"
    severities = ", ".join(f'sum(d."{s}")' for s in SEVERITY_COLUMNS)
    return f"""
        SELECT
            (SELECT list_value({counters}, {sessions}) FROM conversations WHERE {having}),
            (SELECT count(*) FROM (SELECT unnest(users) AS u FROM conversations WHERE {having} GROUP BY u)),
            (SELECT list(row(*COLUMNS(*))) FILTER (WHERE day BETWEEN ? AND ?) FROM (
                SELECT d.day AS day, {severities}
                FROM (SELECT unnest(days) AS d FROM conversations WHERE {having}) GROUP BY d.day
            )),
            (SELECT list(row(*COLUMNS(*))) FROM (
                SELECT intent, count(*)
                FROM (SELECT unnest(intents) AS intent FROM conversations WHERE {having}) GROUP BY intent
            ))
    """
