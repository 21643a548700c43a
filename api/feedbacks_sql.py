"""SQL of /api/anonymous-chat-feedbacks/: the feedback records are the turns that have a human score or
an LLM review (their `fb_*` and `llm_*` columns), in the nested `feedback` object's shape.

They are read from `feedback_records`, which holds exactly those turns' columns under the names
`interactions` gives them. A file older than that table (served while the release's rebuild runs)
is answered from `interactions` with the same SQL, narrowed to the turns with a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api import filter_sql
from api.interactions_sql import FEEDBACK_FIELDS, FEEDBACK_SELECT_LIST
from api.params import FeedbackFilters
from schemas.readmodel import FEEDBACK_RECORDS_VERSION, IS_FEEDBACK_RECORD

RECORDS = "feedback_records"
WIDE = "interactions"

ORDER_COLUMNS = {"submitted_at": "fb_submitted_at", "score": "fb_score", "llm_resolution_score": "llm_resolution_score"}
# The reference sorts on Postgres: NULLs first in descending order, last in ascending order.
ORDER_SQL = filter_sql.directions(ORDER_COLUMNS, descending="DESC NULLS FIRST", ascending="ASC NULLS LAST")


def order_by(terms: Sequence[str]) -> str:
    return filter_sql.order_by(terms, ORDER_SQL, "uuid")


def _score(value: float) -> tuple[str, list[Any]]:
    # A score is 1 or -1: any other number matches nothing.
    return ("fb_score = ?", [int(value)]) if value in (1, -1) else ("FALSE", [])


_RULES: dict[str, filter_sql.Rule] = {
    "score": _score,
    "category": "fb_category = ?",
    "submitted_from": filter_sql.on_or_after_day("fb_submitted_at"),
    "submitted_to": filter_sql.on_or_before_day("fb_submitted_at"),
    "has_comment": filter_sql.either("fb_comment <> ''", "fb_comment = ''"),
}


def source(readmodel_version: int) -> str:
    """The table the records of a file of `readmodel_version` are read from."""
    return RECORDS if readmodel_version >= FEEDBACK_RECORDS_VERSION else WIDE


def where(filters: FeedbackFilters, table: str) -> tuple[str, list[Any]]:
    """The records (a score or a review) of `table` passing `filters`, and the parameters."""
    return filter_sql.conjunction(filters, _RULES, always=[IS_FEEDBACK_RECORD] if table == WIDE else [])


# `table` is RECORDS or WIDE (`source`), never a user's text.
def page(table: str, condition: str, order: str) -> str:
    return f"SELECT {FEEDBACK_SELECT_LIST} FROM {table} WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?"


def count(table: str, condition: str) -> str:
    return f"SELECT count(*) FROM {table} WHERE {condition}"


def parts(terms: Sequence[str]) -> tuple[str, str]:
    """The two parts of the ordered records, in order: those where the first term's column is NULL and the
    others, or the other way round. A page is read from each part it spans (`count_parts`, `page`): a top-N
    over one part is a few times cheaper than over both, whose NULLs defeat the scan's dynamic filter."""
    column = ORDER_COLUMNS[terms[0].lstrip("-")]
    missing, present = f"{column} IS NULL", f"{column} IS NOT NULL"
    return (missing, present) if terms[0].startswith("-") else (present, missing)


def count_parts(table: str, condition: str, first_part: str) -> str:
    """The number of records passing `condition`, and how many of them are in the first part."""
    return f"SELECT count(*), count(*) FILTER (WHERE {first_part}) FROM {table} WHERE {condition}"


# The reviewed turns per non-empty intent (the KPI's llm_intent_distribution): either table holds them all.
def intents(table: str) -> str:
    return f"""
        SELECT llm_intent_category, count(*) FROM {table}
        WHERE llm_reviewed_at IS NOT NULL AND llm_intent_category <> ''
        GROUP BY llm_intent_category ORDER BY llm_intent_category
    """


def one(table: str, condition: str) -> str:
    return f"SELECT {FEEDBACK_SELECT_LIST} FROM {table} WHERE uuid = ? AND {condition}"


def to_body(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(FEEDBACK_FIELDS, row, strict=True))
