"""Versioning through the upcaster registry, with a test-only v2 of chat.turn.recorded, and the
alignment of a poll's results with its values whatever garbage the values hold."""

from __future__ import annotations

import json
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictInt, StrictStr

from schemas.events import V1_MODELS, FeedbackSubmitted, TurnRecorded
from schemas.registry import (
    CURRENT_VERSIONS,
    INVALID_DATA,
    INVALID_JSON,
    UNSUPPORTED_VERSION,
    EventRegistry,
    Rejection,
    parse_events,
)

TURN = "chat.turn.recorded"


class TurnDataV2(BaseModel):
    """A made-up v2: `user_input` is renamed `prompt`, and a required `channel` is new."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    interaction_uuid: UUID
    session_id: StrictStr
    user_slug: StrictStr
    prompt: StrictStr
    channel: Literal["anonymous", "authenticated"]


class TurnRecordedV2(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    event_id: UUID
    type: Literal["chat.turn.recorded"]
    version: StrictInt
    occurred_at: AwareDatetime
    data: TurnDataV2


class TurnDataV3(TurnDataV2):
    language: StrictStr


class TurnRecordedV3(TurnRecordedV2):
    data: TurnDataV3


def turn_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data["prompt"] = data.pop("user_input", None)
    data.setdefault("channel", "anonymous")  # every v1 turn came from the anonymous flow
    return data


def turn_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    data.setdefault("language", "und")
    return data


def v2_registry() -> EventRegistry:
    return EventRegistry(
        {**V1_MODELS, TURN: TurnRecordedV2},
        {**CURRENT_VERSIONS, TURN: 2},
        {(TURN, 1): turn_v1_to_v2},
    )


def event(version: int, data: dict[str, Any], type_: str = TURN) -> bytes:
    return json.dumps(
        {
            "event_id": "6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a10",
            "type": type_,
            "version": version,
            "occurred_at": "2026-11-26T09:15:02Z",
            "data": data,
        }
    ).encode()


V1_TURN = {
    "interaction_uuid": "0b7f3a52-7d0e-4c55-9d0c-5a9e7c1e2f30",
    "session_id": "s",
    "user_slug": "",
    "user_input": "hi",
}
V2_TURN = {
    "interaction_uuid": "0b7f3a52-7d0e-4c55-9d0c-5a9e7c1e2f30",
    "session_id": "s",
    "user_slug": "",
    "prompt": "hello",
    "channel": "authenticated",
}
FEEDBACK = {"interaction_uuid": "0b7f3a52-7d0e-4c55-9d0c-5a9e7c1e2f30", "session_id": "s", "score": 1}


def test_a_v1_event_is_upcast_and_comes_out_as_the_v2_model() -> None:
    parsed = v2_registry().parse(event(1, V1_TURN))
    assert isinstance(parsed, TurnRecordedV2)
    assert parsed.version == 2
    assert (parsed.data.prompt, parsed.data.channel) == ("hi", "anonymous")


def test_a_v2_event_parses_directly() -> None:
    parsed = v2_registry().parse(event(2, V2_TURN))
    assert isinstance(parsed, TurnRecordedV2)
    assert (parsed.data.prompt, parsed.data.channel) == ("hello", "authenticated")


def test_a_v2_event_is_not_upcast_again() -> None:
    # A v2 payload shaped like v1 must fail as v2, not be "repaired" by the 1->2 upcaster.
    (result,) = v2_registry().parse_many([event(2, V1_TURN)])
    assert isinstance(result, Rejection)
    assert result.reason == INVALID_DATA
    assert {"data.prompt", "data.channel"} <= {e.field for e in result.errors}


def test_a_v1_event_that_already_reads_as_v2_is_still_upcast() -> None:
    # Its data validates as v2 as it stands (extra fields are ignored), but the 1->2 upcaster decides.
    (result,) = v2_registry().parse_many([event(1, {**V2_TURN, "user_input": "hi"})])
    assert isinstance(result, TurnRecordedV2)
    assert (result.version, result.data.prompt, result.data.channel) == (2, "hi", "authenticated")


def test_a_version_newer_than_the_current_one_is_unsupported_even_when_its_data_reads_as_current() -> None:
    (result,) = parse_events([event(2, V1_TURN)])
    assert isinstance(result, Rejection)
    assert result.reason == UNSUPPORTED_VERSION


def test_v3_is_an_unsupported_version_for_a_v2_release() -> None:
    (result,) = v2_registry().parse_many([event(3, {**V2_TURN, "language": "et"})])
    assert isinstance(result, Rejection)
    assert result.reason == UNSUPPORTED_VERSION
    assert [e.field for e in result.errors] == ["version"]
    assert "version 3" in result.detail


def test_other_types_stay_on_v1_in_the_same_registry() -> None:
    registry = v2_registry()
    assert isinstance(registry.parse(event(1, FEEDBACK, "chat.feedback.submitted")), FeedbackSubmitted)
    (result,) = registry.parse_many([event(2, FEEDBACK, "chat.feedback.submitted")])
    assert isinstance(result, Rejection) and result.reason == UNSUPPORTED_VERSION


def test_an_upcast_event_that_breaks_a_v2_rule_is_invalid_data() -> None:
    (result,) = v2_registry().parse_many([event(1, {**V1_TURN, "user_input": 42})])
    assert isinstance(result, Rejection)
    assert result.reason == INVALID_DATA
    assert [e.field for e in result.errors] == ["data.prompt"]


def test_a_chain_of_upcasters_lifts_v1_through_v2_to_v3() -> None:
    registry = EventRegistry(
        {**V1_MODELS, TURN: TurnRecordedV3},
        {**CURRENT_VERSIONS, TURN: 3},
        {(TURN, 1): turn_v1_to_v2, (TURN, 2): turn_v2_to_v3},
    )
    results = registry.parse_many([event(1, V1_TURN), event(2, V2_TURN), event(3, {**V2_TURN, "language": "et"})])
    assert all(isinstance(r, TurnRecordedV3) and r.version == 3 for r in results)
    assert [(r.data.prompt, r.data.channel, r.data.language) for r in results] == [  # type: ignore[union-attr]
        ("hi", "anonymous", "und"),
        ("hello", "authenticated", "und"),
        ("hello", "authenticated", "et"),
    ]


def test_a_gap_in_the_chain_makes_the_old_version_unsupported() -> None:
    registry = EventRegistry(
        {**V1_MODELS, TURN: TurnRecordedV3}, {**CURRENT_VERSIONS, TURN: 3}, {(TURN, 2): turn_v2_to_v3}
    )
    v1, v2 = registry.parse_many([event(1, V1_TURN), event(2, V2_TURN)])
    assert isinstance(v1, Rejection) and v1.reason == UNSUPPORTED_VERSION
    assert isinstance(v2, TurnRecordedV3)


def test_the_default_registry_reads_v1_only() -> None:
    good, newer = parse_events([event(1, V1_TURN), event(2, V2_TURN)])
    assert isinstance(good, TurnRecorded)
    assert isinstance(newer, Rejection) and newer.reason == UNSUPPORTED_VERSION


# -- a poll's results line up with its values --------------------------------------------------------


def test_values_that_are_not_one_json_value_each_do_not_shift_later_results() -> None:
    # Joined with commas these would read as a valid array of a different length or grouping.
    good = event(1, V1_TURN)
    values: list[bytes | None] = [b'{"a": 1}, {"b": 2}', good, b"[1", b"2]", good, b"3, 4", good]
    results = parse_events(values)
    assert len(results) == len(values)
    kinds = [type(r).__name__ if not isinstance(r, Rejection) else r.reason for r in results]
    assert kinds == [
        INVALID_JSON,
        "TurnRecorded",
        INVALID_JSON,
        INVALID_JSON,
        "TurnRecorded",
        INVALID_JSON,
        "TurnRecorded",
    ]


def test_an_empty_poll_gives_no_results() -> None:
    assert parse_events([]) == []
