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

# The reference sorts on Postgres: NULLs first in descending order, last in ascending order.
ORDER_SQL = filter_sql.directions(
    {"submitted_at": "fb_submitted_at", "score": "fb_score", "llm_resolution_score": "llm_resolution_score"},
    descending="DESC NULLS FIRST",
    ascending="ASC NULLS LAST",
)


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


def one(table: str, condition: str) -> str:
    return f"SELECT {FEEDBACK_SELECT_LIST} FROM {table} WHERE uuid = ? AND {condition}"


def to_body(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(FEEDBACK_FIELDS, row, strict=True))
