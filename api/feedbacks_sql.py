"""SQL of /api/anonymous-chat-feedbacks/: the feedback records are the turns that have a human score or
an LLM review (their `fb_*` and `llm_*` columns), in the nested `feedback` object's shape.

They are read from `feedback_records`, which holds exactly those turns' columns under the names
`interactions` gives them. A file older than that table (served while the release's rebuild runs)
is answered from `interactions` with the same SQL, narrowed to the turns with a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
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


def part_page(table: str, condition: str, part: Part, *, recent: bool) -> str:
    """A page (LIMIT ? OFFSET ?) of the records of `part` passing `condition`; `recent`: only among those
    whose `part.recent` is at or after a bound given before the LIMIT (`RECENT`)."""
    window = f" AND {part.recent} >= ?" if recent else ""
    return page(table, f"{condition} AND {part.condition}{window}", part.order)


@dataclass(frozen=True, slots=True)
class Part:
    """Records whose first ordering column is NULL, or the others: `condition`, and their ORDER BY."""

    condition: str
    order: str
    # The column a window below the part's newest value may narrow (`RECENT`): the first ordering column
    # when it is a time in descending order, else None.
    recent: str | None = None


def parts(terms: Sequence[str]) -> tuple[Part, Part]:
    """The two parts of the ordered records, in order: those where the first term's column is NULL, then
    the others, in descending order; the other way round in ascending order. A page is read from each
    part it spans (`count_parts`, `page`): a top-N over one part costs less than over both, whose NULLs
    defeat the scan's dynamic filter, and the NULL part is ordered by the other terms alone."""
    column = ORDER_COLUMNS[terms[0].lstrip("-")]
    descending = terms[0].startswith("-")
    tie = f"uuid {'DESC' if descending else 'ASC'}"
    missing = Part(f"{column} IS NULL", ", ".join([*(ORDER_SQL[t] for t in terms[1:]), tie]))
    recent = column if descending and column == ORDER_COLUMNS["submitted_at"] else None
    present = Part(f"{column} IS NOT NULL", order_by(terms), recent)
    return (missing, present) if descending else (present, missing)


# A top-N in descending time order sees the records in the order they arrived, oldest first, so nearly
# each one enters its heap: the page of the newest records is first looked for among those of the last
# day before the newest one (`part_page(..., recent=True)`); when that window holds fewer records than the
# page needs, the whole part is read.
RECENT = timedelta(days=1)


def count_parts(table: str, condition: str, first: Part, recent: str | None = None) -> str:
    """The number of records passing `condition`, how many of them are in the `first` part, and (NULL
    without `recent`) the newest value of the column `recent` among them: that of the part a page may
    narrow by (`Part.recent`), read in the same pass over the records instead of a second one."""
    newest = f"max({recent})" if recent is not None else "NULL"
    return f"SELECT count(*), count(*) FILTER (WHERE {first.condition}), {newest} FROM {table} WHERE {condition}"


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
