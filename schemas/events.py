"""The event contract (docs/events.md) as Pydantic models: the single source of truth.

Publishers validate with these models before sending; the projector parses with them and turns every
validation failure into one of the dead-letter reasons of the contract. The JSON Schema files under
`schemas/json/` are generated from these classes (`python -m schemas.export`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_validator,
)

USER_INPUT_MAX = 2000
USER_SLUG_MAX = 128
ERASURE_REASON_MAX = 500
MODEL_MAX = 150  # the reference's column width for the chat model's name

Severity = Literal["none", "low", "medium", "high", "critical"]
SEVERITIES: tuple[str, ...] = ("none", "low", "medium", "high", "critical")
ActionTaken = Literal["", "allow", "flag", "warn", "redact", "block"]
FeedbackCategory = Literal["inaccurate", "incomplete", "misunderstood", "slow_or_failed", "other"]
FEEDBACK_CATEGORIES: tuple[str, ...] = ("inaccurate", "incomplete", "misunderstood", "slow_or_failed", "other")


def in_utc(parsed: datetime) -> datetime:
    """An aware timestamp as its UTC instant; ValueError when there is none (0001-01-01T00:00:00+01:00 is a
    valid stamp, but no datetime in UTC). The models and the fast parse (schemas/fastparse.py) both use it."""
    if parsed.tzinfo is UTC:
        return parsed
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


def _utc_timestamp(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    # Pydantic would also take a bare number as Unix seconds; the contract only knows RFC 3339 text.
    # One wrap validator rather than a before and an after one: every event has a timestamp, and each
    # call from Pydantic's core into Python costs about as much as parsing the timestamp itself.
    if isinstance(value, int | float):
        raise ValueError("must be an RFC 3339 timestamp string with an offset, not a number")
    return in_utc(handler(value))


def _exactly_int(value: Any) -> Any:
    # JSON true and 1.0 compare equal to 1 in Python, so the literal alone would let them through.
    if type(value) is not int:
        raise ValueError("must be the integer 1 or -1")
    return value


# A canonical dotted-quad IPv4 address (no leading zeros), which `ipaddress` would return unchanged.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def _canonical_ipv4(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Python's `ipaddress` parses slowly (it was ~40% of an event's parsing time); the common, canonical
    # form is taken as it is, anything else goes through `ipaddress` for its normalisation and errors.
    if type(value) is str and _DOTTED_QUAD.fullmatch(value):
        return value
    return handler(value)


# Every timestamp must carry an offset (RFC 3339) and is kept in UTC from here on.
UtcDatetime = Annotated[AwareDatetime, WrapValidator(_utc_timestamp)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
SessionId = Annotated[StrictStr, Field(min_length=1, max_length=64)]
IpAddress = Annotated[
    IPvAnyAddress,
    AfterValidator(str),
    WrapValidator(_canonical_ipv4),
    # Pydantic's own format name ("ipvanyaddress") means nothing to other languages' validators.
    WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
]


class _Data(BaseModel):
    # Unknown fields are ignored so that publishers can add fields before the projector knows them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class TurnData(_Data):
    """One anonymous chat turn (one interaction)."""

    interaction_uuid: UUID
    session_id: SessionId
    user_slug: Annotated[StrictStr, Field(max_length=USER_SLUG_MAX)]
    ip_address: IpAddress | None = None
    user_input: StrictStr = Field(description=f"longer input is cut to its first {USER_INPUT_MAX} characters")
    assistant_blocks: list[Any] = Field(default_factory=list)
    offering_uuids: list[UUID] = Field(default_factory=list)
    result_count: NonNegativeInt | None = Field(default=None, description="defaults to the number of offering_uuids")
    is_flagged: StrictBool = False
    severity: Annotated[
        Severity,
        WithJsonSchema({"type": "string", "enum": ["", *SEVERITIES], "description": '"" is read as "none"'}),
    ] = "none"
    injection_categories: list[StrictStr] = Field(default_factory=list)
    pii_categories: list[StrictStr] = Field(default_factory=list)
    action_taken: ActionTaken = ""
    warning: StrictStr = ""
    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0
    last_active_at: UtcDatetime | None = Field(default=None, description="defaults to occurred_at")
    model: Annotated[StrictStr, Field(max_length=MODEL_MAX)] = Field(
        default="", description='the chat model that wrote the reply; "" when unknown (older publishers)'
    )

    @field_validator("user_input", mode="before")
    @classmethod
    def _cut_user_input(cls, value: Any) -> Any:
        return value[:USER_INPUT_MAX] if isinstance(value, str) else value

    @field_validator("severity", mode="before")
    @classmethod
    def _empty_severity_is_none(cls, value: Any) -> Any:
        return "none" if value == "" else value

    @model_validator(mode="after")
    def _default_result_count(self) -> TurnData:
        if self.result_count is None:
            object.__setattr__(self, "result_count", len(self.offering_uuids))
        return self


class FeedbackData(_Data):
    """A visitor's thumbs up or down on one turn."""

    # The category rule below, for JSON Schema validators in other languages.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"score": {"const": -1}}, "required": ["score"]},
                    "then": {"required": ["category"], "properties": {"category": {"type": "string"}}},
                },
                {
                    "if": {"properties": {"score": {"const": 1}}, "required": ["score"]},
                    "then": {"properties": {"category": {"type": "null"}}},
                },
            ]
        }
    )
    interaction_uuid: UUID
    session_id: SessionId
    score: Annotated[Literal[1, -1], BeforeValidator(_exactly_int)]
    # Validated even when absent, so that a -1 without category fails at `data.category` itself.
    category: FeedbackCategory | None = Field(
        default=None,
        validate_default=True,
        description="required when score is -1; absent or null when score is 1",
    )
    comment: StrictStr = ""
    ip_address: IpAddress | None = None

    @field_validator("category")
    @classmethod
    def _category_goes_with_negative_score(cls, value: str | None, info: ValidationInfo) -> str | None:
        score = info.data.get("score")  # absent when the score itself failed: that error is enough
        if score == -1 and value is None:
            raise ValueError("category is required when score is -1")
        if score == 1 and value is not None:
            raise ValueError("category must be absent or null when score is 1")
        return value


class OfferingClickData(_Data):
    """A click on an offering the turn suggested; it must be one of the turn's offering_uuids."""

    interaction_uuid: UUID
    session_id: SessionId
    offering_uuid: UUID


_SLUG = re.compile(r"^[-a-zA-Z0-9_]*$")


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError("must be a slug: letters, digits, '-' and '_' only")
    return value


class SessionReviewData(_Data):
    """The LLM judge's verdict on a finished session, stored on the reviewed turn."""

    session_id: SessionId
    interaction_uuid: UUID
    resolution_score: Annotated[StrictInt, Field(ge=1, le=5)]
    intent_category: Annotated[
        StrictStr, Field(max_length=32, json_schema_extra={"pattern": _SLUG.pattern}), AfterValidator(_slug)
    ]
    hallucination_detected: StrictBool
    hallucination_details: StrictStr = ""
    summary: StrictStr = ""
    judge_model: StrictStr = ""
    judge_input_tokens: NonNegativeInt = 0
    judge_output_tokens: NonNegativeInt = 0


class UsageData(_Data):
    """Tokens the assistant spent outside the anonymous flow; they count towards the daily budget."""

    input_tokens: NonNegativeInt
    output_tokens: NonNegativeInt
    source: StrictStr = ""


class ErasureData(_Data):
    """Forget one visitor (`user_slug`) or one session (`session_id`): exactly one of the two."""

    # The "exactly one" rule, for JSON Schema validators in other languages.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["user_slug"], "properties": {"user_slug": {"type": "string"}}},
                {"required": ["session_id"], "properties": {"session_id": {"type": "string"}}},
            ]
        }
    )
    user_slug: Annotated[StrictStr, Field(min_length=1, max_length=USER_SLUG_MAX)] | None = Field(
        default=None, description="the visitor's pseudonym; exactly one of user_slug and session_id"
    )
    session_id: SessionId | None = Field(default=None, description="exactly one of user_slug and session_id")
    reason: Annotated[StrictStr, Field(max_length=ERASURE_REASON_MAX)] = Field(
        default="", description="kept with the erasure record (never the erased data)"
    )

    @model_validator(mode="after")
    def _exactly_one_key(self) -> ErasureData:
        if (self.user_slug is None) == (self.session_id is None):
            raise ValueError("exactly one of user_slug and session_id is required")
        return self

    @property
    def key(self) -> tuple[str, str]:
        """(key kind, key): ("session_id", id) or ("user_slug", slug)."""
        if self.session_id is not None:
            return "session_id", self.session_id
        assert self.user_slug is not None
        return "user_slug", self.user_slug


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: UUID
    version: StrictInt
    occurred_at: UtcDatetime


class TurnRecorded(_Envelope):
    type: Literal["chat.turn.recorded"]
    data: TurnData

    @model_validator(mode="after")
    def _default_last_active_at(self) -> TurnRecorded:
        if self.data.last_active_at is None:
            object.__setattr__(self.data, "last_active_at", self.occurred_at)
        return self


class FeedbackSubmitted(_Envelope):
    type: Literal["chat.feedback.submitted"]
    data: FeedbackData


class OfferingClicked(_Envelope):
    type: Literal["chat.offering.clicked"]
    data: OfferingClickData


class SessionReviewed(_Envelope):
    type: Literal["chat.session.reviewed"]
    data: SessionReviewData


class UsageRecorded(_Envelope):
    type: Literal["assistant.usage.recorded"]
    data: UsageData


class ErasureRequested(_Envelope):
    type: Literal["privacy.erasure.requested"]
    data: ErasureData


Event = TurnRecorded | FeedbackSubmitted | OfferingClicked | SessionReviewed | UsageRecorded | ErasureRequested


def _type_name(model: type[_Envelope]) -> str:
    (name,) = get_args(model.model_fields["type"].annotation)
    return str(name)


# The type names, read from the models' own `type` literal so that they are spelled once: the fold,
# the ingest side and the demo use these constants.
TURN_RECORDED = _type_name(TurnRecorded)
FEEDBACK_SUBMITTED = _type_name(FeedbackSubmitted)
OFFERING_CLICKED = _type_name(OfferingClicked)
SESSION_REVIEWED = _type_name(SessionReviewed)
USAGE_RECORDED = _type_name(UsageRecorded)
ERASURE_REQUESTED = _type_name(ErasureRequested)

# The v1 types, by name. `schemas.registry` builds the parsing union from this table.
V1_MODELS: dict[str, type[_Envelope]] = {
    _type_name(model): model
    for model in (TurnRecorded, FeedbackSubmitted, OfferingClicked, SessionReviewed, UsageRecorded, ErasureRequested)
}

# Events that act on an existing turn: they wait (see docs/events.md, "Order") when it has not arrived yet.
TURN_DEPENDENT_TYPES = frozenset({FEEDBACK_SUBMITTED, OFFERING_CLICKED, SESSION_REVIEWED})

__all__ = [
    "ActionTaken",
    "ERASURE_REASON_MAX",
    "ERASURE_REQUESTED",
    "FEEDBACK_SUBMITTED",
    "OFFERING_CLICKED",
    "SESSION_REVIEWED",
    "TURN_RECORDED",
    "USAGE_RECORDED",
    "ErasureData",
    "ErasureRequested",
    "Event",
    "FEEDBACK_CATEGORIES",
    "FeedbackCategory",
    "FeedbackData",
    "FeedbackSubmitted",
    "OfferingClickData",
    "OfferingClicked",
    "SEVERITIES",
    "SessionReviewData",
    "SessionReviewed",
    "Severity",
    "TURN_DEPENDENT_TYPES",
    "TurnData",
    "TurnRecorded",
    "MODEL_MAX",
    "USER_INPUT_MAX",
    "USER_SLUG_MAX",
    "in_utc",
    "UsageData",
    "UsageRecorded",
    "V1_MODELS",
]
