"""The ingest endpoint's limits, against a real broker: events per request, errors listed, the scrypt
slug only for a valid batch, the per-token rate limit, and a 503 (never a 500 or a 202) without Kafka."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette

from ingest.http import MAX_ERRORS_LISTED, PATH, ingest_routes
from ingest.publisher import SERVER_PRODUCER_CONFIG, Publisher
from ingest.slug import _scrypt_hex
from tests.support.ingest import INGEST, SALT, TOKENS, post, topic_event_ids, turn
from tests.support.testclient import TestClient


def limited_client(publisher: Publisher, **limits: Any) -> TestClient:
    return TestClient(Starlette(routes=ingest_routes(publisher, TOKENS, **limits)))


@pytest.fixture
def publisher(bootstrap_servers: str, topic: str) -> Iterator[Publisher]:
    with Publisher(bootstrap_servers, topic, user_slug_salt=SALT) as publisher:
        yield publisher


def test_more_events_than_the_maximum_is_413_and_publishes_nothing(
    publisher: Publisher, bootstrap_servers: str, topic: str
) -> None:
    with limited_client(publisher, max_events=10) as client:
        response = post(client, [turn() for _ in range(11)])
        assert response.status_code == 413
        assert "At most 10 events per request" in response.json()["detail"]
        assert post(client, [turn() for _ in range(10)]).status_code == 202
    assert len(topic_event_ids(bootstrap_servers, topic)) == 10


def test_thousands_of_bad_elements_list_a_bounded_number_of_errors_and_the_total(publisher: Publisher) -> None:
    with limited_client(publisher, max_events=20_000) as client:
        started = time.monotonic()
        response = client.post(PATH, content=b"[" + b",".join([b"{}"] * 10_000) + b"]", headers=_json())
        took = time.monotonic() - started
    assert response.status_code == 400
    body = response.json()
    assert len(body["errors"]) == MAX_ERRORS_LISTED
    assert body["error_count"] >= 10_000  # every element misses several fields
    assert "Nothing was published" in body["detail"]
    assert len(response.content) < 10_000
    print(f"10,000 bad elements answered in {took:.2f} s ({len(response.content)} bytes)")


def test_no_slug_is_derived_for_a_batch_that_is_invalid(publisher: Publisher) -> None:
    batch = [turn(ip_address=f"198.18.{i // 250}.{i % 250}") for i in range(50)]
    for event in batch:
        del event["data"]["user_slug"]
    batch[-1]["data"]["session_id"] = ""  # one bad event: nothing is published, nothing hashed
    misses = _scrypt_hex.cache_info().misses
    with limited_client(publisher) as client:
        response = post(client, batch)
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(49, "data.session_id")]
    assert _scrypt_hex.cache_info().misses == misses


def test_a_token_over_its_rate_is_429_with_retry_after(publisher: Publisher) -> None:
    with limited_client(publisher, max_events=5, rate=5) as client:
        assert post(client, [turn() for _ in range(5)]).status_code == 202
        limited = post(client, [turn() for _ in range(5)])
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "Rate limit" in limited.json()["detail"]


def test_without_kafka_the_answer_is_a_quick_503_with_retry_after() -> None:
    # Nothing listens on port 1: the producer never connects, and the API does not wait for it.
    started = time.monotonic()
    publisher = Publisher("127.0.0.1:1", "t", connect_in_background=True, **SERVER_PRODUCER_CONFIG)
    try:
        assert time.monotonic() - started < 2
        with limited_client(publisher) as client:
            response = post(client, turn())
    finally:
        publisher.close(timeout=0)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "not reachable" in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 400),  # deep nesting
        (b'{"type": "\xff\xfe"}', 400),  # invalid UTF-8
        (b'{"data": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}", 400),
    ],
    ids=["deep-array", "bad-utf8", "deep-object"],
)
def test_hostile_bodies_are_clear_400s(publisher: Publisher, content: bytes, status: int) -> None:
    with limited_client(publisher) as client:
        response = client.post(PATH, content=content[: 1024 * 1024], headers=_json())
    assert response.status_code == status
    body = response.json()
    assert body.get("detail") or body.get("errors")


def _json() -> dict[str, str]:
    return {**INGEST, "Content-Type": "application/json"}
