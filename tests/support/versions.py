"""A version 2 of `chat.turn.recorded` that only the tests know, with its upcaster: how a newer
publisher's events look to this release, and to a release that knows them."""

from __future__ import annotations

from typing import Any, Literal

from schemas.events import V1_MODELS, TurnData, TurnRecorded
from schemas.registry import CURRENT_VERSIONS, EventRegistry
from tests.support.events import turn

TURN = "chat.turn.recorded"
OFFER = "0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0a01"


class TurnDataV2(TurnData):
    channel: Literal["anonymous", "authenticated"]


class TurnRecordedV2(TurnRecorded):
    data: TurnDataV2


def _turn_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data.setdefault("channel", "anonymous")  # every v1 turn came from the anonymous flow
    return data


def v2_registry() -> EventRegistry:
    return EventRegistry(
        {**V1_MODELS, TURN: TurnRecordedV2}, {**CURRENT_VERSIONS, TURN: 2}, {(TURN, 1): _turn_v1_to_v2}
    )


def turn_v2(session_id: str, channel: str = "authenticated", **fields: Any) -> dict[str, Any]:
    event = turn(session_id, channel=channel, offering_uuids=[OFFER], **fields)
    return {**event, "version": 2}
