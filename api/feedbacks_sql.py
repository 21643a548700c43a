"""SQL of /api/anonymous-chat-feedbacks/: the feedback records are the `interactions` rows that have a
human score or an LLM review (the `fb_*` and `llm_*` columns), in the nested `feedback` object's shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api import filter_sql
from api.interactions_sql import FEEDBACK_FIELDS, FEEDBACK_SELECT_LIST
from api.params import FeedbackFilters

IS_RECORD = "(fb_score IS NOT NULL OR llm_reviewed_at IS NOT NULL)"

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


def where(filters: FeedbackFilters) -> tuple[str, list[Any]]:
    """The records (a score or a review) passing `filters`, and the parameters."""
    return filter_sql.conjunction(filters, _RULES, always=[IS_RECORD])


def page(condition: str, order: str) -> str:
    return f"SELECT {FEEDBACK_SELECT_LIST} FROM interactions WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?"


def count(condition: str) -> str:
    return f"SELECT count(*) FROM interactions WHERE {condition}"


def one(condition: str) -> str:
    return f"SELECT {FEEDBACK_SELECT_LIST} FROM interactions WHERE uuid = ? AND {condition}"


def to_body(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(FEEDBACK_FIELDS, row, strict=True))
