"""Envelopes of every event type as a publisher writes them, and one broken value per dead-letter rule:
the cases of the event contract (docs/events.md), for the model and schema tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

EVENT_ID = "6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a10"


INTERACTION = "0b7f3a52-7d0e-4c55-9d0c-5a9e7c1e2f30"


OFFER_A = "a1b2c3d4-e5f6-4789-abcd-ef1234567890"


OFFER_B = "b1b2c3d4-e5f6-4789-abcd-ef1234567891"


OCCURRED = "2026-11-26T09:15:02.123456Z"


OCCURRED_DT = datetime(2026, 11, 26, 9, 15, 2, 123456, tzinfo=UTC)


SLUG = "9795be998df7f4915a5389fa4c1069eadd6e9b1ef4c04ee4d208f271c3ee7eea"


def envelope(type_: str, data: Any, **overrides: Any) -> dict[str, Any]:
    event = {"event_id": EVENT_ID, "type": type_, "version": 1, "occurred_at": OCCURRED, "data": data}
    event.update(overrides)
    return event


def raw(event: Any) -> bytes:
    return json.dumps(event).encode()


def turn_data(**fields: Any) -> dict[str, Any]:
    return {"interaction_uuid": INTERACTION, "session_id": "s-1", "user_slug": SLUG, "user_input": "hi", **fields}


def turn(**fields: Any) -> dict[str, Any]:
    return envelope("chat.turn.recorded", turn_data(**fields))


def feedback(**fields: Any) -> dict[str, Any]:
    return envelope("chat.feedback.submitted", {"interaction_uuid": INTERACTION, "session_id": "s-1", **fields})


def click(**fields: Any) -> dict[str, Any]:
    data = {"interaction_uuid": INTERACTION, "session_id": "s-1", "offering_uuid": OFFER_A, **fields}
    return envelope("chat.offering.clicked", data)


def review(**fields: Any) -> dict[str, Any]:
    data = {
        "session_id": "s-1",
        "interaction_uuid": INTERACTION,
        "resolution_score": 4,
        "intent_category": "find_compute",
        "hallucination_detected": False,
        **fields,
    }
    return envelope("chat.session.reviewed", data)


def usage(**fields: Any) -> dict[str, Any]:
    return envelope("assistant.usage.recorded", {"input_tokens": 10, "output_tokens": 20, **fields})


def without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    """A copy of `event` with the field at `path` removed."""
    copy = json.loads(json.dumps(event))
    target = copy
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return copy


# (case id, raw value, dead-letter reason, the field that the error must name)
BROKEN: list[tuple[str, bytes | None, str, str]] = [
    ("not json", b"{not json", "invalid_json", "(event)"),
    ("truncated json", raw(turn())[:40], "invalid_json", "(event)"),
    ("empty value", b"", "invalid_json", "(event)"),
    ("tombstone", None, "invalid_json", "(event)"),
    ("array instead of object", raw([turn()]), "invalid_envelope", "(event)"),
    ("event_id not a uuid", raw({**turn(), "event_id": "42"}), "invalid_envelope", "event_id"),
    ("event_id missing", raw(without(turn(), "event_id")), "invalid_envelope", "event_id"),
    ("type missing", raw(without(turn(), "type")), "invalid_envelope", "type"),
    ("version missing", raw(without(turn(), "version")), "invalid_envelope", "version"),
    ("version as text", raw({**turn(), "version": "1"}), "invalid_envelope", "version"),
    (
        "occurred_at without offset",
        raw({**turn(), "occurred_at": "2026-11-26T09:15:02"}),
        "invalid_envelope",
        "occurred_at",
    ),
    ("occurred_at as a number", raw({**turn(), "occurred_at": 1764148502}), "invalid_envelope", "occurred_at"),
    ("occurred_at not a time", raw({**turn(), "occurred_at": "yesterday"}), "invalid_envelope", "occurred_at"),
    ("data missing", raw(without(turn(), "data")), "invalid_envelope", "data"),
    ("data not an object", raw({**turn(), "data": [1]}), "invalid_envelope", "data"),
    ("unknown type", raw({**turn(), "type": "chat.turn.deleted"}), "unknown_type", "type"),
    ("version 2", raw({**turn(), "version": 2}), "unsupported_version", "version"),
    ("version 0", raw({**turn(), "version": 0}), "unsupported_version", "version"),
    # chat.turn.recorded
    ("turn interaction_uuid", raw(turn(interaction_uuid="nope")), "invalid_data", "data.interaction_uuid"),
    (
        "turn interaction_uuid missing",
        raw(without(turn(), "data", "interaction_uuid")),
        "invalid_data",
        "data.interaction_uuid",
    ),
    ("turn session_id empty", raw(turn(session_id="")), "invalid_data", "data.session_id"),
    ("turn session_id 65 chars", raw(turn(session_id="s" * 65)), "invalid_data", "data.session_id"),
    ("turn session_id a number", raw(turn(session_id=7)), "invalid_data", "data.session_id"),
    ("turn session_id missing", raw(without(turn(), "data", "session_id")), "invalid_data", "data.session_id"),
    ("turn user_slug missing", raw(without(turn(), "data", "user_slug")), "invalid_data", "data.user_slug"),
    ("turn user_slug 129 chars", raw(turn(user_slug="u" * 129)), "invalid_data", "data.user_slug"),
    ("turn ip_address", raw(turn(ip_address="999.1.1.1")), "invalid_data", "data.ip_address"),
    ("turn user_input missing", raw(without(turn(), "data", "user_input")), "invalid_data", "data.user_input"),
    ("turn user_input a number", raw(turn(user_input=5)), "invalid_data", "data.user_input"),
    ("turn assistant_blocks", raw(turn(assistant_blocks={"type": "text"})), "invalid_data", "data.assistant_blocks"),
    ("turn offering_uuids item", raw(turn(offering_uuids=[OFFER_A, "x"])), "invalid_data", "data.offering_uuids.1"),
    ("turn result_count negative", raw(turn(result_count=-1)), "invalid_data", "data.result_count"),
    ("turn is_flagged text", raw(turn(is_flagged="yes")), "invalid_data", "data.is_flagged"),
    ("turn severity", raw(turn(severity="urgent")), "invalid_data", "data.severity"),
    ("turn severity upper case", raw(turn(severity="HIGH")), "invalid_data", "data.severity"),
    ("turn action_taken", raw(turn(action_taken="delete")), "invalid_data", "data.action_taken"),
    (
        "turn injection_categories",
        raw(turn(injection_categories="jailbreak")),
        "invalid_data",
        "data.injection_categories",
    ),
    ("turn pii_categories item", raw(turn(pii_categories=[1])), "invalid_data", "data.pii_categories.0"),
    ("turn model 151 chars", raw(turn(model="m" * 151)), "invalid_data", "data.model"),
    ("turn model a number", raw(turn(model=4)), "invalid_data", "data.model"),
    ("turn input_tokens negative", raw(turn(input_tokens=-1)), "invalid_data", "data.input_tokens"),
    ("turn output_tokens fraction", raw(turn(output_tokens=1.5)), "invalid_data", "data.output_tokens"),
    (
        "turn last_active_at naive",
        raw(turn(last_active_at="2026-11-26T09:00:00")),
        "invalid_data",
        "data.last_active_at",
    ),
    # chat.feedback.submitted
    ("feedback score 0", raw(feedback(score=0)), "invalid_data", "data.score"),
    ("feedback score 2", raw(feedback(score=2)), "invalid_data", "data.score"),
    ("feedback score true", raw(feedback(score=True)), "invalid_data", "data.score"),
    ("feedback score 1.0", raw(feedback(score=1.0)), "invalid_data", "data.score"),
    ("feedback score text", raw(feedback(score="1")), "invalid_data", "data.score"),
    ("feedback score missing", raw(feedback()), "invalid_data", "data.score"),
    ("feedback -1 without category", raw(feedback(score=-1)), "invalid_data", "data.category"),
    ("feedback -1 with null category", raw(feedback(score=-1, category=None)), "invalid_data", "data.category"),
    ("feedback 1 with category", raw(feedback(score=1, category="other")), "invalid_data", "data.category"),
    ("feedback unknown category", raw(feedback(score=-1, category="rude")), "invalid_data", "data.category"),
    (
        "feedback session_id missing",
        raw(without(feedback(score=1), "data", "session_id")),
        "invalid_data",
        "data.session_id",
    ),
    ("feedback ip_address", raw(feedback(score=1, ip_address="localhost")), "invalid_data", "data.ip_address"),
    ("feedback comment null", raw(feedback(score=1, comment=None)), "invalid_data", "data.comment"),
    # chat.offering.clicked
    ("click offering_uuid", raw(click(offering_uuid="offer-1")), "invalid_data", "data.offering_uuid"),
    (
        "click offering_uuid missing",
        raw(without(click(), "data", "offering_uuid")),
        "invalid_data",
        "data.offering_uuid",
    ),
    ("click interaction_uuid", raw(click(interaction_uuid=12)), "invalid_data", "data.interaction_uuid"),
    # chat.session.reviewed
    ("review resolution_score 0", raw(review(resolution_score=0)), "invalid_data", "data.resolution_score"),
    ("review resolution_score 6", raw(review(resolution_score=6)), "invalid_data", "data.resolution_score"),
    ("review resolution_score text", raw(review(resolution_score="4")), "invalid_data", "data.resolution_score"),
    ("review intent 33 chars", raw(review(intent_category="a" * 33)), "invalid_data", "data.intent_category"),
    ("review intent not a slug", raw(review(intent_category="find compute")), "invalid_data", "data.intent_category"),
    (
        "review intent missing",
        raw(without(review(), "data", "intent_category")),
        "invalid_data",
        "data.intent_category",
    ),
    (
        "review hallucination text",
        raw(review(hallucination_detected="no")),
        "invalid_data",
        "data.hallucination_detected",
    ),
    (
        "review hallucination missing",
        raw(without(review(), "data", "hallucination_detected")),
        "invalid_data",
        "data.hallucination_detected",
    ),
    ("review judge tokens negative", raw(review(judge_input_tokens=-5)), "invalid_data", "data.judge_input_tokens"),
    ("review session_id empty", raw(review(session_id="")), "invalid_data", "data.session_id"),
    # assistant.usage.recorded
    ("usage input_tokens missing", raw(without(usage(), "data", "input_tokens")), "invalid_data", "data.input_tokens"),
    ("usage output_tokens negative", raw(usage(output_tokens=-1)), "invalid_data", "data.output_tokens"),
    ("usage source a number", raw(usage(source=3)), "invalid_data", "data.source"),
]
