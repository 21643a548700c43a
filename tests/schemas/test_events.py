"""The event models against docs/events.md: every valid shape is accepted with the documented defaults, and
every broken rule is rejected with the field it breaks and the right dead-letter reason."""

from __future__ import annotations

from datetime import UTC, datetime
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
from tests.support.contract import (
    BROKEN,
    EVENT_ID,
    INTERACTION,
    OCCURRED_DT,
    OFFER_A,
    OFFER_B,
    SLUG,
    click,
    envelope,
    feedback,
    raw,
    review,
    turn,
    turn_data,
    usage,
)

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


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_timestamp_with_no_utc_instant_is_a_dead_letter_not_a_crash(stamp: str) -> None:
    # A valid RFC 3339 stamp whose UTC instant falls outside the years 1-9999: converting it raised
    # OverflowError out of the parse: the projector retried that message forever, and ingest answered 500.
    occurred, active = parse_events(
        [raw(envelope("chat.turn.recorded", turn_data(), occurred_at=stamp)), raw(turn(last_active_at=stamp))]
    )
    assert isinstance(occurred, Rejection) and isinstance(active, Rejection)
    assert (occurred.reason, active.reason) == ("invalid_envelope", "invalid_data")
    assert occurred.detail == "occurred_at: Value error, is out of range once converted to UTC"
    assert active.detail == "data.last_active_at: Value error, is out of range once converted to UTC"
