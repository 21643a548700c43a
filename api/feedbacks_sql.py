"""SQL of /api/anonymous-chat-feedbacks/: the feedback records are the `interactions` rows that have a
human score or an LLM review (the `fb_*` and `llm_*` columns), in the nested `feedback` object's shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.interactions_sql import FEEDBACK_FIELDS, FEEDBACK_SELECT_LIST
from api.params import FeedbackFilters

IS_RECORD = "(fb_score IS NOT NULL OR llm_reviewed_at IS NOT NULL)"

# The reference sorts on Postgres: NULLs first in descending order, last in ascending order.
_COLUMNS = {"submitted_at": "fb_submitted_at", "score": "fb_score", "llm_resolution_score": "llm_resolution_score"}
ORDER_SQL: dict[str, str] = {}
for _term, _column in _COLUMNS.items():
    ORDER_SQL[_term] = f"{_column} ASC NULLS LAST"
    ORDER_SQL[f"-{_term}"] = f"{_column} DESC NULLS FIRST"


def order_by(terms: Sequence[str]) -> str:
    tie = "uuid DESC" if terms[0].startswith("-") else "uuid ASC"
    return ", ".join([*(ORDER_SQL[t] for t in terms), tie])


def where(filters: FeedbackFilters) -> tuple[str, list[Any]]:
    clauses = [IS_RECORD]
    params: list[Any] = []
    if filters.score is not None:
        if filters.score in (1, -1):
            clauses.append("fb_score = ?")
            params.append(int(filters.score))
        else:
            clauses.append("FALSE")  # a score is 1 or -1: any other number matches nothing
    if filters.category is not None:
        clauses.append("fb_category = ?")
        params.append(filters.category)
    if filters.submitted_from is not None:
        clauses.append("CAST(fb_submitted_at AS DATE) >= ?")
        params.append(filters.submitted_from)
    if filters.submitted_to is not None:
        clauses.append("CAST(fb_submitted_at AS DATE) <= ?")
        params.append(filters.submitted_to)
    if filters.has_comment is not None:
        clauses.append("fb_comment <> ''" if filters.has_comment else "fb_comment = ''")
    return " AND ".join(clauses), params


def page(condition: str, order: str) -> str:
    return f"SELECT {FEEDBACK_SELECT_LIST} FROM interactions WHERE {condition} ORDER BY {order} LIMIT ? OFFSET ?"


def count(condition: str) -> str:
    return f"SELECT count(*) FROM interactions WHERE {condition}"


def one(condition: str) -> str:
    return f"SELECT {FEEDBACK_SELECT_LIST} FROM interactions WHERE uuid = ? AND {condition}"


def to_body(row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(FEEDBACK_FIELDS, row, strict=True))
