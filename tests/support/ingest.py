"""The HTTP ingest endpoint in tests: its tokens, an app around a real publisher, and events to post."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.applications import Starlette

from auth.tokens import TokenStore
from ingest.http import PATH, ingest_routes
from ingest.publisher import Publisher
from schemas.registry import parse_event
from tests.support.kafka import read_topic
from tests.support.testclient import TestClient

SALT = "http-pepper"


TOKENS = TokenStore([("ingest-secret", "ingest"), ("staff-secret", "staff"), ("support-secret", "support")])


INGEST = {"Authorization": "Token ingest-secret"}


def client_for(publisher: Publisher) -> TestClient:
    return TestClient(Starlette(routes=ingest_routes(publisher, TOKENS)))


def new_id() -> str:
    return str(uuid.uuid4())


def envelope(type_: str, data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "event_id": new_id(),
        "type": type_,
        "version": 1,
        "occurred_at": "2026-11-26T09:15:02Z",
        "data": data,
        **fields,
    }


def turn(**data: Any) -> dict[str, Any]:
    return envelope(
        "chat.turn.recorded",
        {"interaction_uuid": new_id(), "session_id": "web-1", "user_slug": "u-1", "user_input": "hello", **data},
    )


def post(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        PATH,
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **(INGEST if headers is None else headers)},
    )


def topic_event_ids(bootstrap_servers: str, topic: str) -> list[str]:
    return [str(parse_event(r.value).event_id) for r in read_topic(bootstrap_servers, topic)]
