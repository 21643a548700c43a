"""The event models against docs/events.md: every valid shape is accepted with the documented defaults, and
every broken rule is rejected with the field it breaks and the right dead-letter reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from schemas.events import (
    FEEDBACK_CATEGORIES,
    FeedbackSubmitted,
    OfferingClicked,
    SessionReviewed,
    TurnRecorded,
    UsageRecorded,
)
from schemas.registry import EventRejected, Rejection, parse_event, parse_events

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


# -- valid shapes ------------------------------------------------------------------------------------


def test_a_minimal_turn_gets_every_default_of_the_contract() -> None:
    event = parse_event(raw(turn()))
    assert isinstance(event, TurnRecorded)
    assert event.event_id == UUID(EVENT_ID)
    assert event.occurred_at == OCCURRED_DT
    d = event.data
    assert (d.interaction_uuid, d.session_id, d.user_slug, d.user_input) == (UUID(INTERACTION), "s-1", SLUG, "hi")
    assert d.ip_address is None
    assert d.assistant_blocks == [] and d.offering_uuids == []
    assert d.result_count == 0
    assert d.is_flagged is False
    assert d.severity == "none"
    assert d.injection_categories == [] and d.pii_categories == []
    assert d.action_taken == "" and d.warning == ""
    assert d.input_tokens == 0 and d.output_tokens == 0
    assert d.last_active_at == OCCURRED_DT


def test_a_full_turn_keeps_every_field_as_given() -> None:
    blocks = [{"type": "text", "text": "Here you go"}, {"type": "offerings", "offering_uuids": [OFFER_A], "n": 1}]
    event = parse_event(
        raw(
            turn(
                ip_address="2001:db8::7",
                assistant_blocks=blocks,
                offering_uuids=[OFFER_A, OFFER_B],
                result_count=7,
                is_flagged=True,
                severity="high",
                injection_categories=["prompt_injection"],
                pii_categories=["email"],
                action_taken="redact",
                warning="Personal data detected",
                input_tokens=1200,
                output_tokens=345,
                last_active_at="2026-11-26T10:00:00+01:00",
            )
        )
    )
    d = event.data
    assert d.ip_address == "2001:db8::7"
    assert d.assistant_blocks == blocks
    assert d.offering_uuids == [UUID(OFFER_A), UUID(OFFER_B)]
    assert d.result_count == 7  # given explicitly, it is not recomputed from the offerings
    assert (d.is_flagged, d.severity, d.action_taken, d.warning) == (True, "high", "redact", "Personal data detected")
    assert (d.injection_categories, d.pii_categories) == (["prompt_injection"], ["email"])
    assert (d.input_tokens, d.output_tokens) == (1200, 345)
    assert d.last_active_at == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_result_count_defaults_to_the_number_of_offerings() -> None:
    assert parse_event(raw(turn(offering_uuids=[OFFER_A, OFFER_B]))).data.result_count == 2


@pytest.mark.parametrize("severity", ["", "none", "low", "medium", "high", "critical"])
def test_every_severity_is_accepted_and_empty_means_none(severity: str) -> None:
    assert parse_event(raw(turn(severity=severity))).data.severity == (severity or "none")


@pytest.mark.parametrize("action", ["", "allow", "flag", "warn", "redact", "block"])
def test_every_action_taken_is_accepted(action: str) -> None:
    assert parse_event(raw(turn(action_taken=action))).data.action_taken == action


def test_user_input_is_cut_to_2000_characters() -> None:
    text = "é" * 1999 + "xyz"
    assert parse_event(raw(turn(user_input=text))).data.user_input == "é" * 1999 + "x"


def test_boundary_lengths_are_accepted() -> None:
    d = parse_event(raw(turn(session_id="s" * 64, user_slug="u" * 128))).data
    assert (len(d.session_id), len(d.user_slug)) == (64, 128)
    assert parse_event(raw(turn(session_id="x", user_slug=""))).data.user_slug == ""
    assert parse_event(raw(turn(model="m" * 150))).data.model == "m" * 150
    assert parse_event(raw(turn())).data.model == ""  # older publishers send no model


def test_occurred_at_with_an_offset_is_stored_in_utc() -> None:
    event = parse_event(raw(envelope("chat.turn.recorded", turn_data(), occurred_at="2026-11-26T01:30:00-08:00")))
    assert event.occurred_at == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert event.data.last_active_at == event.occurred_at


def test_unknown_extra_fields_are_ignored_in_the_envelope_and_in_data() -> None:
    event = turn(future_field={"x": 1})
    event["trace_id"] = "abc"
    parsed = parse_event(raw(event))
    assert isinstance(parsed, TurnRecorded)
    assert not hasattr(parsed.data, "future_field") and not hasattr(parsed, "trace_id")


def test_positive_feedback_without_category_and_with_null_category() -> None:
    for event in (feedback(score=1), feedback(score=1, category=None)):
        parsed = parse_event(raw(event))
        assert isinstance(parsed, FeedbackSubmitted)
        assert (parsed.data.score, parsed.data.category, parsed.data.comment, parsed.data.ip_address) == (
            1,
            None,
            "",
            None,
        )


@pytest.mark.parametrize("category", FEEDBACK_CATEGORIES)
def test_negative_feedback_with_each_category(category: str) -> None:
    parsed = parse_event(raw(feedback(score=-1, category=category, comment="meh", ip_address="198.51.100.4")))
    assert (parsed.data.score, parsed.data.category, parsed.data.comment) == (-1, category, "meh")
    assert parsed.data.ip_address == "198.51.100.4"


def test_a_click() -> None:
    parsed = parse_event(raw(click()))
    assert isinstance(parsed, OfferingClicked)
    assert (parsed.data.interaction_uuid, parsed.data.offering_uuid) == (UUID(INTERACTION), UUID(OFFER_A))


def test_a_minimal_review_gets_its_defaults_and_may_have_an_empty_intent() -> None:
    parsed = parse_event(raw(review(intent_category="")))
    assert isinstance(parsed, SessionReviewed)
    d = parsed.data
    assert (d.resolution_score, d.intent_category, d.hallucination_detected) == (4, "", False)
    assert (d.hallucination_details, d.summary, d.judge_model) == ("", "", "")
    assert (d.judge_input_tokens, d.judge_output_tokens) == (0, 0)


def test_a_full_review() -> None:
    d = parse_event(
        raw(
            review(
                resolution_score=1,
                intent_category="gpu-access_2",
                hallucination_detected=True,
                hallucination_details="invented an offering",
                summary="wrong answer",
                judge_model="judge-1",
                judge_input_tokens=900,
                judge_output_tokens=80,
            )
        )
    ).data
    assert (d.resolution_score, d.intent_category, d.hallucination_detected) == (1, "gpu-access_2", True)
    assert (d.hallucination_details, d.summary, d.judge_model) == ("invented an offering", "wrong answer", "judge-1")
    assert (d.judge_input_tokens, d.judge_output_tokens) == (900, 80)


@pytest.mark.parametrize("score", [1, 2, 3, 4, 5])
def test_every_resolution_score_from_1_to_5(score: int) -> None:
    assert parse_event(raw(review(resolution_score=score))).data.resolution_score == score


def test_usage_with_and_without_source() -> None:
    parsed = parse_event(raw(usage()))
    assert isinstance(parsed, UsageRecorded)
    assert (parsed.data.input_tokens, parsed.data.output_tokens, parsed.data.source) == (10, 20, "")
    assert parse_event(raw(usage(source="authenticated_chat", input_tokens=0))).data.source == "authenticated_chat"


# -- broken rules ------------------------------------------------------------------------------------

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


@pytest.mark.parametrize(("value", "reason", "field"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_rule_is_rejected_with_its_reason_and_field(value: bytes | None, reason: str, field: str) -> None:
    (result,) = parse_events([value])
    assert isinstance(result, Rejection), f"accepted: {result!r}"
    assert result.reason == reason, result.detail
    assert field in [e.field for e in result.errors], result.errors
    assert field in result.detail  # the stored dead-letter message names the field too


@pytest.mark.parametrize(
    ("value", "reason"),
    [(c[1], c[2]) for c in BROKEN if c[1] is not None],
    ids=[c[0] for c in BROKEN if c[1] is not None],
)
def test_parse_event_raises_with_the_same_rejection(value: bytes, reason: str) -> None:
    with pytest.raises(EventRejected) as caught:
        parse_event(value)
    assert caught.value.rejection.reason == reason


def test_one_poll_of_good_and_bad_values_keeps_each_result_in_its_place() -> None:
    good = [raw(turn()), raw(feedback(score=1)), raw(click()), raw(review()), raw(usage())]
    values: list[bytes | None] = []
    expected: list[str] = []
    for i, (_, value, reason, _) in enumerate(BROKEN):
        values.append(good[i % len(good)])
        expected.append("ok")
        values.append(value)
        expected.append(reason)
    results = parse_events(values)
    assert [r.reason if isinstance(r, Rejection) else "ok" for r in results] == expected


def test_a_rejection_keeps_the_event_id_and_type_it_could_read() -> None:
    (result,) = parse_events([raw(turn(severity="urgent"))])
    assert isinstance(result, Rejection)
    assert (result.event_id, result.type) == (EVENT_ID, "chat.turn.recorded")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("198.51.100.4", "198.51.100.4"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
    ],
)
def test_an_ip_address_is_stored_in_its_normal_form(given: str, stored: str) -> None:
    assert parse_event(raw(turn(ip_address=given))).data.ip_address == stored
    assert parse_event(raw(feedback(score=1, ip_address=given))).data.ip_address == stored


@pytest.mark.parametrize(
    "given", ["01.2.3.4", "1.2.3.04", "256.0.0.1", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4\n", "१.2.3.4"]
)
def test_an_ip_address_that_is_almost_a_dotted_quad_is_invalid_data(given: str) -> None:
    rejection = parse_events([raw(turn(ip_address=given))])[0]
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.detail) == (
        "invalid_data",
        "data.ip_address: value is not a valid IPv4 or IPv6 address",
    )


def test_a_timestamp_that_is_a_number_is_rejected_whatever_its_field() -> None:
    for event in (envelope("chat.turn.recorded", turn_data(), occurred_at=1764120600), turn(last_active_at=1.5)):
        rejection = parse_events([raw(event)])[0]
        assert isinstance(rejection, Rejection)
        assert "must be an RFC 3339 timestamp string with an offset, not a number" in rejection.detail
