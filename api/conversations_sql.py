"""SQL of /conversations/ and of the KPI's conversation-level narrowing: `interactions` grouped by session.

Stage 1 (the turn-level filters, `api.interactions_sql.where`) trims each conversation to its turns that
pass; stage 2 (`ConversationFilters`) keeps or drops whole conversations as stage 1 left them (HAVING).
Rows are rendered to JSON by DuckDB itself: a whole list can hold every session of the file, and building
a Python object per field of each cost several times more than the query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.interactions_sql import ts
from api.models import Conversation, field_names
from api.params import ConversationFilters

SEVERITY_RANK = (
    "CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END"
)
_SEVERITY_LABEL = (
    "CASE max_severity_rank WHEN 4 THEN 'critical' WHEN 3 THEN 'high' WHEN 2 THEN 'medium' WHEN 1 THEN 'low'"
    " ELSE 'none' END"
)
RANKS = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

# The aggregates behind each conversation column (sums of BIGINTs are HUGEINTs: no overflow).
_INPUT, _OUTPUT = "sum(input_tokens)", "sum(output_tokens)"
_COLUMNS: dict[str, str] = {
    "session_id": "session_id",
    "user_slug": "max(user_slug)",
    "message_count": "count(*)",
    "is_flagged": "bool_or(is_flagged)",
    "max_severity_rank": f"max({SEVERITY_RANK})",
    "has_feedback": "count(fb_score) > 0",
    "offerings_shown": "coalesce(sum(result_count), 0)",
    "offerings_clicked": "coalesce(sum(click_count), 0)",
    # Decision 8: distinct non-empty models, ascending by code point (DuckDB compares strings bytewise).
    "models_used": "coalesce(string_agg(DISTINCT model, ', ' ORDER BY model) FILTER (WHERE model <> ''), '')",
    "is_reviewed": "count(llm_reviewed_at) > 0",
    "input_tokens": _INPUT,
    "output_tokens": _OUTPUT,
    "total_tokens": f"{_INPUT} + {_OUTPUT}",
    "started": "min(created)",
    "last_active": "max(created)",
}
# Each response field to the SQL over the grouped columns that yields it, in the model's order.
_FIELDS: dict[str, str] = {
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
    "started": ts("started"),
    "last_active": ts("last_active"),
}
if tuple(_FIELDS) != field_names(Conversation):
    raise RuntimeError("api.conversations_sql selects other fields than api.models.Conversation describes")

_ROW_JSON = "json_object(" + ", ".join(f"'{name}', {sql}" for name, sql in _FIELDS.items()) + ")::VARCHAR"

# Decision 4: the `o` values to SQL over the grouped columns; session_id ascending breaks ties.
ORDER_SQL: dict[str, str] = {}
for _term, _column in {
    "last_active": "last_active",
    "started": "started",
    "message_count": "message_count",
    "total_tokens": "total_tokens",
    "max_severity_rank": "max_severity_rank",
    "created": "started",
    "result_count": "offerings_shown",
}.items():
    ORDER_SQL[_term] = f"{_column} ASC"
    ORDER_SQL[f"-{_term}"] = f"{_column} DESC"


def order_by(terms: Sequence[str]) -> str:
    return ", ".join([*(ORDER_SQL[t] for t in terms), "session_id ASC"])


def having(filters: ConversationFilters) -> tuple[str, list[Any]]:
    """The stage-2 condition over a group of turns (`TRUE` when none) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    bounds = {
        "input_tokens": (filters.input_tokens_min, filters.input_tokens_max),
        "output_tokens": (filters.output_tokens_min, filters.output_tokens_max),
        "total_tokens": (filters.total_tokens_min, filters.total_tokens_max),
    }
    for column, (low, high) in bounds.items():
        if low is not None:
            clauses.append(f"{_COLUMNS[column]} >= ?")
            params.append(low)
        if high is not None:
            clauses.append(f"{_COLUMNS[column]} <= ?")
            params.append(high)
    if filters.last_active_after is not None:
        clauses.append("max(created_date) >= ?")
        params.append(filters.last_active_after)
    if filters.last_active_before is not None:
        clauses.append("max(created_date) <= ?")
        params.append(filters.last_active_before)
    if filters.is_reviewed is not None:
        clauses.append(f"({_COLUMNS['is_reviewed']}) = ?")
        params.append(filters.is_reviewed)
    if filters.max_severity is not None:
        clauses.append(f"{_COLUMNS['max_severity_rank']} = ?")
        params.append(RANKS[filters.max_severity])
    return (" AND ".join(clauses) or "TRUE"), params


def _grouped(condition: str, having_condition: str) -> str:
    columns = ", ".join(f"{sql} AS {name}" for name, sql in _COLUMNS.items())
    return f"SELECT {columns} FROM interactions WHERE {condition} GROUP BY session_id HAVING {having_condition}"


def whole_list(condition: str, having_condition: str, order: str) -> str:
    """One row: the JSON array of every conversation, in order, and how many there are."""
    return f"""
        SELECT coalesce('[' || string_agg({_ROW_JSON}, ',' ORDER BY {order}) || ']', '[]'), count(*)
        FROM ({_grouped(condition, having_condition)})
    """


def page(condition: str, having_condition: str, order: str) -> str:
    """One page (LIMIT ? OFFSET ?): each row's JSON, with the number of conversations in the whole result."""
    return f"""
        SELECT {_ROW_JSON}, count(*) OVER ()
        FROM ({_grouped(condition, having_condition)})
        ORDER BY {order} LIMIT ? OFFSET ?
    """


def select_csv(condition: str, having_condition: str, order: str) -> str:
    """Every conversation, in order, as the CSV export's columns (the JSON row's fields)."""
    columns = ", ".join(f'{sql} AS "{name}"' for name, sql in _FIELDS.items())
    return f"SELECT {columns} FROM ({_grouped(condition, having_condition)}) ORDER BY {order}"


def count(condition: str, having_condition: str) -> str:
    return f"SELECT count(*) FROM ({_grouped(condition, having_condition)})"


def narrowed(condition: str, having_condition: str) -> str:
    """The turn condition of a KPI narrowed to the conversations that pass stage 2: a passing
    conversation counts with all its turns that pass stage 1. Its parameters: the condition's, the
    condition's again, then the HAVING's."""
    return (
        f"{condition} AND session_id IN (SELECT session_id FROM interactions WHERE {condition}"
        f" GROUP BY session_id HAVING {having_condition})"
    )
