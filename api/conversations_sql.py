"""SQL of /conversations/ and of the KPI's conversation-level narrowing: `interactions` grouped by session.

Stage 1 (the turn-level filters, `api.interactions_sql.where`) trims each conversation to its turns that
pass; stage 2 (`ConversationFilters`) keeps or drops whole conversations as stage 1 left them (HAVING).
Without stage-1 filters every conversation is whole, and the rows come from the `conversations` table the
projector keeps (JSON already rendered); with them, the filtered turns are grouped here by the same SQL
(`schemas.conversation_rows`). Rows are rendered to JSON by DuckDB itself: a whole list can hold every
session of the file, and building a Python object per field of each cost several times more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api import filter_sql
from api.models import Conversation, field_names
from api.params import ConversationFilters
from schemas.conversation_rows import FIELDS, GROUPED, RANKS, ROW_JSON, grouped

if tuple(FIELDS) != field_names(Conversation):
    raise RuntimeError("schemas.conversation_rows renders other fields than api.models.Conversation describes")

# What the stage-2 conditions compare, over a group of turns and over the kept `conversations` table.
_OVER_TURNS = {
    "input_tokens": GROUPED["input_tokens"],
    "output_tokens": GROUPED["output_tokens"],
    "total_tokens": GROUPED["total_tokens"],
    "last_active": GROUPED["last_active"],
    "is_reviewed": f"({GROUPED['is_reviewed']})",
    "max_severity_rank": GROUPED["max_severity_rank"],
}
_OVER_TABLE = {name: name for name in _OVER_TURNS}


@dataclass(frozen=True, slots=True)
class Source:
    """Where the rows come from: `relation` (a FROM item with the grouped columns) and `row` (its JSON)."""

    relation: str
    row: str


def source(condition: str, having_condition: str, *, kept: bool) -> Source:
    """Without turn-level filters (`kept`), the rows the projector keeps, one per session; else the turns
    passing `condition`, grouped. Either way only the conversations passing `having_condition`."""
    if kept:
        return Source(f"(SELECT * FROM conversations WHERE {having_condition})", "body")
    return Source(f"({grouped(condition, having_condition)})", ROW_JSON)


# docs/api.md: the `o` values to SQL over the grouped columns; session_id ascending breaks ties.
ORDER_SQL = filter_sql.directions(
    {
        "last_active": "last_active",
        "started": "started",
        "message_count": "message_count",
        "total_tokens": "total_tokens",
        "max_severity_rank": "max_severity_rank",
        "created": "started",
        "result_count": "offerings_shown",
    }
)


def order_by(terms: Sequence[str]) -> str:
    return filter_sql.order_by(terms, ORDER_SQL, "session_id", tie_follows=False)


def _rules(over: dict[str, str]) -> dict[str, filter_sql.Rule]:
    """The stage-2 filters, each to its condition over the columns `over` names."""
    rules: dict[str, filter_sql.Rule] = {}
    for column in ("input_tokens", "output_tokens", "total_tokens"):
        rules[f"{column}_min"] = f"{over[column]} >= ?"
        rules[f"{column}_max"] = f"{over[column]} <= ?"
    # A TIMESTAMP over both: compared as one (filter_sql.on_or_after_day), the day bounds inclusive.
    rules["last_active_after"] = filter_sql.on_or_after_day(over["last_active"])
    rules["last_active_before"] = filter_sql.on_or_before_day(over["last_active"])
    rules["is_reviewed"] = f"{over['is_reviewed']} = ?"
    rules["max_severity"] = lambda name: (f"{over['max_severity_rank']} = ?", [RANKS[name]])
    return rules


_RULES_OVER_TURNS = _rules(_OVER_TURNS)
_RULES_OVER_TABLE = _rules(_OVER_TABLE)


def having(filters: ConversationFilters, *, kept: bool = False) -> tuple[str, list[Any]]:
    """The stage-2 condition (`TRUE` when none) over a group of turns, or over the kept table's rows
    (`kept`), and its parameters."""
    return filter_sql.conjunction(filters, _RULES_OVER_TABLE if kept else _RULES_OVER_TURNS)


def rows(rows: Source, order: str, *, counted: bool = False) -> str:
    """Each row's JSON after a comma, in order (a whole list, sent as it is read: `api.streaming.JsonTextArray`);
    `counted`: then the number of rows."""
    count = ", count(*) OVER ()" if counted else ""
    return f"SELECT ',' || {rows.row}{count} FROM {rows.relation} ORDER BY {order}"


def kept_rows_split(having_condition: str, order: str, head: int) -> tuple[str, str]:
    """The kept rows passing `having_condition`, each row's JSON after a comma, in order: the first `head`
    rows, then the others (`filter_sql.first_rows_then_rest`)."""
    return filter_sql.first_rows_then_rest("conversations", "body", having_condition, order, head)


def count_rows(rows: Source) -> str:
    return f"SELECT count(*) FROM {rows.relation}"


def page(rows: Source, order: str) -> str:
    """One page (LIMIT ? OFFSET ?): each row's JSON, with the number of conversations in the whole result."""
    return f"SELECT {rows.row}, count(*) OVER () FROM {rows.relation} ORDER BY {order} LIMIT ? OFFSET ?"


def select_csv(condition: str, having_condition: str, order: str) -> str:
    """Every conversation, in order, as the CSV export's columns (the JSON row's fields)."""
    columns = ", ".join(f'{sql} AS "{name}"' for name, sql in FIELDS.items())
    return f"SELECT {columns} FROM ({grouped(condition, having_condition)}) ORDER BY {order}"


def count(condition: str, having_condition: str) -> str:
    return f"SELECT count(*) FROM ({grouped(condition, having_condition)})"


def narrowed(condition: str, having_condition: str) -> str:
    """The turn condition of a KPI narrowed to the conversations that pass stage 2: a passing
    conversation counts with all its turns that pass stage 1. Its parameters: the condition's, the
    condition's again, then the HAVING's. (Without turn-level filters the KPI sums the kept rows
    instead: `api.aggregates_sql.kpi_kept`.)"""
    return (
        f"{condition} AND session_id IN (SELECT session_id FROM interactions WHERE {condition}"
        f" GROUP BY session_id HAVING {having_condition})"
    )
