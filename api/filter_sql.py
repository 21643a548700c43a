"""How a set of parsed filters becomes one SQL condition, and `o` terms an ORDER BY: the one mechanism
behind the interactions', feedbacks' and conversations' SQL (each module keeps only its own rules).

A rule is either SQL with one `?`, to which the filter's value is bound, or a function of the value
returning the SQL and its parameters (for a value that chooses the SQL text, such as a boolean or a
search expression). Rules apply in their order, to the filters that are set; the SQL text depends only
on which filters are set, never on their values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, time
from typing import Any

Rule = str | Callable[[Any], tuple[str, list[Any]]]


def conjunction(filters: object, rules: Mapping[str, Rule], always: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """The AND of `always` and of the rule of each filter of `filters` (its attributes) that is not None
    (`TRUE` when there is nothing), and its parameters in order."""
    clauses = list(always)
    params: list[Any] = []
    for name, rule in rules.items():
        value = getattr(filters, name)
        if value is None:
            continue
        if isinstance(rule, str):
            clauses.append(rule)
            params.append(value)
        else:
            clause, more = rule(value)
            clauses.append(clause)
            params.extend(more)
    return (" AND ".join(clauses) or "TRUE"), params


def either(when_true: str, when_false: str) -> Callable[[Any], tuple[str, list[Any]]]:
    """The rule of a boolean filter: one fixed condition for true, another for false."""
    return lambda value: (when_true if value else when_false, [])


def on_or_after_day(column: str) -> Callable[[Any], tuple[str, list[Any]]]:
    """The rule "the UTC date of TIMESTAMP `column` is on or after the day": compared as timestamps (from
    the day's first microsecond), so DuckDB can filter in the scan and skip row groups, where a CAST of
    every value to DATE cannot."""
    return lambda day: (f"{column} >= ?", [datetime.combine(day, time.min)])


def on_or_before_day(column: str) -> Callable[[Any], tuple[str, list[Any]]]:
    """The rule "the UTC date of TIMESTAMP `column` is on or before the day" (to its last microsecond,
    the precision of a TIMESTAMP), as `on_or_after_day`."""
    return lambda day: (f"{column} <= ?", [datetime.combine(day, time.max)])


def directions(columns: Mapping[str, str], *, descending: str = "DESC", ascending: str = "ASC") -> dict[str, str]:
    """The `o` terms of `columns` (term -> column): `term` ascending, `-term` descending."""
    order: dict[str, str] = {}
    for term, column in columns.items():
        order[term] = f"{column} {ascending}"
        order[f"-{term}"] = f"{column} {descending}"
    return order


def order_by(terms: Sequence[str], order_sql: Mapping[str, str], tie: str, *, tie_follows: bool = True) -> str:
    """The ORDER BY of `terms` (validated `o` values), then the unique `tie` column (so that equal rows
    always come in one order), in the direction of the first term, or ascending (`tie_follows=False`)."""
    direction = "DESC" if tie_follows and terms[0].startswith("-") else "ASC"
    return ", ".join([*(order_sql[t] for t in terms), f"{tie} {direction}"])


def first_rows_then_rest(table: str, row: str, condition: str, order: str, head: int) -> tuple[str, str]:
    """The rows of `table` passing `condition`, each row's text `row` after a comma, in `order`, in two
    statements that both take the condition's parameters (`api.streaming.Rows.rest`): the first `head`
    rows, found by a top-N of the ordering columns alone before their text is read (a top-N that carried
    the text read every row's), then the others, sorted whole. So the first bytes of a long list leave
    before it is sorted."""
    head_rows = f"SELECT rowid FROM {table} WHERE {condition} ORDER BY {order} LIMIT {int(head)}"
    return (
        f"SELECT ',' || {row} FROM {table} WHERE rowid IN ({head_rows}) ORDER BY {order}",
        f"SELECT ',' || {row} FROM {table} WHERE {condition} ORDER BY {order} OFFSET {int(head)}",
    )
