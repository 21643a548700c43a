"""The Python publisher through a real Kafka broker: what it publishes is read back from the topic,
keyed by session, and parses with `parse_event` to the very event the publisher validated."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from ingest.demo import DemoTraffic
from ingest.publisher import InvalidEvent, Publisher
from schemas.events import FeedbackSubmitted, OfferingClicked, SessionReviewed, TurnRecorded, UsageRecorded
from schemas.registry import parse_event
from tests.support.kafka import read_topic

SALT = "test-pepper"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def publisher(bootstrap_servers: str, topic: str) -> Iterator[Publisher]:
    with Publisher(bootstrap_servers, topic, user_slug_salt=SALT) as publisher:
        yield publisher


def new_id() -> str:
    return str(uuid.uuid4())


def test_each_event_type_is_published_keyed_by_session_and_reads_back_valid(
    publisher: Publisher, bootstrap_servers: str, topic: str
) -> None:
    interaction, offer = new_id(), new_id()
    sent = [
        publisher.turn_recorded(
            interaction_uuid=interaction,
            session_id="session-1",
            user_input="Which storage offering supports S3?",
            ip_address="203.0.113.7",
            assistant_blocks=[{"type": "text", "text": "These:"}, {"type": "offerings", "offering_uuids": [offer]}],
            offering_uuids=[offer],
            severity="",
            input_tokens=321,
            output_tokens=123,
        ),
        publisher.feedback_submitted(
            interaction_uuid=interaction, session_id="session-1", score=-1, category="incomplete", comment="no price"
        ),
        publisher.offering_clicked(interaction_uuid=interaction, session_id="session-1", offering_uuid=offer),
        publisher.session_reviewed(
            session_id="session-1",
            interaction_uuid=interaction,
            resolution_score=4,
            intent_category="find_storage",
            hallucination_detected=False,
            judge_model="judge-1",
            judge_input_tokens=900,
        ),
        publisher.usage_recorded(input_tokens=50, output_tokens=70, source="authenticated_chat"),
    ]
    acks = [result.get(timeout=30) for result in sent]

    records = read_topic(bootstrap_servers, topic)
    assert len(records) == len(sent)
    by_position = {(r.partition, r.offset): r for r in records}
    for result, ack in zip(sent, acks, strict=True):
        record = by_position[(ack.partition, ack.offset)]
        assert parse_event(record.value) == result.event
        assert str(result.event.event_id) == result.event_id
    types = [type(r.event) for r in sent]
    assert types == [TurnRecorded, FeedbackSubmitted, OfferingClicked, SessionReviewed, UsageRecorded]
    keys = [by_position[(a.partition, a.offset)].key for a in acks]
    assert keys == [b"session-1"] * 4 + [b""]
    # One key, one partition: the session's events are in publish order there.
    assert [a.offset for a in acks[:4]] == sorted(a.offset for a in acks[:4])
    assert len({a.partition for a in acks[:4]}) == 1


def test_defaults_of_the_contract_are_applied_to_what_is_sent(
    publisher: Publisher, bootstrap_servers: str, topic: str
) -> None:
    publisher.turn_recorded(interaction_uuid=new_id(), session_id="s", user_input="hi", user_slug="u").get(30)
    (record,) = read_topic(bootstrap_servers, topic)
    data = json.loads(record.value)["data"]
    # Only what was given travels; the projector applies the same defaults when it parses.
    assert set(data) == {"interaction_uuid", "session_id", "user_input", "user_slug"}
    event = parse_event(record.value)
    assert (event.data.severity, event.data.result_count, event.data.last_active_at) == ("none", 0, event.occurred_at)


def test_event_id_and_occurred_at_are_kept_when_given_and_filled_when_not(
    publisher: Publisher, bootstrap_servers: str, topic: str
) -> None:
    given_id = new_id()
    given_at = datetime(2026, 11, 26, 11, 0, tzinfo=timezone(timedelta(hours=2)))
    publisher.usage_recorded(input_tokens=1, output_tokens=2, event_id=given_id, occurred_at=given_at).get(30)
    before = datetime.now(UTC)
    filled = publisher.usage_recorded(input_tokens=3, output_tokens=4)
    filled.get(30)
    after = datetime.now(UTC)

    events = {str(e.event_id): e for e in (parse_event(r.value) for r in read_topic(bootstrap_servers, topic))}
    assert events[given_id].occurred_at == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert uuid.UUID(filled.event_id).version == 7
    assert before <= events[filled.event_id].occurred_at <= after


def test_user_slug_is_derived_from_the_ip_when_no_slug_is_given(
    bootstrap_servers: str, topic: str, publisher: Publisher
) -> None:
    expected = hashlib.scrypt(b"198.51.100.23", salt=SALT.encode(), n=2**14, r=8, p=1, dklen=32).hex()
    derived = publisher.turn_recorded(
        interaction_uuid=new_id(), session_id="s", user_input="a", ip_address="198.51.100.23"
    )
    kept = publisher.turn_recorded(
        interaction_uuid=new_id(), session_id="s", user_input="b", ip_address="198.51.100.23", user_slug="given"
    )
    nobody = publisher.turn_recorded(interaction_uuid=new_id(), session_id="s", user_input="c")
    with Publisher(bootstrap_servers, topic, user_slug_salt="") as unsalted:
        no_salt = unsalted.turn_recorded(
            interaction_uuid=new_id(), session_id="s", user_input="d", ip_address="198.51.100.23"
        )
    for result in (derived, kept, nobody, no_salt):
        result.get(30)

    slugs = {
        json.loads(r.value)["data"]["user_input"]: json.loads(r.value)["data"]["user_slug"]
        for r in read_topic(bootstrap_servers, topic)
    }
    assert slugs == {"a": expected, "b": "given", "c": "", "d": ""}


def test_the_salt_comes_from_the_environment_by_default(
    bootstrap_servers: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAT_ANALYTICS_USER_SLUG_SALT", "from-env")
    with Publisher(bootstrap_servers, topic) as publisher:
        result = publisher.turn_recorded(
            interaction_uuid=new_id(), session_id="s", user_input="x", ip_address="192.0.2.1"
        )
        result.get(30)
    expected = hashlib.scrypt(b"192.0.2.1", salt=b"from-env", n=2**14, r=8, p=1, dklen=32).hex()
    (record,) = read_topic(bootstrap_servers, topic)
    assert json.loads(record.value)["data"]["user_slug"] == expected


def test_user_input_is_cut_to_2000_characters_before_sending(
    publisher: Publisher, bootstrap_servers: str, topic: str
) -> None:
    text = "ä" * 1990 + "0123456789" * 100
    publisher.turn_recorded(interaction_uuid=new_id(), session_id="s", user_input=text, user_slug="").get(30)
    (record,) = read_topic(bootstrap_servers, topic)
    assert json.loads(record.value)["data"]["user_input"] == text[:2000]


def test_an_invalid_event_raises_naming_the_field_and_sends_nothing(
    publisher: Publisher, bootstrap_servers: str, topic: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        publisher.feedback_submitted(interaction_uuid=new_id(), session_id="s", score=-1)
    assert [e.field for e in caught.value.errors] == ["data.category"]
    assert caught.value.rejection.reason == "invalid_data"
    with pytest.raises(InvalidEvent) as caught:
        publisher.turn_recorded(interaction_uuid="not-a-uuid", session_id="", user_input="x", user_slug="")
    assert {e.field for e in caught.value.errors} == {"data.interaction_uuid", "data.session_id"}
    with pytest.raises(InvalidEvent) as caught:
        publisher.usage_recorded(input_tokens=1, output_tokens=1, occurred_at=datetime(2026, 1, 1))  # no offset
    assert caught.value.rejection.reason == "invalid_envelope"
    assert [e.field for e in caught.value.errors] == ["occurred_at"]
    with pytest.raises(InvalidEvent):
        publisher.publish({"type": "chat.turn.recorded", "version": 2, "data": {}})

    marker = publisher.usage_recorded(input_tokens=1, output_tokens=1)
    marker.get(30)
    assert [str(parse_event(r.value).event_id) for r in read_topic(bootstrap_servers, topic)] == [marker.event_id]


def test_publish_takes_any_event_as_an_envelope_mapping(
    publisher: Publisher, bootstrap_servers: str, topic: str
) -> None:
    envelope: dict[str, Any] = {
        "type": "chat.offering.clicked",
        "version": 1,
        "occurred_at": "2026-11-26T10:00:00+00:00",
        "data": {"interaction_uuid": new_id(), "session_id": "s-9", "offering_uuid": new_id()},
    }
    result = publisher.publish(envelope)
    result.get(30)
    (record,) = read_topic(bootstrap_servers, topic)
    assert record.key == b"s-9"
    assert parse_event(record.value) == result.event


def test_publish_raw_sends_the_bytes_as_they_are_in_order_per_key(
    publisher: Publisher, bootstrap_servers: str, topic: str
) -> None:
    pairs = list(DemoTraffic(3000, seed=11, now=NOW))
    assert publisher.publish_raw(pairs) == len(pairs)

    records = read_topic(bootstrap_servers, topic)
    assert sorted((r.key, r.value) for r in records) == sorted(pairs)
    sent_by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value in pairs:
        sent_by_key[key].append(value)
    read_by_key: dict[bytes, list[bytes]] = defaultdict(list)
    for record in records:
        read_by_key[record.key].append(record.value)
    assert read_by_key == sent_by_key


def test_closing_flushes_what_was_sent_without_waiting(bootstrap_servers: str, topic: str) -> None:
    with Publisher(bootstrap_servers, topic, linger_ms=2000) as publisher:
        results = [publisher.usage_recorded(input_tokens=i, output_tokens=i) for i in range(10)]
    assert all(r.is_done for r in results)
    assert len(read_topic(bootstrap_servers, topic)) == 10


def test_the_producer_is_idempotent_with_acks_all_whatever_the_caller_asks(bootstrap_servers: str, topic: str) -> None:
    with Publisher(bootstrap_servers, topic, acks=1, enable_idempotence=False) as publisher:
        config = publisher._producer.config
        assert config["enable_idempotence"] is True
        assert config["acks"] == -1  # kafka-python's spelling of 'all'


@pytest.fixture
def tiny_topic(kafka_admin: KafkaAdminClient) -> Iterator[str]:
    """A topic whose broker refuses records over 2000 bytes: a real error from Kafka, not a mock."""
    name = f"test-tiny-{uuid.uuid4().hex[:10]}"
    kafka_admin.create_topics(
        {name: {"num_partitions": 1, "configs": {"max.message.bytes": "2000"}}}, wait_for_metadata=True
    )
    yield name
    kafka_admin.delete_topics([name], raise_errors=False)


def test_an_error_from_kafka_surfaces_to_the_caller(bootstrap_servers: str, tiny_topic: str) -> None:
    big_blocks = [{"type": "text", "text": "x" * 5000}]
    with Publisher(bootstrap_servers, tiny_topic, user_slug_salt="") as publisher:
        result = publisher.turn_recorded(
            interaction_uuid=new_id(), session_id="s", user_input="hi", assistant_blocks=big_blocks
        )
        with pytest.raises(KafkaError):
            result.get(30)
        small = publisher.usage_recorded(input_tokens=1, output_tokens=1)
        small.get(30)  # the publisher stays usable
        raw_value = json.dumps({"padding": "y" * 5000}).encode()
        with pytest.raises(KafkaError):
            publisher.publish_raw([(b"k", raw_value)])
    assert [str(parse_event(r.value).event_id) for r in read_topic(bootstrap_servers, tiny_topic)] == [small.event_id]
