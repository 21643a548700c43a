"""POST /api/events/ through a real Kafka broker: what it accepts is on the topic and parses to the
same events; what it refuses is answered with every error's index and field, and nothing of a
refused batch reaches the topic."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient

from ingest.http import MAX_BODY_BYTES, PATH
from ingest.publisher import Publisher
from schemas.events import FeedbackSubmitted, OfferingClicked, SessionReviewed, TurnRecorded, UsageRecorded
from schemas.registry import parse_event
from tests.support.ingest import INGEST, SALT, client_for, envelope, new_id, post, topic_event_ids, turn
from tests.support.kafka import read_topic
from tests.support.testclient import TestClient


@pytest.fixture
def publisher(bootstrap_servers: str, topic: str) -> Iterator[Publisher]:
    with Publisher(bootstrap_servers, topic, user_slug_salt=SALT) as publisher:
        yield publisher


@pytest.fixture
def client(publisher: Publisher) -> Iterator[TestClient]:
    with client_for(publisher) as client:
        yield client


def one_of_each() -> list[dict[str, Any]]:
    interaction, offer = new_id(), new_id()
    ref = {"interaction_uuid": interaction, "session_id": "web-1"}
    return [
        envelope(
            "chat.turn.recorded",
            {**ref, "user_slug": "u-1", "user_input": "GPU please", "offering_uuids": [offer], "input_tokens": 9},
        ),
        envelope("chat.feedback.submitted", {**ref, "score": 1}),
        envelope("chat.offering.clicked", {**ref, "offering_uuid": offer}),
        envelope(
            "chat.session.reviewed",
            {**ref, "resolution_score": 5, "intent_category": "gpu_access", "hallucination_detected": False},
        ),
        envelope("assistant.usage.recorded", {"input_tokens": 3, "output_tokens": 4, "source": "authenticated_chat"}),
    ]


# -- accepted ----------------------------------------------------------------------------------------


def test_one_event_is_published_and_answered_with_its_id(
    client: TestClient, bootstrap_servers: str, topic: str
) -> None:
    event = turn(ip_address="203.0.113.5", severity="", assistant_blocks=[{"type": "ask_user", "question": "Which?"}])
    response = post(client, event)
    assert response.status_code == 202, response.text
    assert response.json() == {"event_ids": [event["event_id"]]}
    (record,) = read_topic(bootstrap_servers, topic)
    assert record.key == b"web-1"
    parsed = parse_event(record.value)
    assert isinstance(parsed, TurnRecorded)
    assert parsed.data.assistant_blocks == [{"type": "ask_user", "question": "Which?"}]
    assert (parsed.data.ip_address, parsed.data.severity, parsed.data.user_slug) == ("203.0.113.5", "none", "u-1")


def test_an_array_of_every_type_is_published_in_order(client: TestClient, bootstrap_servers: str, topic: str) -> None:
    events = one_of_each()
    response = post(client, events)
    assert response.status_code == 202, response.text
    assert response.json() == {"event_ids": [e["event_id"] for e in events]}

    records = read_topic(bootstrap_servers, topic)
    parsed = {str(p.event_id): (p, r.key) for r in records for p in [parse_event(r.value)]}
    assert sorted(parsed) == sorted(e["event_id"] for e in events)
    kinds = [type(parsed[e["event_id"]][0]) for e in events]
    assert kinds == [TurnRecorded, FeedbackSubmitted, OfferingClicked, SessionReviewed, UsageRecorded]
    assert [parsed[e["event_id"]][1] for e in events] == [b"web-1"] * 4 + [b""]
    session_records = [r for r in records if r.key == b"web-1"]
    assert [str(parse_event(r.value).event_id) for r in session_records] == [e["event_id"] for e in events[:4]]


def test_only_ingest_tokens_may_publish_not_staff(client: TestClient) -> None:
    # Staff read and administer; a leaked dashboard token must not write into the log.
    assert post(client, turn(), {"Authorization": "Token staff-secret"}).status_code == 403


def test_missing_ids_times_and_slugs_are_filled_and_long_input_cut(
    client: TestClient, bootstrap_servers: str, topic: str
) -> None:
    event = turn(ip_address="198.51.100.77", user_input="y" * 2600)
    del event["event_id"], event["occurred_at"], event["data"]["user_slug"]
    before_ms = time.time_ns() // 1_000_000
    response = post(client, event)
    after_ms = time.time_ns() // 1_000_000
    assert response.status_code == 202, response.text
    (event_id,) = response.json()["event_ids"]
    (record,) = read_topic(bootstrap_servers, topic)
    sent = json.loads(record.value)
    # A UUIDv7: the milliseconds it was made at, first (so that ids sort by when they were made).
    assert sent["event_id"] == event_id and uuid.UUID(event_id).version == 7
    assert before_ms <= uuid.UUID(event_id).int >> 80 <= after_ms
    assert sent["occurred_at"].endswith("Z")
    expected_slug = hashlib.scrypt(b"198.51.100.77", salt=SALT.encode(), n=2**14, r=8, p=1, dklen=32).hex()
    assert sent["data"]["user_slug"] == expected_slug
    assert sent["data"]["user_input"] == "y" * 2000


def test_a_charset_parameter_is_fine(client: TestClient) -> None:
    response = client.post(
        PATH, content=json.dumps(turn()).encode(), headers={**INGEST, "Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 202


def test_integers_beyond_64_bits_in_assistant_blocks_arrive_exactly(
    client: TestClient, bootstrap_servers: str, topic: str
) -> None:
    blocks = [{"type": "table", "rows": [[2**70, -(2**65)]]}]
    assert post(client, turn(assistant_blocks=blocks)).status_code == 202
    (record,) = read_topic(bootstrap_servers, topic)
    assert json.loads(record.value)["data"]["assistant_blocks"] == blocks


# -- refused -----------------------------------------------------------------------------------------


def test_an_invalid_batch_names_every_error_and_publishes_nothing(
    client: TestClient, bootstrap_servers: str, topic: str
) -> None:
    events: list[Any] = one_of_each()
    events[1]["data"]["session_id"] = ""
    events[2] = {**events[2], "type": "chat.offering.viewed"}
    events[3]["data"]["resolution_score"] = 9
    events[3]["data"]["hallucination_detected"] = "maybe"
    events.append("not an event")
    events.append({**turn(), "version": 2})
    response = post(client, events)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [
        (1, "data.session_id"),
        (2, "type"),
        (3, "data.resolution_score"),
        (3, "data.hallucination_detected"),
        (5, "(event)"),
        (6, "version"),
    ]
    assert all(e["message"] for e in errors)

    marker = turn()
    assert post(client, marker).status_code == 202
    assert topic_event_ids(bootstrap_servers, topic) == [marker["event_id"]]


def test_a_feedback_rule_across_fields_is_reported_at_the_field(client: TestClient) -> None:
    body = envelope("chat.feedback.submitted", {"interaction_uuid": new_id(), "session_id": "s", "score": -1})
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 0, "field": "data.category", "message": "Value error, category is required when score is -1"}
    ]


def test_a_timestamp_with_no_utc_instant_is_400_at_its_field(client: TestClient) -> None:
    # Converting it to UTC overflowed, and the request ended in a 500.
    body = {**turn(), "occurred_at": "0001-01-01T00:00:00+01:00"}
    response = post(client, body)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"index": 0, "field": "occurred_at", "message": "Value error, is out of range once converted to UTC"}
    ]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b'{"a": NaN}', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[]", "application/json"),
        (b"42", "application/json"),
        (b'"text"', "application/json"),
        (json.dumps({"a": 1}).encode(), "text/plain"),
        (json.dumps({"a": 1}).encode(), "application/x-www-form-urlencoded"),
        (json.dumps({"a": 1}).encode(), None),
    ],
    ids=["broken", "empty", "nan", "not-utf8", "empty-array", "number", "string", "text", "form", "no-type"],
)
def test_a_body_that_is_not_events_as_json_is_400_with_detail(
    client: TestClient, content: bytes, content_type: str | None, bootstrap_servers: str, topic: str
) -> None:
    headers = dict(INGEST)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post(PATH, content=content, headers=headers)
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_a_declared_body_over_1_mib_is_413(client: TestClient, bootstrap_servers: str, topic: str) -> None:
    body = json.dumps(turn(assistant_blocks=[{"type": "text", "text": "z" * MAX_BODY_BYTES}])).encode()
    response = client.post(PATH, content=body, headers={**INGEST, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "detail" in response.json()


def test_a_streamed_body_over_1_mib_is_counted_and_refused(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'[{"padding": "'
        for _ in range(20):
            yield b"x" * 64 * 1024
        yield b'"}]'

    # A generator body goes out chunked, without Content-Length: only counting can catch it.
    response = client.post(PATH, content=chunks(), headers={**INGEST, "Content-Type": "application/json"})
    assert response.status_code == 413


def test_a_body_within_1_mib_but_too_large_for_kafka_once_completed_is_413(
    client: TestClient, bootstrap_servers: str, topic: str
) -> None:
    big = turn()
    del big["event_id"], big["occurred_at"]  # the endpoint adds ~100 bytes: over Kafka's 1 MiB record limit
    big["data"]["assistant_blocks"] = [{"type": "text", "text": ""}]
    padding = MAX_BODY_BYTES - len(json.dumps(big, separators=(",", ":")).encode()) - 10
    big["data"]["assistant_blocks"][0]["text"] = "w" * padding
    content = json.dumps(big, separators=(",", ":")).encode()
    assert MAX_BODY_BYTES - 100 < len(content) <= MAX_BODY_BYTES
    response = client.post(PATH, content=content, headers={**INGEST, "Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.json()["errors"] == [{"index": 0, "field": "(event)", "message": "too large for Kafka"}]
    assert read_topic(bootstrap_servers, topic) == []


def test_a_batch_with_one_event_over_the_producers_limit_publishes_nothing(bootstrap_servers: str, topic: str) -> None:
    with Publisher(bootstrap_servers, topic, max_request_size=10_000) as publisher, client_for(publisher) as client:
        big = turn(assistant_blocks=[{"type": "text", "text": "w" * 20_000}])
        response = post(client, [turn(), turn(), big, turn()])
        assert response.status_code == 413, response.text
        assert [e["index"] for e in response.json()["errors"]] == [2]
        marker = turn()
        assert post(client, marker).status_code == 202
    assert topic_event_ids(bootstrap_servers, topic) == [marker["event_id"]]


def test_without_a_valid_ingest_token_nothing_is_accepted(client: TestClient) -> None:
    missing = post(client, turn(), headers={})
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Token"
    assert post(client, turn(), {"Authorization": "Token wrong"}).status_code == 401
    assert post(client, turn(), {"Authorization": "Token support-secret"}).status_code == 403


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405_with_allow(client: TestClient, method: str) -> None:
    response = client.request(method, PATH, headers=INGEST)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST, OPTIONS"
    assert method in response.json()["detail"]


def test_options_lists_the_methods(client: TestClient) -> None:
    response = client.options(PATH, headers=INGEST)
    assert response.status_code == 200
    assert response.json()["methods"] == ["POST", "OPTIONS"]


# -- Kafka refuses -----------------------------------------------------------------------------------


@pytest.fixture
def tiny_topic(kafka_admin: KafkaAdminClient) -> Iterator[str]:
    """A topic whose broker refuses records over 2000 bytes: a real error from Kafka, not a mock."""
    name = f"test-tiny-http-{uuid.uuid4().hex[:10]}"
    kafka_admin.create_topics(
        {name: {"num_partitions": 1, "configs": {"max.message.bytes": "2000"}}}, wait_for_metadata=True
    )
    yield name
    kafka_admin.delete_topics([name], raise_errors=False)


def test_an_event_kafka_refuses_is_503_and_the_endpoint_keeps_working(bootstrap_servers: str, tiny_topic: str) -> None:
    with Publisher(bootstrap_servers, tiny_topic, user_slug_salt="") as publisher, client_for(publisher) as client:
        big = turn(assistant_blocks=[{"type": "text", "text": "q" * 5000}])
        refused = post(client, big)
        assert refused.status_code == 503, refused.text
        assert refused.json()["event_ids"] == [big["event_id"]]
        assert refused.json()["acknowledged"] == []
        small = turn()
        assert post(client, small).status_code == 202
    assert topic_event_ids(bootstrap_servers, tiny_topic) == [small["event_id"]]
