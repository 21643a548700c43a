"""The user_slug pseudonym and the ingest side's completion of an event, without a broker."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime

import pytest

from ingest.envelope import complete, encode
from ingest.slug import _scrypt_hex, user_slug
from schemas.registry import parse_event


def reference_slug(ip: str, salt: str) -> str:
    return hashlib.scrypt(ip.encode(), salt=salt.encode(), n=2**14, r=8, p=1, dklen=32).hex()


def test_the_slug_is_hex_of_scrypt_with_the_contracts_parameters() -> None:
    slug = user_slug("203.0.113.7", "pepper")
    assert slug == reference_slug("203.0.113.7", "pepper")
    # What docs/events.md promises a reader of the data: 64 lower-case hex digits.
    assert re.fullmatch(r"[0-9a-f]{64}", slug)
    assert user_slug("203.0.113.8", "pepper") != slug and user_slug("203.0.113.7", "salt") != slug


def test_an_empty_salt_gives_an_empty_slug() -> None:
    assert user_slug("203.0.113.7", "") == ""


def test_one_ip_one_slug_per_salt_and_different_ips_or_salts_differ() -> None:
    assert user_slug("192.0.2.1", "a") == user_slug("192.0.2.1", "a")
    assert user_slug("192.0.2.1", "a") != user_slug("192.0.2.2", "a")
    assert user_slug("192.0.2.1", "a") != user_slug("192.0.2.1", "b")


def test_spellings_of_one_ipv6_address_are_one_user() -> None:
    canonical = user_slug("2001:db8::1", "s")
    assert user_slug("2001:DB8:0:0::1", "s") == canonical
    assert canonical == reference_slug("2001:db8::1", "s")


def test_something_that_is_not_an_ip_is_refused() -> None:
    with pytest.raises(ValueError):
        user_slug("not-an-ip", "s")


def test_slugs_are_cached_so_a_returning_visitor_costs_one_scrypt() -> None:
    ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    salt = uuid.uuid4().hex  # a salt no other test used, so the first call must miss
    before = _scrypt_hex.cache_info()
    first = user_slug(ip, salt)
    second = user_slug(ip, salt)
    after = _scrypt_hex.cache_info()
    assert first == second
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)


def test_complete_fills_ids_time_slug_and_cuts_input_without_touching_the_original() -> None:
    original = {
        "type": "chat.turn.recorded",
        "version": 1,
        "data": {
            "interaction_uuid": str(uuid.uuid4()),
            "session_id": "s",
            "ip_address": "192.0.2.9",
            "user_input": "x" * 2500,
        },
    }
    completed = complete(original, "salt")
    assert "event_id" not in original and "user_slug" not in original["data"]
    assert uuid.UUID(completed["event_id"]).version == 7
    assert datetime.fromisoformat(completed["occurred_at"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert completed["data"]["user_slug"] == reference_slug("192.0.2.9", "salt")
    assert completed["data"]["user_input"] == "x" * 2000
    event = parse_event(encode(completed))
    assert event.data.user_slug == completed["data"]["user_slug"]


def test_complete_keeps_what_was_given_and_leaves_bad_input_to_validation() -> None:
    given = {
        "event_id": "not-checked-here",
        "occurred_at": "whenever",
        "type": "chat.turn.recorded",
        "data": {"user_slug": "mine", "ip_address": "192.0.2.9"},
    }
    assert complete(given, "salt") == given
    no_ip = complete({"type": "chat.turn.recorded", "data": {"ip_address": "nope"}}, "salt")
    assert "user_slug" not in no_ip["data"]
    other_type = complete({"type": "chat.feedback.submitted", "data": {"ip_address": "192.0.2.9"}}, "salt")
    assert "user_slug" not in other_type["data"]
