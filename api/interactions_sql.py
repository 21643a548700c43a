"""SQL over the `interactions` table: the row shape, the filters, the orderings.

Everything user-given is a bound parameter; the only SQL text chosen by a request comes from the
fixed maps below (orderings) or from which filters are set, never from the values themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from api import filter_sql
from api.models import Feedback, Interaction, field_names
from api.params import Filters
from schemas import fulltext
from schemas.conversation_rows import KPI_COUNTERS, REVIEWED
from schemas.readmodel import IS_FEEDBACK_RECORD


def ts(column: str) -> str:
    """A stored UTC TIMESTAMP as `2026-11-26T09:15:02.123456Z` (always six fraction digits)."""
    return f"strftime({column}, '%Y-%m-%dT%H:%M:%S.%fZ')"


# Interaction fields, in the model's order, to the SQL that yields each. JSON-valued fields are stored
# as JSON text and spliced into the response as they are.
_INTERACTION_SQL: dict[str, str] = {
    "uuid": "CAST(uuid AS VARCHAR)",
    "user_slug": "user_slug",
    "user_input": "user_input",
    "assistant_blocks": "assistant_blocks",
    "offering_uuids": "offering_uuids",
    "result_count": "result_count",
    "is_flagged": "is_flagged",
    "severity": "severity",
    "injection_categories": "injection_categories",
    "pii_categories": "pii_categories",
    "action_taken": "action_taken",
    "warning": "warning",
    "ip_address": "ip_address",
    "session_id": "session_id",
    "last_active_at": ts("last_active_at"),
    "created": ts("created"),
    "feedback": IS_FEEDBACK_RECORD,
    "click_count": "click_count",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
}
JSON_FIELDS = frozenset({"assistant_blocks", "offering_uuids", "injection_categories", "pii_categories"})

_FEEDBACK_SQL: dict[str, str] = {
    "interaction_uuid": "CAST(uuid AS VARCHAR)",
    "score": "fb_score",
    "category": "coalesce(fb_category, '')",
    "comment": "fb_comment",
    "submitted_from_ip": "fb_ip",
    "submitted_at": ts("fb_submitted_at"),
    "llm_resolution_score": "llm_resolution_score",
    "llm_intent_category": "llm_intent_category",
    "llm_hallucination_detected": "llm_hallucination_detected",
    "llm_hallucination_details": "llm_hallucination_details",
    "llm_summary": "llm_summary",
    "llm_reviewed_at": ts("llm_reviewed_at"),
    "llm_judge_model": "llm_judge_model",
    "llm_judge_input_tokens": "llm_input_tokens",
    "llm_judge_output_tokens": "llm_output_tokens",
    # DuckDB's greatest() skips NULLs, so this is whichever of the two happened (last).
    "modified_at": ts("greatest(fb_submitted_at, llm_reviewed_at)"),
}

INTERACTION_FIELDS = field_names(Interaction)
FEEDBACK_FIELDS = field_names(Feedback)
if tuple(_INTERACTION_SQL) != INTERACTION_FIELDS or tuple(_FEEDBACK_SQL) != FEEDBACK_FIELDS:
    raise RuntimeError("api.interactions_sql selects other fields than api.models describes")

SELECT_LIST = ", ".join([*_INTERACTION_SQL.values(), *_FEEDBACK_SQL.values()])
FEEDBACK_SELECT_LIST = ", ".join(_FEEDBACK_SQL.values())
_N = len(INTERACTION_FIELDS)
_FEEDBACK_AT = INTERACTION_FIELDS.index("feedback")
_JSON_AT = tuple(i for i, name in enumerate(INTERACTION_FIELDS) if name in JSON_FIELDS)


def _json_text(fields: dict[str, str], spliced: frozenset[str] = frozenset()) -> str:
    """SQL rendering a JSON object of `fields` (name to SQL) as text, in their order: the `spliced` ones
    are JSON text already and go in as they are (as `to_body` splices the stored JSON columns), every
    other value is rendered by DuckDB's to_json."""

    def value(name: str, sql: str) -> str:
        return sql if name in spliced else f"coalesce(to_json({sql}), 'null')"

    # One concat() of every part: a chain of || copied the growing text once per field.
    parts = []
    for i, (name, sql) in enumerate(fields.items()):
        opening = "," if i else "{"
        parts.append(f"""'{opening}"{name}":', {value(name, sql)}""")
    return f"concat({', '.join(parts)}, '}}')"


# One row as the JSON text of its `to_body` object, rendered by DuckDB: a long transcript is streamed as
# these texts end to end (`api.streaming.JsonTextArray`), since a Python object per field of each row
# was most of the time of a heavy visitor's whole history. Equal to `to_body` as JSON (tests/api/
# test_api_transcript_json.py); DuckDB writes a control character's escape in upper case (\u001F).
ROW_JSON = _json_text(
    {
        **_INTERACTION_SQL,
        "feedback": f"CASE WHEN {IS_FEEDBACK_RECORD} THEN {_json_text(_FEEDBACK_SQL)} ELSE 'null' END",
    },
    spliced=JSON_FIELDS | {"feedback"},
)


def to_body(row: Sequence[Any]) -> dict[str, Any]:
    """One selected row to the response object (JSON text columns as orjson fragments)."""
    body = dict(zip(INTERACTION_FIELDS, row[:_N], strict=True))
    for i in _JSON_AT:
        body[INTERACTION_FIELDS[i]] = orjson.Fragment(row[i])
    body["feedback"] = dict(zip(FEEDBACK_FIELDS, row[_N:], strict=True)) if row[_FEEDBACK_AT] else None
    return body


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


def select_all(condition: str, order: str) -> str:
    """Every row passing `condition`, in order (a whole list; a page: `select_page_keys`)."""
    return f"SELECT {SELECT_LIST} FROM interactions WHERE {condition} ORDER BY {order}"


def select_page_keys(condition: str, order: str) -> str:
    """The keys of one page's rows (LIMIT ? OFFSET ?), in order: uuid and event id (as text) and
    `row_version`, what `api.row_cache` keys a served row by; the rows the cache lacks are then read by
    key (`SELECT_BY_KEYS`). The top-N carries only the ordering columns and the keys; carrying every
    selected column, DuckDB read them for whole row groups to find ten rows (and for every row skipped
    before a deep page)."""
    return (
        "SELECT CAST(uuid AS VARCHAR), CAST(event_id AS VARCHAR), row_version"
        f" FROM interactions WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?"
    )


def select_few_page_keys(condition: str, order: str) -> str:
    """`select_page_keys` with a fourth column, every row's: how many rows pass `condition`. Only for
    a question a kept count bounds to a few rows (`api.queries.FEW_ROWS`): DuckDB then reads them
    through the key's serving index, where the top-N of `select_page_keys` and a `count(*)` each scan
    the whole table; over many rows the window costs far more than both."""
    return (
        "SELECT CAST(uuid AS VARCHAR), CAST(event_id AS VARCHAR), row_version, count(*) OVER ()"
        f" FROM interactions WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?"
    )


SELECT_ONE = f"SELECT {SELECT_LIST} FROM interactions WHERE uuid = ?"
# The rows of a list of uuids (`?`, text), in no particular order, found through the primary key's index.
SELECT_BY_KEYS = f"SELECT {SELECT_LIST} FROM interactions WHERE uuid = ANY(?::UUID[])"
# The turns of a list of sessions (`?`), each session's in its transcript's order (`order_by(("created",))`).
SELECT_SESSIONS_TURNS = (
    f"SELECT session_id, {SELECT_LIST} FROM interactions WHERE session_id = ANY(?::VARCHAR[])"
    f" ORDER BY session_id, {order_by(('created',))}"
)

# A CSV row is flat: the interaction's fields (JSON ones as their JSON text), then the feedback's as
# `feedback_<field>`, all empty when the turn has neither feedback nor review (JSON's `"feedback": null`).
_HAS_FEEDBACK = _INTERACTION_SQL["feedback"]
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


def kpi_totals(condition: str, source: str = "interactions") -> str:
    """The KPI's additive counters over the turns of `source` passing `condition` (in the order of
    `api.aggregates_sql.kpi_daily`). They are the ones each kept conversation row holds for its
    session (`schemas.conversation_rows.KPI_COUNTERS`), so that a KPI summed from those rows
    (`api.aggregates_sql.kpi_kept`) counts the same things."""
    c = KPI_COUNTERS
    return f"""
        SELECT
            count(*),
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
            {c["review_input_tokens"]},
            {c["review_output_tokens"]}
        FROM {source} WHERE {condition}
    """


def kpi_sessions(condition: str, source: str = "interactions") -> str:
    """The KPI's distinct counts over the turns of `source` passing `condition`: visitors, sessions,
    sessions with a reviewed turn, sessions with a reviewed turn that found a hallucination. The sessions
    are grouped once and then counted: a `count(DISTINCT session_id) FILTER (...)` each made DuckDB group
    the turns again and join the groups, most of a filtered KPI's time."""
    return f"""
        WITH kpi_turns AS (
            SELECT session_id, user_slug, llm_reviewed_at, llm_hallucination_detected
            FROM {source} WHERE {condition}
        )
        SELECT
            (SELECT count(DISTINCT user_slug) FROM kpi_turns WHERE user_slug <> ''),
            count(*),
            count(*) FILTER (WHERE reviewed),
            count(*) FILTER (WHERE hallucinated)
        FROM (
            SELECT
                session_id,
                bool_or({REVIEWED}) AS reviewed,
                bool_or({REVIEWED} AND llm_hallucination_detected) AS hallucinated
            FROM kpi_turns GROUP BY session_id
        )
    """


def kpi_distinct_and_intents(condition: str) -> str:
    """`kpi_sessions`' four counts then `intent_distribution`'s (intent, reviewed turns) rows as a list,
    over the turns passing `condition`, in one statement whose turns are named once (a CTE the three
    parts read): about 15% less CPU than the two statements, for a date range of a week or all of it."""
    return f"""
        WITH kpi_turns AS (
            SELECT session_id, user_slug, llm_reviewed_at, llm_hallucination_detected, llm_intent_category
            FROM interactions WHERE {condition}
        )
        SELECT
            (SELECT count(DISTINCT user_slug) FROM kpi_turns WHERE user_slug <> ''),
            count(*),
            count(*) FILTER (WHERE reviewed),
            count(*) FILTER (WHERE hallucinated),
            (SELECT list(row(llm_intent_category, n)) FROM (
                SELECT llm_intent_category, count(*) AS n FROM kpi_turns
                WHERE {REVIEWED} AND llm_intent_category <> '' GROUP BY llm_intent_category
            ))
        FROM (
            SELECT
                session_id,
                bool_or({REVIEWED}) AS reviewed,
                bool_or({REVIEWED} AND llm_hallucination_detected) AS hallucinated
            FROM kpi_turns GROUP BY session_id
        )
    """


def intent_distribution(condition: str, source: str = "interactions") -> str:
    return f"""
        SELECT llm_intent_category, count(*) FROM {source}
        WHERE {condition} AND llm_reviewed_at IS NOT NULL AND llm_intent_category <> ''
        GROUP BY llm_intent_category ORDER BY llm_intent_category
    """


def per_day_severity(condition: str, source: str = "interactions") -> str:
    """Turns per (created day, severity) in [?, ?]: daily_volume and severity_by_day of a filtered KPI."""
    return f"""
        SELECT created_date, severity, count(*) FROM {source}
        WHERE {condition} AND created_date BETWEEN ? AND ?
        GROUP BY created_date, severity
    """


# What the KPI reads of a turn.
_KPI_COLUMNS = (
    "session_id, user_slug, is_flagged, severity, fb_score, click_count, is_clarification, input_tokens,"
    " output_tokens, created_date, llm_reviewed_at, llm_resolution_score, llm_intent_category,"
    " llm_hallucination_detected, llm_input_tokens, llm_output_tokens"
)


def kpi_once(condition: str) -> str:
    """The four statements above in one, over the turns passing `condition` materialized once (its
    parameters, then the days' [?, ?]): a list of the counters, one of the distinct counts, and the days
    and the intents as lists of rows. For a costly condition: the KPI narrowed to the conversations that
    pass stage 2 groups every turn by session in its condition, once instead of once per statement. (A
    cheap condition that keeps most turns costs more materialized than evaluated four times.)"""
    return f"""
        WITH kpi_source AS MATERIALIZED (SELECT {_KPI_COLUMNS} FROM interactions WHERE {condition})
        SELECT
            (SELECT list_value(*COLUMNS(*)) FROM ({kpi_totals("TRUE", "kpi_source")})),
            (SELECT list_value(*COLUMNS(*)) FROM ({kpi_sessions("TRUE", "kpi_source")})),
            (SELECT list(row(*COLUMNS(*))) FROM ({per_day_severity("TRUE", "kpi_source")})),
            (SELECT list(row(*COLUMNS(*))) FROM ({intent_distribution("TRUE", "kpi_source")}))
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
