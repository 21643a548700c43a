"""Event builders for tests and local experiments: envelopes as dicts, encoded bytes, and Records.

The builders take a turn event (the dict) where an event refers to a turn, so a test reads like the
story it tells: `feedback(t, -1, "inaccurate")` is a thumbs-down on turn `t`.
"""

from __future__ import annotations

import json
import random
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from projector.records import Record

BASE_TIME = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)


def _id(rng: random.Random | None = None) -> str:
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4)) if rng else str(uuidlib.uuid4())


def envelope(
    type_: str,
    data: dict[str, Any],
    *,
    at: datetime = BASE_TIME,
    event_id: str | None = None,
    version: int = 1,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id or _id(rng),
        "type": type_,
        "version": version,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def turn(
    session_id: str = "s1",
    *,
    at: datetime = BASE_TIME,
    interaction_uuid: str | None = None,
    user_slug: str = "",
    user_input: str = "hello",
    rng: random.Random | None = None,
    event_id: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    data = {
        "interaction_uuid": interaction_uuid or _id(rng),
        "session_id": session_id,
        "user_slug": user_slug,
        "user_input": user_input,
        **fields,
    }
    return envelope("chat.turn.recorded", data, at=at, event_id=event_id, rng=rng)


def _ref(t: dict[str, Any], session_id: str | None) -> dict[str, Any]:
    return {"interaction_uuid": t["data"]["interaction_uuid"], "session_id": session_id or t["data"]["session_id"]}


def feedback(
    t: dict[str, Any],
    score: int,
    category: str | None = None,
    *,
    at: datetime = BASE_TIME,
    session_id: str | None = None,
    rng: random.Random | None = None,
    **fields: Any,
) -> dict[str, Any]:
    data = {**_ref(t, session_id), "score": score, "category": category, **fields}
    return envelope("chat.feedback.submitted", data, at=at, rng=rng)


def click(
    t: dict[str, Any],
    offering_uuid: str | None = None,
    *,
    at: datetime = BASE_TIME,
    session_id: str | None = None,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    offering = offering_uuid or t["data"]["offering_uuids"][0]
    return envelope("chat.offering.clicked", {**_ref(t, session_id), "offering_uuid": offering}, at=at, rng=rng)


def review(
    t: dict[str, Any],
    resolution_score: int = 4,
    *,
    at: datetime = BASE_TIME,
    session_id: str | None = None,
    intent_category: str = "find_service",
    hallucination_detected: bool = False,
    rng: random.Random | None = None,
    **fields: Any,
) -> dict[str, Any]:
    data = {
        **_ref(t, session_id),
        "resolution_score": resolution_score,
        "intent_category": intent_category,
        "hallucination_detected": hallucination_detected,
        **fields,
    }
    return envelope("chat.session.reviewed", data, at=at, rng=rng)


def usage(
    input_tokens: int,
    output_tokens: int,
    *,
    at: datetime = BASE_TIME,
    source: str = "",
    rng: random.Random | None = None,
) -> dict[str, Any]:
    data = {"input_tokens": input_tokens, "output_tokens": output_tokens, "source": source}
    return envelope("assistant.usage.recorded", data, at=at, rng=rng)


def erasure(
    *,
    user_slug: str | None = None,
    session_id: str | None = None,
    reason: str | None = None,
    at: datetime = BASE_TIME,
    rng: random.Random | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A `privacy.erasure.requested` (any combination of keys, so that tests can build invalid ones)."""
    data = {
        k: v for k, v in (("user_slug", user_slug), ("session_id", session_id), ("reason", reason)) if v is not None
    }
    return envelope("privacy.erasure.requested", {**data, **fields}, at=at, rng=rng)


def encode(event: dict[str, Any] | bytes) -> bytes:
    if isinstance(event, bytes):
        return event
    try:
        return orjson.dumps(event)
    except TypeError:  # integers beyond 64 bits, which JSON allows
        return json.dumps(event, separators=(",", ":")).encode()


def key_of(event: dict[str, Any] | bytes) -> bytes | None:
    """The session, as the publisher keys events; an erasure of a user is keyed by the user."""
    if isinstance(event, dict) and isinstance(event.get("data"), dict):
        session = event["data"].get("session_id")
        if isinstance(session, str):
            return session.encode()
        slug = event["data"].get("user_slug")
        if event.get("type") == "privacy.erasure.requested" and isinstance(slug, str):
            return slug.encode()
    return None


def to_records(
    events: Iterable[dict[str, Any] | bytes], *, topic: str = "chat.events", partition: int = 0, start: int = 0
) -> list[Record]:
    """Events as consecutive records of one partition (bytes are taken as a raw, possibly broken, value)."""
    return [
        Record(topic, partition, start + i, key_of(e), encode(e), 1_764_000_000_000 + i) for i, e in enumerate(events)
    ]


def stream(count: int, *, seed: int = 7, sessions: int = 200, start: datetime = BASE_TIME) -> Iterator[dict[str, Any]]:
    """A plausible mixed stream of about `count` events over a few days: turns with offerings, feedback,
    clicks, reviews and usage, plus some duplicates and bad events, each session in its own order."""
    rng = random.Random(seed)
    offerings = [_id(rng) for _ in range(50)]
    slugs = ["", *(f"{rng.getrandbits(256):064x}" for _ in range(max(1, sessions // 4)))]
    open_sessions: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    made = 0
    at = start
    while made < count:
        at += timedelta(seconds=rng.randint(1, 40))
        if len(open_sessions) < sessions:
            open_sessions[f"sess-{rng.getrandbits(48):012x}"] = (rng.choice(slugs), [])
        session_id = rng.choice(list(open_sessions))
        slug, turns = open_sessions[session_id]
        roll = rng.random()
        if roll < 0.5 or not turns:
            blocks: list[Any] = [{"type": "text", "text": f"answer {made}"}]
            if rng.random() < 0.1:
                blocks.append({"type": "ask_user", "question": "which cloud?"})
            severity = rng.choice(["none", "none", "none", "", "low", "medium", "high", "critical"])
            event = turn(
                session_id,
                at=at,
                user_slug=slug,
                user_input=f"question {made}",
                rng=rng,
                assistant_blocks=blocks,
                offering_uuids=rng.sample(offerings, rng.randint(0, 3)),
                is_flagged=severity not in ("none", ""),
                severity=severity,
                action_taken=rng.choice(["", "", "allow", "warn", "redact", "block"]),
                input_tokens=rng.randint(0, 900),
                output_tokens=rng.randint(0, 900),
                ip_address=f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            )
            turns.append(event)
        elif roll < 0.62:
            score = rng.choice([1, -1])
            event = feedback(rng.choice(turns), score, None if score == 1 else "other", at=at, rng=rng, comment="c")
        elif roll < 0.75:
            t = rng.choice(turns)
            event = click(t, at=at, rng=rng) if t["data"]["offering_uuids"] else click(t, _id(rng), at=at, rng=rng)
        elif roll < 0.82:
            event = review(turns[-1], rng.randint(1, 5), at=at, rng=rng, hallucination_detected=rng.random() < 0.2)
            del open_sessions[session_id]
        elif roll < 0.9:
            event = usage(rng.randint(0, 500), rng.randint(0, 500), at=at, rng=rng, source="authenticated_chat")
        elif roll < 0.95:
            yield_dup = rng.choice(turns)
            event = yield_dup  # a producer retry: same event_id again
        elif roll < 0.97:
            event = feedback(rng.choice(turns), 1, at=at, rng=rng, session_id="another-session")
        else:
            event = {**turn(session_id, at=at, rng=rng, user_slug=slug), "version": 99}
        made += 1
        yield event
