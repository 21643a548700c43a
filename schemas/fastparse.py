"""The ordinary event, parsed fast: msgspec types generated from the Pydantic models of schemas/events.py.

`projector.prepare` parses every value the projector reads. Pydantic's validation of one event, with the
Python validators of its timestamps and addresses, costs 10-15 µs; msgspec decodes the same value into
a struct with the same fields, defaults and limits, and the conversions below finish it, in about 6
(200,000 demo events, bench/README.md, "The fast parse"). The structs are built here from the
models' own fields (`model_fields`: types, limits, defaults), so the contract is still written once, and
`parse_many` claims a value only when it is certainly valid and ordinary:

- the current version of a type this module builds (turns, feedback, clicks, reviews, usage; an erasure,
  rare, and any other version go through the models);
- timestamps `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)`, UUIDs hyphenated or as 32 hex digits;
- at most `NESTING_MAX` brackets and braces in the whole value: Pydantic's JSON parser refuses nesting
  deeper than about 200, msgspec's does not.

Whatever msgspec refuses, and whatever one of those rules leaves out, goes through the models, which
give the event or the dead-letter reason as always: invalid events, other spellings of valid values,
older versions. JSON that msgspec reads differently from Pydantic's parser is refused by msgspec
(`NaN` and `Infinity` anywhere, numbers beyond a double's range in a value it reads, a second
`type`), so it goes the same way.

What a model's Python validators do, this module does too, by the validator's name (`_FIXUPS`); a model
with a validator this module does not know makes the import fail, so a new rule cannot be skipped by the
fast path. tests/schemas/test_fastparse.py holds both parsers to the same events, field by field, on
generated valid, broken and respelled values.
"""

from __future__ import annotations

import ipaddress
import types
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

import msgspec
from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, IPvAnyAddress, WrapValidator
from pydantic.fields import FieldInfo
from pydantic.json_schema import WithJsonSchema
from pydantic.types import Strict

from schemas import events
from schemas.registry import CURRENT_VERSIONS, parse_events

NESTING_MAX = 128
# `\Z`, not `$`, which also matches before a newline.
_TIMESTAMP_TEXT = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})\Z"
    ),
]


class _Refused(ValueError):
    """A value the fast path leaves to the models."""


def _utc(text: str) -> datetime:
    # The pattern above leaves only what datetime parses as Pydantic does (no leap second, no 24:00,
    # no 7th fraction digit, which msgspec would round and Pydantic truncates); an impossible date
    # (February 30) raises here and goes to the models.
    try:
        return events.in_utc(datetime.fromisoformat(text))
    except ValueError:  # an impossible date, or no UTC instant: the models' error says which
        raise _Refused(text) from None


_IP_CACHE: dict[str, str] = {}
IP_CACHE_MAX = 65_536


def _ip(text: str) -> str:
    # As the model: a canonical dotted quad as it is, anything else in `ipaddress`'s normal form. The
    # normal forms are kept (bounded, emptied when full): visitors come back with the same address.
    if events._DOTTED_QUAD.fullmatch(text):
        return text
    known = _IP_CACHE.get(text)
    if known is not None:
        return known
    try:
        normal = str(ipaddress.ip_address(text))
    except ValueError:
        raise _Refused(text) from None
    if len(_IP_CACHE) >= IP_CACHE_MAX:
        _IP_CACHE.clear()
    _IP_CACHE[text] = normal
    return normal


# -- from a model's field to a msgspec type ---------------------------------------------------------------

# The validators inside a field's type that this module knows, by function: what each becomes.
_TIMESTAMP, _ADDRESS = "timestamp", "address"
_KNOWN_INNER: dict[Callable[..., Any], str | None] = {
    events._utc_timestamp: _TIMESTAMP,
    events._canonical_ipv4: _ADDRESS,
    str: None,  # IpAddress's AfterValidator(str): the text is kept as text anyway
    events._exactly_int: None,  # msgspec's integer literals take neither true nor 1.0
    events._slug: None,  # the model's own pattern, below
}


def _flat(metadata: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for item in metadata:
        out.extend(_flat(item.metadata) if isinstance(item, FieldInfo) else [item])
    return out


def _spec(annotation: Any, metadata: Sequence[Any], convert: list[str]) -> Any:
    """The msgspec type of a field; appends to `convert` what its decoded text still needs."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return _spec(base, [*extra, *metadata], convert)
    metadata = _flat(metadata)
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        (inner,) = [a for a in args if a is not type(None)]
        spec = _spec(inner, metadata, convert)
        return spec | None if type(None) in args else spec
    if origin is list:
        (item,) = get_args(annotation)
        if item is Any:
            return list[Any]
        item_convert: list[str] = []
        spec = list[_spec(item, [], item_convert)]
        if item_convert:
            raise TypeError(f"the fast parse does not convert the items of {annotation!r}: teach it")
        return spec
    limits: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, Strict | WithJsonSchema):
            continue  # msgspec is strict; a JSON Schema does not parse
        if isinstance(item, MinLen):
            limits["min_length"] = item.min_length
        elif isinstance(item, MaxLen):
            limits["max_length"] = item.max_length
        elif isinstance(item, Ge):
            limits["ge"] = item.ge
        elif isinstance(item, Le):
            limits["le"] = item.le
        elif isinstance(item, AfterValidator | BeforeValidator | WrapValidator) and item.func in _KNOWN_INNER:
            kind = _KNOWN_INNER[item.func]
            if kind:
                convert.append(kind)
            if item.func is events._slug:
                limits["pattern"] = events._SLUG.pattern  # msgspec searches, as `_SLUG.match` from `^`
        else:
            raise TypeError(f"the fast parse does not know {item!r}: teach schemas/fastparse.py")
    if origin is Literal:
        base: Any = annotation
    elif annotation is UUID:
        return UUID  # msgspec takes fewer spellings than Pydantic (not braces, not urn:), each to the same UUID
    elif annotation is AwareDatetime:
        return _TIMESTAMP_TEXT
    elif annotation is IPvAnyAddress:
        return str
    elif annotation in (str, int, bool) or annotation is Any:
        base = annotation
    else:
        raise TypeError(f"the fast parse does not know the type {annotation!r}: teach schemas/fastparse.py")
    return Annotated[base, msgspec.Meta(**limits)] if limits else base


# -- what each model's own validators do --------------------------------------------------------------


def _cut_user_input(data: Any, envelope: Any) -> None:
    data.user_input = data.user_input[: events.USER_INPUT_MAX]


def _empty_severity_is_none(data: Any, envelope: Any) -> None:
    if data.severity == "":
        data.severity = "none"


def _default_result_count(data: Any, envelope: Any) -> None:
    if data.result_count is None:
        data.result_count = len(data.offering_uuids)


def _default_last_active_at(data: Any, envelope: Any) -> None:
    if data.last_active_at is None:
        data.last_active_at = envelope.occurred_at


def _category_goes_with_negative_score(data: Any, envelope: Any) -> None:
    if (data.score == -1) != (data.category is not None):
        raise _Refused("category")  # the model's message says which way


# By validator name (a model's decorators); the before-validators that accept more than the field's
# type also widen it (`_WIDEN`). The last-active default runs after the envelope's timestamp is parsed.
_FIXUPS: dict[str, Callable[[Any, Any], None]] = {
    "_cut_user_input": _cut_user_input,
    "_empty_severity_is_none": _empty_severity_is_none,
    "_default_result_count": _default_result_count,
    "_category_goes_with_negative_score": _category_goes_with_negative_score,
    "_default_last_active_at": _default_last_active_at,
}
_WIDEN: dict[str, Callable[[Any], Any]] = {"_empty_severity_is_none": lambda literal: Literal[("", *get_args(literal))]}
# Built here: the frequent types. An erasure's shaping uses its model's `key`, and erasures are rare.
FAST_TYPES = (
    events.TURN_RECORDED,
    events.FEEDBACK_SUBMITTED,
    events.OFFERING_CLICKED,
    events.SESSION_REVIEWED,
    events.USAGE_RECORDED,
)


def _validators(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Each Python validator of the model, by name, with the fields it is for (none for a model's own)."""
    decorators = model.__pydantic_decorators__
    found: dict[str, tuple[str, ...]] = {name: tuple(d.info.fields) for name, d in decorators.field_validators.items()}
    for names in (decorators.model_validators, decorators.validators, decorators.root_validators):
        found.update(dict.fromkeys(names, ()))
    unknown = sorted(set(found) - set(_FIXUPS))
    if unknown:
        raise TypeError(f"the fast parse does not know {model.__name__}'s validators {unknown}")
    return found


class _Plan:
    """One type's structs, and what its decoded fields still need, in order."""

    def __init__(self, model: type[BaseModel]) -> None:
        data_model: type[BaseModel] = model.model_fields["data"].annotation  # type: ignore[assignment]
        self.type_name = events._type_name(model)  # type: ignore[arg-type]
        self.version = CURRENT_VERSIONS[self.type_name]
        data_validators = _validators(data_model)
        self.data_convert: list[tuple[str, str]] = []
        fields = []
        for name, field in data_model.model_fields.items():
            convert: list[str] = []
            spec = _spec(field.annotation, field.metadata, convert)
            for validator, names in data_validators.items():
                if name in names and validator in _WIDEN:
                    spec = _WIDEN[validator](spec)
            self.data_convert += [(name, kind) for kind in convert]
            if field.default_factory is not None:
                fields.append((name, spec, msgspec.field(default_factory=field.default_factory)))
            elif field.is_required():
                fields.append((name, spec))
            else:
                fields.append((name, spec, field.default))
        data_struct = msgspec.defstruct(f"Fast{data_model.__name__}", fields, kw_only=True)
        envelope_convert: list[str] = []
        envelope_fields = []
        for name, field in model.model_fields.items():
            if name == "type":
                continue  # the tag
            spec = data_struct if name == "data" else _spec(field.annotation, field.metadata, envelope_convert)
            envelope_fields.append((name, spec))
        assert envelope_convert == [_TIMESTAMP], "the envelope's one converted field is occurred_at"
        self.struct = msgspec.defstruct(
            f"Fast{model.__name__}",
            envelope_fields,
            kw_only=True,
            tag=self.type_name,
            tag_field="type",
            namespace={"type": self.type_name},  # read as `event.type`, as on the models
        )
        self.data_fixups = [_FIXUPS[v] for v in data_validators]
        self.envelope_fixups = [_FIXUPS[v] for v in _validators(model)]

    def finish(self, event: Any) -> None:
        """Converts the decoded texts and runs the validators, as the model would; raises `_Refused`."""
        if event.version != self.version:
            raise _Refused("version")
        event.occurred_at = _utc(event.occurred_at)
        data = event.data
        for name, kind in self.data_convert:
            text = getattr(data, name)
            if text is not None:
                setattr(data, name, _utc(text) if kind == _TIMESTAMP else _ip(text))
        for fixup in self.data_fixups:
            fixup(data, event)
        for fixup in self.envelope_fixups:
            fixup(data, event)


_PLANS = {plan.type_name: plan for plan in map(_Plan, (events.V1_MODELS[t] for t in FAST_TYPES))}
_DECODER = msgspec.json.Decoder(Union[tuple(plan.struct for plan in _PLANS.values())])  # noqa: UP007


def parse_one(value: bytes | None) -> Any | None:
    """The event of `value` with the fields and values its model would give, or None when the models
    must decide (anything invalid or unusual)."""
    if value is None or value.count(b"[") + value.count(b"{") > NESTING_MAX:
        return None
    try:
        event = _DECODER.decode(value)
        _PLANS[event.type].finish(event)
    except (msgspec.ValidationError, msgspec.DecodeError, _Refused):
        return None
    return event


def parse_many(values: Sequence[bytes | None]) -> list[Any]:
    """`schemas.registry.parse_events` of the current release, faster: an event (a struct of this module
    or a model) or a `Rejection` per value, in the same order."""
    parsed: list[Any] = [parse_one(v) for v in values]
    rest = [i for i, event in enumerate(parsed) if event is None]
    if rest:
        for i, event in zip(rest, parse_events([values[i] for i in rest]), strict=True):
            parsed[i] = event
    return parsed


__all__ = ["FAST_TYPES", "NESTING_MAX", "parse_many", "parse_one"]
