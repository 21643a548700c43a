"""CHAT_ANALYTICS_IP_POLICY=drop: the ingest library and endpoint derive the slug from the IP, then
publish no IP; the fold ignores one that arrives anyway. And the warning about an empty slug salt."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest
from starlette.applications import Starlette

from auth.tokens import TokenStore
from ingest import publisher as publisher_module
from ingest.http import PATH, ingest_routes
from ingest.publisher import SALT_WARNING, Publisher
from ingest.slug import user_slug
from projector.fold import apply_batch
from schemas.readmodel import connect
from tests.support.events import feedback, to_records, turn
from tests.support.kafka import read_topic
from tests.support.testclient import TestClient

SALT = "policy-pepper"
IP = "203.0.113.77"
TOKENS = TokenStore([("ingest-secret", "ingest")])


def test_the_library_derives_the_slug_then_publishes_no_ip(bootstrap_servers: str, topic: str) -> None:
    with Publisher(bootstrap_servers, topic, user_slug_salt=SALT, ip_policy="drop") as publisher:
        t = publisher.turn_recorded(interaction_uuid=uuid.uuid4(), session_id="s1", user_input="hi", ip_address=IP)
        f = publisher.feedback_submitted(
            interaction_uuid=t.event.data.interaction_uuid, session_id="s1", score=1, ip_address=IP
        )
        t.get(30), f.get(30)
    values = [json.loads(r.value) for r in read_topic(bootstrap_servers, topic)]
    assert IP.encode() not in b"".join(r.value for r in read_topic(bootstrap_servers, topic))
    turn_data = next(v["data"] for v in values if v["type"] == "chat.turn.recorded")
    assert turn_data["user_slug"] == user_slug(IP, SALT) and "ip_address" not in turn_data
    assert "ip_address" not in next(v["data"] for v in values if v["type"] == "chat.feedback.submitted")


def test_keep_is_the_default_and_publishes_the_ip(bootstrap_servers: str, topic: str) -> None:
    with Publisher(bootstrap_servers, topic, user_slug_salt=SALT) as publisher:
        publisher.turn_recorded(interaction_uuid=uuid.uuid4(), session_id="s1", user_input="hi", ip_address=IP).get(30)
    (record,) = read_topic(bootstrap_servers, topic)
    assert json.loads(record.value)["data"]["ip_address"] == IP


def test_the_endpoint_derives_the_slug_then_publishes_no_ip(bootstrap_servers: str, topic: str) -> None:
    data = {"interaction_uuid": str(uuid.uuid4()), "session_id": "s1", "user_input": "hi", "ip_address": IP}
    body = {"type": "chat.turn.recorded", "version": 1, "data": data}
    with (
        Publisher(bootstrap_servers, topic, user_slug_salt=SALT, ip_policy="drop") as publisher,
        TestClient(Starlette(routes=ingest_routes(publisher, TOKENS))) as client,
    ):
        answer = client.post(PATH, json=body, headers={"Authorization": "Token ingest-secret"})
        assert answer.status_code == 202, answer.text
    (record,) = read_topic(bootstrap_servers, topic)
    data = json.loads(record.value)["data"]
    assert data["user_slug"] == user_slug(IP, SALT) and "ip_address" not in data


def test_the_fold_ignores_an_ip_under_drop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = turn("s1", user_slug="u1", ip_address=IP)
    events = [t, feedback(t, 1, ip_address=IP)]
    kept = connect(tmp_path / "keep.duckdb")
    apply_batch(kept, to_records(events))
    assert kept.execute("SELECT ip_address, fb_ip FROM interactions").fetchall() == [(IP, IP)]
    monkeypatch.setenv("CHAT_ANALYTICS_IP_POLICY", "drop")
    dropped = connect(tmp_path / "drop.duckdb")
    apply_batch(dropped, to_records(events))
    assert dropped.execute("SELECT user_slug, ip_address, fb_ip FROM interactions").fetchall() == [("u1", None, None)]


def test_an_empty_salt_is_warned_about_once(
    bootstrap_servers: str, topic: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module, "_salt_warned", False)
    with caplog.at_level(logging.WARNING, logger="ingest.publisher"):
        Publisher(bootstrap_servers, topic, user_slug_salt="").close()
        Publisher(bootstrap_servers, topic, user_slug_salt="").close()
        Publisher(bootstrap_servers, topic, user_slug_salt=SALT).close()
    assert [r.getMessage() for r in caplog.records].count(SALT_WARNING) == 1
