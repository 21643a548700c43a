"""Building the JSON bytes of an event the way every publisher here does (library and HTTP endpoint).

The ingest side fills what a publisher may leave out (`event_id`, a UUIDv7: `new_event_id`; `occurred_at`), derives the
`user_slug` from an IP, cuts long `user_input`, and encodes with orjson. Validation is not done
here: the caller validates exactly the bytes this returns, with the registry the projector uses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from ingest.slug import user_slug
from schemas.events import ERASURE_REQUESTED, FEEDBACK_SUBMITTED, TURN_RECORDED, USER_INPUT_MAX

CURRENT_VERSION = 1

# UTC datetimes end in "Z" as in docs/events.md; UUID and datetime objects need no manual conversion.
_ORJSON_OPTIONS = orjson.OPT_UTC_Z


def encode(event: dict[str, Any]) -> bytes:
    """Compact JSON; raises TypeError for what JSON cannot hold (orjson also refuses ints beyond 64 bits)."""
    return orjson.dumps(event, option=_ORJSON_OPTIONS)


def new_event_id(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): the Unix time in milliseconds (now by default), then 74 random bits. Ids made
    later sort after, so the projector's duplicate check reads only the recent part of the ids it has
    accepted (projector/keysets.py, `id_ranges`) instead of all of them."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    random = int.from_bytes(os.urandom(10))
    return str(uuid.UUID(int=uuid7_int(ms, random)))


def uuid7_int(unix_ms: int, random: int) -> int:
    """The 128 bits of a UUIDv7 with this time and these random bits (the low 74 of `random` are used)."""
    rand_a, rand_b = (random >> 62) & 0xFFF, random & (2**62 - 1)
    return (unix_ms & (2**48 - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# What `complete(..., derive=False)` puts where the scrypt slug will go: the same shape as a real one
# (64 hex digits, or "" without a salt), so that validation judges the event as it will be sent.
_STAND_IN_SLUG = "0" * 64


def complete(event: dict[str, Any], salt: str, *, derive: bool = True, drop_ip: bool = False) -> dict[str, Any]:
    """A copy of `event` with the ingest side's defaults filled in; never raises on bad input (the
    validation that follows reports it, field by field). `drop_ip` (CHAT_ANALYTICS_IP_POLICY=drop):
    the slug is derived from the IP first, then the IP is not published. With `derive=False` the user
    slug of a turn is a stand-in of the same shape, to be replaced by `derive_slug` once the batch is
    valid."""
    out = dict(event)
    if "event_id" not in out:
        out["event_id"] = new_event_id()
    if "occurred_at" not in out:
        # Text, not a datetime, so that any JSON encoder can write the completed event.
        out["occurred_at"] = utc_now_text()
    data = out.get("data")
    if out.get("type") == TURN_RECORDED and isinstance(data, dict):
        out["data"] = data = complete_turn_data(data, salt, derive=derive)
    if (
        drop_ip
        and out.get("type") in (TURN_RECORDED, FEEDBACK_SUBMITTED)
        and isinstance(data, dict)
        and "ip_address" in data
    ):
        out["data"] = {k: v for k, v in data.items() if k != "ip_address"}
    return out


def derive_slug(original: dict[str, Any], draft: dict[str, Any], salt: str) -> dict[str, Any]:
    """`draft` (`original` completed with `derive=False`) with the real user slug in place of the stand-in."""
    data = original.get("data")
    if original.get("type") != TURN_RECORDED or not isinstance(data, dict) or data.get("user_slug") is not None:
        return draft
    ip = data.get("ip_address")
    if not isinstance(ip, str):
        return draft
    return {**draft, "data": {**draft["data"], "user_slug": user_slug(ip, salt)}}


def complete_turn_data(data: dict[str, Any], salt: str, *, derive: bool = True) -> dict[str, Any]:
    out = dict(data)
    ip = out.get("ip_address")
    if out.get("user_slug") is None and isinstance(ip, str):
        # Not an IP address: leave the slug missing, validation then names data.ip_address.
        with contextlib.suppress(ValueError):
            if derive:
                out["user_slug"] = user_slug(ip, salt)
            else:
                ipaddress.ip_address(ip)
                out["user_slug"] = _STAND_IN_SLUG if salt else ""
    text = out.get("user_input")
    if isinstance(text, str) and len(text) > USER_INPUT_MAX:
        out["user_input"] = text[:USER_INPUT_MAX]
    return out


def key_of(event: BaseModel) -> bytes:
    """The Kafka key: the session, so one session's events stay in order on one partition; an erasure
    of a user (no session) is keyed by the user."""
    data = getattr(event, "data", None)
    session_id = getattr(data, "session_id", None)
    if isinstance(session_id, str):
        return session_id.encode()
    user_slug = getattr(data, "user_slug", None)
    if getattr(event, "type", None) == ERASURE_REQUESTED and isinstance(user_slug, str):
        return user_slug.encode()
    return b""
