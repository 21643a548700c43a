"""Query parameters: their names, their OpenAPI schemas, and their parsing into typed values.

Every bad parameter is collected, so one 400 names all of them at once (`{"<param>": ["<message>"]}`).
Conventions borrowed from Django REST framework / django-filter, which the reference uses: an empty
value means "not given", and a repeated parameter counts with its last value (except `o`, whose
values all count, in order, so that clients sending `o=a&o=b` and `o=a,b` get the same order).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

from starlette.datastructures import Headers, QueryParams

from schemas import fulltext
from schemas.events import SEVERITIES
from schemas.position import MAX_TOKEN_LENGTH, InvalidPosition, Position, topic_tag

MAX_PAGE_SIZE = 300
DEFAULT_PAGE_SIZE = 10
DEFAULT_WINDOW_DAYS = 30
MAX_WINDOW_DAYS = 365

TRUE_VALUES = frozenset({"true", "True", "1"})
FALSE_VALUES = frozenset({"false", "False", "0"})
ORDERINGS: tuple[str, ...] = ("created", "-created", "result_count", "-result_count")


def _both_directions(*fields: str) -> tuple[str, ...]:
    return tuple(term for f in fields for term in (f, f"-{f}"))


# /conversations/ (docs/api.md): its own columns, and the reference's two interaction orderings, which
# mean `started` and `offerings_shown` there.
CONVERSATION_ORDERINGS = _both_directions(
    "last_active", "started", "message_count", "total_tokens", "max_severity_rank", "created", "result_count"
)
FEEDBACK_ORDERINGS = _both_directions("submitted_at", "score", "llm_resolution_score")

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# ASCII digits only; a zero fraction ("5.0") is allowed because JSON Schema counts 5.0 as an integer.
_INTEGER = re.compile(r"([0-9]+)(?:\.0*)?")
HUGE = 10**18

MSG_DATE = "Enter a valid date (YYYY-MM-DD)."
MSG_BOOLEAN = "Must be a valid boolean: true, false, True, False, 1 or 0."
MSG_SEVERITY = f"Select a valid choice: {', '.join(SEVERITIES)}."


def _ordering_message(orderings: tuple[str, ...]) -> str:
    return f"Select a valid ordering: {', '.join(orderings)} (comma-separated for several)."


MSG_ORDERING = _ordering_message(ORDERINGS)
MSG_POSITIVE = "A valid positive integer is required."
MSG_NUMBER = "A valid number is required."

_BOOL_SCHEMA = {"type": "boolean", "description": "true, false, True, False, 1 or 0"}

# The filters every interaction endpoint accepts, with their OpenAPI schemas (api.openapi reads this).
FILTER_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "created_from": ({"type": "string", "format": "date"}, "turns whose UTC created date is on or after this day"),
    "created_to": ({"type": "string", "format": "date"}, "turns whose UTC created date is on or before this day"),
    "created_after": ({"type": "string", "format": "date"}, "same as created_from (the newer reference's name)"),
    "created_before": ({"type": "string", "format": "date"}, "same as created_to (the newer reference's name)"),
    "has_feedback": (_BOOL_SCHEMA, "true: turns with a human score; false: turns without"),
    "has_negative_feedback": (_BOOL_SCHEMA, "true: turns whose human score is -1; false: all others"),
    "is_flagged": (_BOOL_SCHEMA, "flagged by the injection / PII guard"),
    "query": (
        {"type": "string"},
        "user_slug contains it (case-insensitive), or English full-text search over user_input and the text of"
        ' assistant_blocks: words all present (stemmed, stop words ignored), "quoted phrase", -word, or',
    ),
    "severity": ({"type": "string", "enum": list(SEVERITIES)}, "exact severity"),
    "session_id": ({"type": "string"}, "exact session id"),
    "user_slug": ({"type": "string"}, "exact user slug"),
}


def _ordering_param(orderings: tuple[str, ...], tie: str) -> tuple[dict[str, Any], str]:
    return (
        {"type": "array", "items": {"type": "string", "enum": list(orderings)}},
        f"ordering; several may be given, comma-separated or repeated; {tie} breaks ties",
    )


ORDERING_PARAM = _ordering_param(ORDERINGS, "uuid")
CONVERSATION_ORDERING_PARAM = (
    _ordering_param(CONVERSATION_ORDERINGS, "session_id (ascending)")[0],
    "ordering (default -last_active); created means started, result_count means offerings_shown; several may be"
    " given, comma-separated or repeated; session_id (ascending) breaks ties",
)
FEEDBACK_ORDERING_PARAM = (
    _ordering_param(FEEDBACK_ORDERINGS, "interaction_uuid")[0],
    "ordering (default -submitted_at); nulls come first in descending and last in ascending order, as in"
    " Postgres; several may be given, comma-separated or repeated; interaction_uuid breaks ties",
)
_NUMBER_SCHEMA = {"type": "number"}
# Stage 2 of /conversations/ and /kpi/: applied to whole conversations, after the turn-level filters.
CONVERSATION_FILTER_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "input_tokens_min": (_NUMBER_SCHEMA, "conversations whose summed input_tokens are at least this"),
    "input_tokens_max": (_NUMBER_SCHEMA, "conversations whose summed input_tokens are at most this"),
    "output_tokens_min": (_NUMBER_SCHEMA, "conversations whose summed output_tokens are at least this"),
    "output_tokens_max": (_NUMBER_SCHEMA, "conversations whose summed output_tokens are at most this"),
    "total_tokens_min": (_NUMBER_SCHEMA, "conversations whose summed input + output tokens are at least this"),
    "total_tokens_max": (_NUMBER_SCHEMA, "conversations whose summed input + output tokens are at most this"),
    "last_active_after": (
        {"type": "string", "format": "date"},
        "conversations whose last turn's UTC date is on or after this day",
    ),
    "last_active_before": (
        {"type": "string", "format": "date"},
        "conversations whose last turn's UTC date is on or before this day",
    ),
    "is_reviewed": (_BOOL_SCHEMA, "true: conversations with a reviewed turn; false: conversations without"),
    "max_severity": ({"type": "string", "enum": list(SEVERITIES)}, "conversations whose highest severity is this"),
}
FEEDBACK_FILTER_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "score": (_NUMBER_SCHEMA, "the visitor's score, exactly (1 or -1; another number matches nothing)"),
    "category": ({"type": "string"}, "the feedback category, exactly"),
    "submitted_from": (
        {"type": "string", "format": "date"},
        "feedback submitted on or after this UTC day (review-only records are left out)",
    ),
    "submitted_to": (
        {"type": "string", "format": "date"},
        "feedback submitted on or before this UTC day (review-only records are left out)",
    ),
    "has_comment": (_BOOL_SCHEMA, "true: a non-empty comment; false: no comment"),
}
PAGINATION_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "page": ({"type": "integer", "minimum": 1}, "a page number within the paginated result set"),
    "page_size": (
        {"type": "integer", "minimum": 1},
        f"results per page (default {DEFAULT_PAGE_SIZE}, larger values are cut to {MAX_PAGE_SIZE})",
    ),
}
WINDOW_PARAM: tuple[dict[str, Any], str] = (
    # Any value is accepted: an integer is clamped, anything else means the default (docs/api.md).
    {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    f"days of daily_volume, ending today: an integer, clamped to 1..{MAX_WINDOW_DAYS}; anything else means"
    f" {DEFAULT_WINDOW_DAYS}",
)

# Read-your-position across replicas (docs/scaling.md): the query parameter or the request header.
MIN_POSITION = "min_position"
MIN_POSITION_HEADER = "X-Min-Read-Model-Position"
POSITION_HEADER = "X-Read-Model-Position"


def min_position_param(topic: str) -> tuple[dict[str, Any], str]:
    """The OpenAPI schema and description of `min_position` on a server folding `topic`. (The header
    form is left out of the document: fuzzers do not honour a header's pattern.)"""
    schema = {
        "type": "string",
        "pattern": rf"^[0-9]{{1,9}}\.{topic_tag(topic)}(\.[0-9]{{1,18}})*$",
        "maxLength": MAX_TOKEN_LENGTH,
    }
    return schema, (
        f"answer from at least this read-model position (a {POSITION_HEADER} value from an earlier response),"
        f" waiting briefly for this server to reach it; 503 with Retry-After if it does not. The request header"
        f" {MIN_POSITION_HEADER} does the same; with both, the answer is at least both"
    )


MSG_OTHER_TOPIC = "This read-model position belongs to another topic than the one this server folds."


class ParameterError(Exception):
    """Bad query parameters: the 400 body, one key per parameter."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__(", ".join(errors))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class Filters:
    created_from: date | None = None
    created_to: date | None = None
    has_feedback: bool | None = None
    has_negative_feedback: bool | None = None
    is_flagged: bool | None = None
    query: str | None = None
    severity: str | None = None
    session_id: str | None = None
    user_slug: str | None = None

    def given(self) -> frozenset[str]:
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)

    def only(self, *names: str) -> bool:
        """True when no filter outside `names` is set (also when none is set at all)."""
        return self.given() <= frozenset(names)

    def narrowed(self, **values: str) -> Filters | None:
        """These filters AND exact filters from the path; None when the two ask for different values."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if current[name] is not None and current[name] != value:
                return None
            current[name] = value
        return Filters(**current)


@dataclass(frozen=True, slots=True)
class ConversationFilters:
    """Stage 2 of /conversations/ and /kpi/: conditions on whole conversations (HAVING)."""

    input_tokens_min: float | None = None
    input_tokens_max: float | None = None
    output_tokens_min: float | None = None
    output_tokens_max: float | None = None
    total_tokens_min: float | None = None
    total_tokens_max: float | None = None
    last_active_after: date | None = None
    last_active_before: date | None = None
    is_reviewed: bool | None = None
    max_severity: str | None = None

    def given(self) -> frozenset[str]:
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)


@dataclass(frozen=True, slots=True)
class FeedbackFilters:
    score: float | None = None
    category: str | None = None
    submitted_from: date | None = None
    submitted_to: date | None = None
    has_comment: bool | None = None


@dataclass(frozen=True, slots=True)
class Pagination:
    page: int
    page_size: int


def _last(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    value = values[-1] if values else None
    return value if value else None


def _date(params: QueryParams, name: str, errors: dict[str, list[str]]) -> date | None:
    value = _last(params, name)
    if value is None:
        return None
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    errors[name] = [MSG_DATE]
    return None


def _bool(params: QueryParams, name: str, errors: dict[str, list[str]]) -> bool | None:
    value = _last(params, name)
    if value is None:
        return None
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    errors[name] = [MSG_BOOLEAN]
    return None


def _positive(params: QueryParams, name: str, errors: dict[str, list[str]]) -> int | None:
    value = _last(params, name)
    if value is None:
        return None
    match = _INTEGER.fullmatch(value)
    if match:
        digits = match.group(1).lstrip("0")
        if digits:
            # Capped rather than parsed: no page lies beyond 10**18 rows, and DuckDB's OFFSET is a BIGINT.
            return int(digits) if len(digits) <= 18 else HUGE
    errors[name] = [MSG_POSITIVE]
    return None


# A decimal number as Django's DecimalField reads one (the reference's NumberFilter): a sign, digits, a
# fraction, an exponent; no nan or infinity.
_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _number(params: QueryParams, name: str, errors: dict[str, list[str]]) -> float | None:
    value = _last(params, name)
    if value is None:
        return None
    if _NUMBER.fullmatch(value):
        return float(value)  # beyond a double's range: +-inf, which compares as that bound would
    errors[name] = [MSG_NUMBER]
    return None


def _severity(params: QueryParams, name: str, errors: dict[str, list[str]]) -> str | None:
    value = _last(params, name)
    if value is not None and value not in SEVERITIES:
        errors[name] = [MSG_SEVERITY]
        return None
    return value


def _both(lower: date | None, other: date | None, pick: Any) -> date | None:
    if lower is None or other is None:
        return lower if other is None else other
    return pick(lower, other)


def parse_filters(params: QueryParams, errors: dict[str, list[str]]) -> Filters:
    created_from = _both(_date(params, "created_from", errors), _date(params, "created_after", errors), max)
    created_to = _both(_date(params, "created_to", errors), _date(params, "created_before", errors), min)
    severity = _severity(params, "severity", errors)
    query = _last(params, "query")
    if query is not None:
        try:
            fulltext.parse_query(query)
        except fulltext.QueryTooLong as exc:
            errors["query"] = [str(exc)]
            query = None
    return Filters(
        created_from=created_from,
        created_to=created_to,
        has_feedback=_bool(params, "has_feedback", errors),
        has_negative_feedback=_bool(params, "has_negative_feedback", errors),
        is_flagged=_bool(params, "is_flagged", errors),
        query=query,
        severity=severity,
        session_id=_last(params, "session_id"),
        user_slug=_last(params, "user_slug"),
    )


def parse_conversation_filters(params: QueryParams, errors: dict[str, list[str]]) -> ConversationFilters:
    return ConversationFilters(
        **{name: _number(params, name, errors) for name in _TOKEN_BOUNDS},
        last_active_after=_date(params, "last_active_after", errors),
        last_active_before=_date(params, "last_active_before", errors),
        is_reviewed=_bool(params, "is_reviewed", errors),
        max_severity=_severity(params, "max_severity", errors),
    )


_TOKEN_BOUNDS = tuple(name for name in CONVERSATION_FILTER_PARAMS if name.endswith(("_min", "_max")))


def parse_feedback_filters(params: QueryParams, errors: dict[str, list[str]]) -> FeedbackFilters:
    return FeedbackFilters(
        score=_number(params, "score", errors),
        category=_last(params, "category"),
        submitted_from=_date(params, "submitted_from", errors),
        submitted_to=_date(params, "submitted_to", errors),
        has_comment=_bool(params, "has_comment", errors),
    )


def parse_ordering(
    params: QueryParams, errors: dict[str, list[str]], orderings: tuple[str, ...] = ORDERINGS
) -> tuple[str, ...]:
    """The ordering terms in order, each field once (its first mention wins); () for the default."""
    terms: list[str] = []
    for value in params.getlist("o"):
        for term in value.split(","):
            term = term.strip()
            if not term:
                continue
            if term not in orderings:
                errors["o"] = [_ordering_message(orderings)]
                return ()
            if all(t.lstrip("-") != term.lstrip("-") for t in terms):
                terms.append(term)
    return tuple(terms)


def parse_pagination(params: QueryParams, errors: dict[str, list[str]], *, optional: bool) -> Pagination | None:
    """The page asked for; None when `optional` and neither page nor page_size is given."""
    page = _positive(params, "page", errors)
    page_size = _positive(params, "page_size", errors)
    if optional and _last(params, "page") is None and _last(params, "page_size") is None:
        return None
    return Pagination(page or 1, min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE))


def parse_window_days(params: QueryParams) -> int:
    value = _last(params, "window_days")
    # As the reference: an unusable value falls back to the default instead of failing the whole KPI call.
    if value is None or not re.fullmatch(r"-?[0-9]{1,9}", value):
        return DEFAULT_WINDOW_DAYS
    return max(1, min(int(value), MAX_WINDOW_DAYS))


def parse_min_position(
    params: QueryParams, headers: Headers, topic: str, errors: dict[str, list[str]]
) -> Position | None:
    """The least position the answer must come from: `min_position` and the header joined; None if neither."""
    minimum: Position | None = None
    for name, value in (
        (MIN_POSITION, _last(params, MIN_POSITION)),
        (MIN_POSITION_HEADER, headers.get(MIN_POSITION_HEADER)),
    ):
        if not value:
            continue
        try:
            position = Position.parse(value.strip())
        except InvalidPosition as exc:
            errors[name] = [str(exc)]
            continue
        if position.tag != topic_tag(topic):
            errors[name] = [MSG_OTHER_TOPIC]
            continue
        minimum = position if minimum is None else minimum.join(position)
    return minimum


def raise_if_any(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ParameterError(errors)
