"""The fast parse (schemas/fastparse.py) against the Pydantic models it is generated from.

Every value the fast parse claims must be one the models accept, with the same fields and values; what
it does not claim goes to the models, so `prepare` must give the same rows, rejections and dead-letter
details either way. Generated valid events, events breaking one rule or several, respelled values and
garbage bytes (tests/support/event_values.py), then the spellings where two JSON parsers can differ.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, field_validator

from ingest.demo import demo_events
from projector.prepare import prepare
from schemas import fastparse
from schemas.events import TURN_RECORDED
from schemas.registry import Rejection, parse_events
from tests.support.event_values import assert_same_batches, prepared_by_models, records_of, values


def plain(value: Any) -> Any:
    """A model or a struct as nested dicts of what a reader of its fields gets (UUIDs as their text)."""
    if isinstance(value, BaseModel):
        return {name: plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, msgspec.Struct):
        fields = {name: plain(getattr(value, name)) for name in value.__struct_fields__}
        if hasattr(value, "type"):
            fields["type"] = value.type
        return fields
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(), value.tzinfo
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def assert_claims_only_what_the_models_accept(value: bytes | None) -> bool:
    fast = fastparse.parse_one(value)
    if fast is None:
        return False
    (model,) = parse_events([value])
    assert not isinstance(model, Rejection), (value, model)
    assert plain(fast) == plain(model)
    return True


@given(st.lists(values(), min_size=40, max_size=120))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_the_fast_parse_gives_the_models_events_and_prepare_the_same_rows(raw: list[bytes | None]) -> None:
    for value in raw:
        assert_claims_only_what_the_models_accept(value)
    records = records_of(raw)
    assert_same_batches(prepared_by_models(records), prepare(records))


def test_the_fast_parse_claims_the_ordinary_events(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without this, a fast parse that claimed nothing would pass every comparison here.
    raw = [v for _, v in demo_events(3000, seed=9, bad_share=0.02)]
    claimed = sum(assert_claims_only_what_the_models_accept(v) for v in raw)
    assert claimed > 2800
    records = records_of(raw)
    assert_same_batches(prepared_by_models(records), prepare(records))


_TURN = {
    "event_id": "6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a10",
    "type": TURN_RECORDED,
    "version": 1,
    "occurred_at": "2026-11-26T09:15:02.123456Z",
    "data": {
        "interaction_uuid": "6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a11",
        "session_id": "s1",
        "user_slug": "v1",
        "user_input": "hello",
        "ip_address": "10.0.0.1",
        "assistant_blocks": [{"type": "text", "text": "hi"}],
        "offering_uuids": ["6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a12"],
    },
}


def _turn(**changes: Any) -> bytes:
    event = json.loads(json.dumps(_TURN))
    for path, value in changes.items():
        *parents, name = path.split("__")
        target = event
        for parent in parents:
            target = target[parent]
        target[name] = value
    return json.dumps(event, separators=(",", ":")).encode()


_FEEDBACK = {
    **{k: _TURN[k] for k in ("event_id", "version", "occurred_at")},
    "type": "chat.feedback.submitted",
    "data": {"interaction_uuid": "6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a11", "session_id": "s1", "score": 1},
}


def _feedback(**data: Any) -> bytes:
    return json.dumps({**_FEEDBACK, "data": {**_FEEDBACK["data"], **data}}).encode()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "claimed"),
    [
        (_turn(), True),
        (_turn(occurred_at="2026-11-26T09:15:02+05:30"), True),
        (_turn(data__last_active_at="2026-11-26T23:59:59.5-08:00"), True),
        (_turn(data__ip_address="2001:DB8:0:0::1"), True),  # in ipaddress' normal form, as the model keeps it
        (_turn(data__ip_address="::ffff:1.2.3.4"), True),
        (_turn(data__severity=""), True),  # read as "none"
        (_turn(data__user_input="x" * 2500), True),  # cut to USER_INPUT_MAX
        (_turn(data__result_count=None), True),  # defaults to the offerings' number
        (_turn(data__extra={"unknown": [1, 2]}), True),
        (_turn(data__assistant_blocks=_nested(120)), True),
        (_turn(data__assistant_blocks=_nested(300)), False),  # Pydantic's parser refuses the nesting
        (_turn(data__extra=_nested(300)), False),
        (_turn(occurred_at="2026-11-26T09:15:02.1234567Z"), False),  # msgspec rounds, Pydantic truncates
        (_turn(occurred_at="2026-11-26t09:15:02z"), False),
        (_turn(occurred_at="2026-11-26 09:15:02Z"), False),
        (_turn(occurred_at="2026-02-30T09:15:02Z"), False),
        (_turn(occurred_at="0001-01-01T00:00:00+01:00"), False),  # no UTC instant: a dead letter
        (_turn(data__last_active_at="9999-12-31T23:59:59-01:00"), False),
        (_turn(occurred_at="2026-11-26T09:15:02Z\n"), False),
        (_turn(event_id="6F1C0D5E-3B0A-4C7E-9A51-0F2D8E4B7A10"), True),  # the same UUID either way
        (_turn(data__offering_uuids=["6f1c0d5e3b0a4c7e9a510f2d8e4b7a12"]), True),
        (_turn(event_id="{6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a10}"), False),  # Pydantic's spellings only
        (_turn(data__interaction_uuid="urn:uuid:6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a11"), False),
        (_turn(data__ip_address="10.0.0.01"), False),
        (_turn(version=2), False),
        (_turn(version=True), False),
        (_turn(data__is_flagged=1), False),
        (_turn(data__input_tokens=2**64), True),  # both take it; the shaping refuses it, either way
        (_turn(data__session_id=""), False),
        (_turn(data__model="m" * 151), False),
        (_turn(data__user_slug="😀" * 128), True),  # limits count characters, not bytes, in both
        (_turn(data__user_slug="😀" * 129), False),
        (_feedback(score=-1, category="other"), True),
        (_feedback(score=-1), False),
        (_feedback(score=1, category="other"), False),
        (_feedback(score=True), False),
        (_feedback(score=1.0), False),
        (_turn().replace(b'"version":1', b'"version":1,"extra":NaN'), False),
        (_turn().replace(b'"version":1', b'"version":1,"extra":1e999'), True),  # an unknown field: both skip it
        (_turn().replace(b'"hi"}]', b'"hi","n":-1e400}]'), False),  # kept: Pydantic reads -inf, msgspec refuses
        (_turn().replace(b'"type":', b'"type":"chat.usage.recorded","type":'), False),
        (
            _turn()
            .replace(b'"is_flagged"', b'"x"')
            .replace(b'"user_slug":"v1"', b'"user_slug":"v1","is_fl\\u0061gged":true'),
            True,
        ),
        (b'{"type":"privacy.erasure.requested"}', False),
        (b"\xff", False),
        (None, False),
    ],
)
def test_spellings_that_parsers_read_differently_go_the_same_way(value: bytes | None, claimed: bool) -> None:
    assert assert_claims_only_what_the_models_accept(value) is claimed
    records = records_of([value])
    assert_same_batches(prepared_by_models(records), prepare(records))


def test_a_validator_the_fast_parse_does_not_know_stops_the_import() -> None:
    class Stricter(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def _no_spaces(cls, value: str) -> str:
            return value

    with pytest.raises(TypeError, match="_no_spaces"):
        fastparse._validators(Stricter)


def test_the_address_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastparse, "_IP_CACHE", {})
    monkeypatch.setattr(fastparse, "IP_CACHE_MAX", 5)
    for n in range(1, 40):
        assert fastparse._ip(f"2001:db8::{n:x}") == f"2001:db8::{n:x}"
        assert len(fastparse._IP_CACHE) <= 5
    assert fastparse._ip("2001:DB8::1") == "2001:db8::1"
