"""Parsing raw Kafka values into events, with versioning and the dead-letter reasons of docs/events.md.

An `EventRegistry` knows, per event type, the current version's model and the upcasters that lift
older versions' `data` one step at a time (N -> N+1). The envelope's `version` selects the chain: an
event of an older version is upcast before validation, so the fold only ever sees current models;
a version with no chain (newer than this release, or never defined) is rejected as
`unsupported_version`, so that a later release can replay it from the dead letters.

`parse_many` validates a whole poll, one Pydantic call per value. (Joining the values into one JSON
array and validating that in one call is no faster, and is wrong: a value that is not one complete
JSON value, such as `{"a":1},{"b":2}`, would split into two elements and shift every later result.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from schemas.events import V1_MODELS

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# The dead-letter reasons of docs/events.md that come from parsing (the fold adds the others).
INVALID_JSON = "invalid_json"
INVALID_ENVELOPE = "invalid_envelope"
UNKNOWN_TYPE = "unknown_type"
UNSUPPORTED_VERSION = "unsupported_version"
INVALID_DATA = "invalid_data"
# The reasons the fold adds for events that parse but cannot be applied.
DUPLICATE_INTERACTION = "duplicate_interaction"
SESSION_MISMATCH = "session_mismatch"
UNKNOWN_OFFERING = "unknown_offering"
# Reasons the fold gives to events that parsed (their ids are accepted), the others come from parsing.
FOLD_REASONS = frozenset({DUPLICATE_INTERACTION, SESSION_MISMATCH, UNKNOWN_OFFERING})
# Every dead-letter reason of docs/events.md, in the contract's order.
DEAD_LETTER_REASONS: tuple[str, ...] = (
    INVALID_JSON,
    INVALID_ENVELOPE,
    UNKNOWN_TYPE,
    UNSUPPORTED_VERSION,
    INVALID_DATA,
    DUPLICATE_INTERACTION,
    SESSION_MISMATCH,
    UNKNOWN_OFFERING,
)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One broken rule: the dotted path of the field (`data.session_id`, `(event)` for the whole value)."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a raw value is not an event: one of the reasons above and a message naming the field."""

    reason: str
    detail: str
    event_id: str | None = None
    type: str | None = None
    # The same errors as `detail`, one per field, for callers that answer with structured errors.
    errors: tuple[FieldError, ...] = ()


class EventRegistry:
    def __init__(
        self,
        models: Mapping[str, type[BaseModel]],
        versions: Mapping[str, int],
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self.models = dict(models)
        self.versions = dict(versions)
        self.upcasters = dict(upcasters or {})
        union = Union[tuple(self.models.values())]  # noqa: UP007 - built from a runtime tuple
        current = Annotated[union, Field(discriminator="type")]
        # The fast path: a current-version event needs no upcasting, so it skips the Python call of
        # `_upcast` and the conversion of the whole JSON value to Python objects that a before-validator
        # implies. Whatever it does not accept goes through `_one`, which gives the upcasts and the errors.
        self._current = TypeAdapter(current)
        self._one = TypeAdapter(Annotated[current, BeforeValidator(self._upcast)])

    def _upcast(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        type_ = value.get("type")
        version = value.get("version")
        current = self.versions.get(type_) if isinstance(type_, str) else None
        # Unknown types and non-integer versions are left for the union to reject with the right reason.
        if current is None or not isinstance(version, int) or isinstance(version, bool):
            return value
        if version == current:
            return value
        data = value.get("data")
        if 1 <= version < current and all((type_, v) in self.upcasters for v in range(version, current)):
            if not isinstance(data, dict):
                return value
            for v in range(version, current):
                data = self.upcasters[(type_, v)](dict(data))
            return {**value, "version": current, "data": data}
        raise PydanticCustomError(
            UNSUPPORTED_VERSION,
            "version {version} of {type} is not supported (this release reads versions up to {current})",
            {"version": version, "type": type_, "current": current},
        )

    def parse(self, raw: bytes | str) -> BaseModel:
        """One raw value to its event model; raises `EventRejected` with the dead-letter reason."""
        event = self._parse_one(raw)
        if isinstance(event, Rejection):
            raise EventRejected(event)
        return event

    def parse_many(self, values: Sequence[bytes | None]) -> list[BaseModel | Rejection]:
        """A whole poll at once: an event model or a `Rejection` per value, in the same order."""
        parse_one = self._parse_one
        return [parse_one(v) for v in values]

    def _parse_one(self, value: bytes | str | None) -> BaseModel | Rejection:
        if value is None:
            error = FieldError("(event)", "the record has no value (a tombstone)")
            return Rejection(INVALID_JSON, f"{error.field}: {error.message}", errors=(error,))
        try:
            event = self._current.validate_json(value)
        except ValidationError:
            pass
        else:
            if event.version == self.versions.get(event.type):  # type: ignore[attr-defined]
                return event
        try:
            return self._one.validate_json(value)
        except ValidationError as exc:
            return classify(exc.errors(include_url=False), value)


class EventRejected(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.reason}: {rejection.detail}")
        self.rejection = rejection


# Errors that Pydantic reports on the whole value but that are about one envelope field.
_FIELD_OF_ERROR = {
    UNSUPPORTED_VERSION: "version",
    "union_tag_invalid": "type",
    "union_tag_not_found": "type",
}


def _field_name(error: Any) -> str:
    loc = error["loc"]
    # loc is (tag, 'data', 'field', ...) inside the discriminated union; the tag is not a field.
    parts = [str(p) for p in loc[1:]] if loc and isinstance(loc[0], str) and "." in loc[0] else list(map(str, loc))
    return ".".join(parts) or _FIELD_OF_ERROR.get(error["type"], "(event)")


def _rejection(reason: str, errors: Sequence[Any], event_id: str | None, type_: str | None) -> Rejection:
    fields = tuple(FieldError(_field_name(e), e["msg"]) for e in errors)
    detail = "; ".join(f"{f.field}: {f.message}" for f in fields)
    return Rejection(reason, detail, event_id, type_, fields)


def classify(errors: Sequence[Any], raw: bytes | str | None = None) -> Rejection:
    """Maps Pydantic's errors for one value to the single dead-letter reason docs/events.md gives it."""
    types = {e["type"] for e in errors}
    event_id, type_ = _peek(raw)
    if "json_invalid" in types:
        return _rejection(INVALID_JSON, errors, event_id, type_)
    if UNSUPPORTED_VERSION in types:
        return _rejection(UNSUPPORTED_VERSION, errors, event_id, type_)
    if "union_tag_invalid" in types:
        return _rejection(UNKNOWN_TYPE, errors, event_id, type_)
    # Anything wrong outside `data` (or `data` itself missing or not an object) is the envelope's fault.
    envelope_errors = [e for e in errors if not _inside_data(e)]
    if envelope_errors:
        return _rejection(INVALID_ENVELOPE, envelope_errors, event_id, type_)
    return _rejection(INVALID_DATA, errors, event_id, type_)


def _inside_data(error: Any) -> bool:
    loc = error["loc"]
    if len(loc) < 2 or loc[1] != "data":
        return False
    # A rule across data's fields fails at `data` itself; a missing or non-object `data` does too.
    return len(loc) > 2 or error["type"] not in ("missing", "model_type", "model_attributes_type", "dict_type")


def _peek(raw: bytes | str | None) -> tuple[str | None, str | None]:
    """Best-effort event_id and type of a rejected value, so operators can search dead letters by them."""
    if raw is None:
        return None, None
    try:
        import orjson

        obj = orjson.loads(raw)
    except Exception:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    event_id, type_ = obj.get("event_id"), obj.get("type")
    return (
        event_id if isinstance(event_id, str) else None,
        type_ if isinstance(type_, str) else None,
    )


CURRENT_VERSIONS: dict[str, int] = {name: 1 for name in V1_MODELS}
DEFAULT_REGISTRY = EventRegistry(V1_MODELS, CURRENT_VERSIONS)


def parse_event(raw: bytes | str) -> BaseModel:
    """Parses any event of the contract from raw bytes in one call (raises `EventRejected`)."""
    return DEFAULT_REGISTRY.parse(raw)


def parse_events(values: Sequence[bytes | None]) -> list[BaseModel | Rejection]:
    return DEFAULT_REGISTRY.parse_many(values)
