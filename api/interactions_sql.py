"""SQL over the `interactions` table: the row shape, the filters, the orderings.

Everything user-given is a bound parameter; the only SQL text chosen by a request comes from the
fixed maps below (orderings) or from which filters are set, never from the values themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api import filter_sql
from api.models import Feedback, Interaction, field_names
from api.params import Filters
from schemas import fulltext
from schemas.conversation_rows import KPI_COUNTERS, REVIEWED
from schemas.interaction_rows import FEEDBACK_SQL as _FEEDBACK_SQL
from schemas.interaction_rows import HAS_FEEDBACK as _HAS_FEEDBACK
from schemas.interaction_rows import INTERACTION_SQL as _INTERACTION_SQL
from schemas.interaction_rows import ts

INTERACTION_FIELDS = field_names(Interaction)
FEEDBACK_FIELDS = field_names(Feedback)
if tuple(_INTERACTION_SQL) != INTERACTION_FIELDS or tuple(_FEEDBACK_SQL) != FEEDBACK_FIELDS:
    raise RuntimeError("api.interactions_sql selects other fields than api.models describes")

FEEDBACK_SELECT_LIST = ", ".join(_FEEDBACK_SQL.values())


# The `o` values to SQL; the uuid tie-breaker follows the direction of the first term.
ORDER_SQL = filter_sql.directions({"created": "created", "result_count": "result_count"})


def order_by(terms: Sequence[str]) -> str:
    return filter_sql.order_by(terms, ORDER_SQL, "uuid")


def where(filters: Filters) -> tuple[str, list[Any]]:
    """The WHERE condition for the filters (`TRUE` when none) and its parameters."""
    return filter_sql.conjunction(filters, _RULES)


def _item_condition(item: fulltext.Item, params: list[Any]) -> str:
    substring = item.substring()
    if substring is not None:
        params.append(substring)
        test = "contains(search_terms, ?)"
    else:
        params.append(item.pattern())
        test = "regexp_matches(search_terms, ?)"
    return f"NOT {test}" if item.negated else test


def query_condition(text: str) -> tuple[str, list[Any]]:
    """`query` (docs/api.md): the user_slug contains the text, case-insensitively, or the stored stems of
    the turn (`search_terms`, schemas.fulltext) match its websearch expression. contains() is a plain
    substring test, so `%` and `_` are literal; the SQL text depends only on the expression's shape."""
    params: list[Any] = [text]
    alternatives = ["contains(lower(user_slug), lower(?))"]
    for clause in fulltext.parse_query(text).clauses:
        alternatives.append("(" + " AND ".join(_item_condition(item, params) for item in clause) + ")")
    return "(" + " OR ".join(alternatives) + ")", params


# The turn-level filters (docs/api.md), each to its condition.
_RULES: dict[str, filter_sql.Rule] = {
    "created_from": "created_date >= ?",
    "created_to": "created_date <= ?",
    "has_feedback": filter_sql.either("fb_score IS NOT NULL", "fb_score IS NULL"),
    "has_negative_feedback": filter_sql.either("fb_score = -1", "fb_score IS DISTINCT FROM -1"),
    "is_flagged": "is_flagged = ?",
    "severity": "severity = ?",
    "session_id": "session_id = ?",
    "user_slug": "user_slug = ?",
    "query": query_condition,
}


def select_page(condition: str, order: str, *, limit: bool) -> str:
    """Each row's JSON object (`body`, kept by the projector: schemas.interaction_rows), in order."""
    tail = " LIMIT ? OFFSET ?" if limit else ""
    return f"SELECT body FROM interactions WHERE {condition} ORDER BY {order}{tail}"


def select_all(condition: str, order: str) -> str:
    """Every row passing `condition`, in `order`: each row's JSON object after a comma (a whole list,
    sent as it is read: `api.streaming.JsonTextArray`)."""
    return f"SELECT ',' || body FROM interactions WHERE {condition} ORDER BY {order}"


SELECT_ONE = "SELECT body FROM interactions WHERE uuid = ?"


def json_array(bodies: Sequence[tuple[str]]) -> bytes:
    """The JSON array of the selected rows' objects: their stored text, joined."""
    return ("[" + ",".join(body for (body,) in bodies) + "]").encode()


# A CSV row is flat: the interaction's fields (JSON ones as their JSON text), then the feedback's as
# `feedback_<field>`, all empty when the turn has neither feedback nor review (JSON's `"feedback": null`).
CSV_SELECT_LIST = ", ".join(
    [f'{sql} AS "{name}"' for name, sql in _INTERACTION_SQL.items() if name != "feedback"]
    + [
        f'CASE WHEN {_HAS_FEEDBACK} THEN {sql} END AS "feedback_{name}"'
        for name, sql in _FEEDBACK_SQL.items()
        if name != "interaction_uuid"
    ]
)


def select_csv(condition: str, order: str) -> str:
    """Every row passing `condition`, in `order`, as the CSV export's columns."""
    return f"SELECT {CSV_SELECT_LIST} FROM interactions WHERE {condition} ORDER BY {order}"


def count(condition: str) -> str:
    return f"SELECT count(*) FROM interactions WHERE {condition}"


def kpi_totals(condition: str) -> str:
    """The KPI's totals over the turns passing `condition`. Its per-turn counters are the ones each kept
    conversation row holds for its session (`schemas.conversation_rows.KPI_COUNTERS`), so that a KPI summed
    from those rows (`api.aggregates_sql.kpi_kept_totals`) counts the same things."""
    c = KPI_COUNTERS
    return f"""
        SELECT
            count(*),
            count(DISTINCT session_id),
            count(DISTINCT user_slug) FILTER (WHERE user_slug <> ''),
            {c["flagged"]},
            {c["feedback_up"]},
            {c["feedback_down"]},
            {c["clicks"]},
            {c["clarifications"]},
            coalesce(sum(input_tokens), 0),
            coalesce(sum(output_tokens), 0),
            {c["reviewed_turns"]},
            {c["review_score_sum"]},
            {c["hallucinated_turns"]},
            count(DISTINCT session_id) FILTER (WHERE {REVIEWED}),
            {c["review_input_tokens"]},
            {c["review_output_tokens"]},
            count(DISTINCT session_id) FILTER (WHERE {REVIEWED} AND llm_hallucination_detected)
        FROM interactions WHERE {condition}
    """


def intent_distribution(condition: str) -> str:
    return f"""
        SELECT llm_intent_category, count(*) FROM interactions
        WHERE {condition} AND llm_reviewed_at IS NOT NULL AND llm_intent_category <> ''
        GROUP BY llm_intent_category ORDER BY llm_intent_category
    """


def per_day_severity(condition: str) -> str:
    """Turns per (created day, severity) in [?, ?]: daily_volume and severity_by_day of a filtered KPI."""
    return f"""
        SELECT created_date, severity, count(*) FROM interactions
        WHERE {condition} AND created_date BETWEEN ? AND ?
        GROUP BY created_date, severity
    """


def users(condition: str, *, limit: bool) -> str:
    """by-user/ rows over the filtered turns (fields as api.models.UserAggregate)."""
    tail = " LIMIT ? OFFSET ?" if limit else ""
    return f"""
        SELECT
            user_slug,
            {ts("max(created)")},
            count(*) AS total_interactions,
            count(DISTINCT session_id),
            count(*) FILTER (WHERE fb_score = 1),
            count(*) FILTER (WHERE fb_score = -1),
            count(*) FILTER (WHERE fb_score IS NULL),
            count(*) FILTER (WHERE action_taken IN ('block', 'redact'))
        FROM interactions WHERE {condition} AND user_slug <> ''
        GROUP BY user_slug
        ORDER BY total_interactions DESC, user_slug ASC{tail}
    """


def count_users(condition: str) -> str:
    return f"SELECT count(DISTINCT user_slug) FROM interactions WHERE {condition} AND user_slug <> ''"
