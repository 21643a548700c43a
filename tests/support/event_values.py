"""Hypothesis strategies for raw event values: valid events of every type, events breaking one rule of
the contract or several, other spellings of valid values, and garbage bytes. The differential tests of
the faster parsers (tests/projector/test_sqlprepare.py, tests/schemas/test_fastparse.py) hold them to the
Pydantic models with these.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from projector.prepare import PreparedBatch, prepare
from projector.records import Record
from schemas.events import (
    ERASURE_REQUESTED,
    FEEDBACK_SUBMITTED,
    OFFERING_CLICKED,
    SESSION_REVIEWED,
    TURN_RECORDED,
    USAGE_RECORDED,
)
from schemas.registry import DEFAULT_REGISTRY

# -- values ----------------------------------------------------------------------------------------


def _spell_uuid(n: int, style: int) -> str:
    # Mostly the canonical form; the others are valid too, and Pydantic stores them canonical.
    value = uuid.UUID(int=n)
    return [str(value), str(value), str(value), str(value).upper(), value.hex, f"{{{value}}}", value.urn][style]


uuids = st.builds(_spell_uuid, st.integers(0, 2**128 - 1), st.integers(0, 6))
texts = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(["", "plain", "a\nb", 'q"uote', "é👍🏽"])
short_ids = st.text("abcdef0123456789-", min_size=1, max_size=12)
moments = st.datetimes(datetime(1995, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC))


def _stamp(at: datetime, offset_minutes: int, style: int) -> str:
    local = at.astimezone(UTC) + timedelta(minutes=offset_minutes)
    base = local.replace(tzinfo=None).isoformat()
    if offset_minutes == 0 and style == 0:
        return base + "Z"
    sign = "+" if offset_minutes >= 0 else "-"
    h, m = divmod(abs(offset_minutes), 60)
    return f"{base}{sign}{h:02d}:{m:02d}"


def _respell(stamp: str, style: int) -> str:
    # Other spellings Pydantic takes (or refuses) that the SQL path must leave to it.
    return [stamp, stamp, stamp, stamp.replace("T", " "), stamp.lower(), stamp.replace("Z", "+00:00"), stamp[:10]][
        style
    ]


timestamps = st.builds(
    _respell,
    st.builds(_stamp, moments, st.sampled_from([0, 0, 60, -300, 330, 840, -720]), st.integers(0, 1)),
    st.integers(0, 6),
)
json_leaves = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True) | texts
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "key", "type", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)
blocks = st.lists(
    st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, texts),
        st.builds(lambda k, c: {"key": k, "content": c}, st.sampled_from(["markdown", "code", "mermaid", "x"]), texts),
        st.just({"type": "ask_user", "question": "which?"}),
        st.just({"tool": {"name": "ask_user"}}),
        st.just({"key": "tool", "result": [{"key": "ask_user_form"}]}),
        json_values,
    ),
    max_size=4,
)


def _turn_data(draw: st.DrawFn) -> dict[str, Any]:
    offerings = draw(st.lists(uuids, max_size=3))
    data: dict[str, Any] = {
        "interaction_uuid": draw(uuids),
        "session_id": draw(short_ids),
        "user_slug": draw(st.sampled_from(["", "a" * 64, "slug-1"])),
        "user_input": draw(texts | st.just("long " * 450)),
    }
    optional = {
        "ip_address": st.sampled_from([None, "10.0.0.1", "2001:db8::1", "192.168.001.1"]),
        "assistant_blocks": blocks,
        "offering_uuids": st.just(offerings),
        "result_count": st.integers(0, 5) | st.none(),
        "is_flagged": st.booleans(),
        "severity": st.sampled_from(["none", "low", "medium", "high", "critical", ""]),
        "injection_categories": st.lists(texts, max_size=2),
        "pii_categories": st.lists(st.sampled_from(["email", "phone"]), max_size=2),
        "action_taken": st.sampled_from(["", "allow", "flag", "warn", "redact", "block"]),
        "warning": texts,
        "input_tokens": st.integers(0, 10**6),
        "output_tokens": st.integers(0, 10**6),
        "last_active_at": timestamps | st.none(),
        "model": st.sampled_from(["", "gpt-x", "m" * 150]),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            data[name] = draw(strategy)
    return data


def _feedback_data(draw: st.DrawFn) -> dict[str, Any]:
    score = draw(st.sampled_from([1, -1]))
    data: dict[str, Any] = {"interaction_uuid": draw(uuids), "session_id": draw(short_ids), "score": score}
    if score == -1:
        data["category"] = draw(
            st.sampled_from(["inaccurate", "incomplete", "misunderstood", "slow_or_failed", "other"])
        )
    elif draw(st.booleans()):
        data["category"] = None
    if draw(st.booleans()):
        data["comment"] = draw(texts)
    if draw(st.booleans()):
        data["ip_address"] = draw(st.sampled_from([None, "10.1.2.3", "::1"]))
    return data


def _click_data(draw: st.DrawFn) -> dict[str, Any]:
    return {"interaction_uuid": draw(uuids), "session_id": draw(short_ids), "offering_uuid": draw(uuids)}


def _review_data(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {
        "session_id": draw(short_ids),
        "interaction_uuid": draw(uuids),
        "resolution_score": draw(st.integers(1, 5)),
        "intent_category": draw(st.sampled_from(["", "pricing", "how-to_x", "a" * 32])),
        "hallucination_detected": draw(st.booleans()),
    }
    for name in ("hallucination_details", "summary", "judge_model"):
        if draw(st.booleans()):
            data[name] = draw(texts)
    for name in ("judge_input_tokens", "judge_output_tokens"):
        if draw(st.booleans()):
            data[name] = draw(st.integers(0, 10**9))
    return data


def _usage_data(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {"input_tokens": draw(st.integers(0, 10**9)), "output_tokens": draw(st.integers(0, 10**9))}
    if draw(st.booleans()):
        data["source"] = draw(texts)
    return data


def _erasure_data(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(["user_slug", "session_id"]))
    data: dict[str, Any] = {key: draw(short_ids)}
    if draw(st.booleans()):
        data["session_id" if key == "user_slug" else "user_slug"] = None
    if draw(st.booleans()):
        data["reason"] = draw(texts)
    return data


_DATA: dict[str, Callable[[st.DrawFn], dict[str, Any]]] = {
    TURN_RECORDED: _turn_data,
    FEEDBACK_SUBMITTED: _feedback_data,
    OFFERING_CLICKED: _click_data,
    SESSION_REVIEWED: _review_data,
    USAGE_RECORDED: _usage_data,
    ERASURE_REQUESTED: _erasure_data,
}

# What a broken or unusual field may hold instead: wrong types, out-of-range numbers, other spellings.
_ODD = [
    None,
    "",
    "x" * 70,
    "y" * 501,
    -1,
    0,
    1,
    2,
    6,
    2**31,
    2**63,
    2**64 + 1,
    1.0,
    1.5,
    True,
    "true",
    "1",
    [],
    {},
    ["not-a-uuid"],
    [1],
    "not-a-uuid",
    "6F1C0D5E-3B0A-4C7E-9A51-0F2D8E4B7A10",
    "6f1c0d5e3b0a4c7e9a510f2d8e4b7a10",
    "2026-11-26T09:15:02",
    "2026-11-26 09:15:02Z",
    "2026-02-30T09:15:02Z",
    "2026-11-26T09:15:02.1234567Z",
    "2026-11-26T09:15:02+05:30",
    "2026-11-26t09:15:02z",
    "1.2.3.4",
    "01.2.3.4",
    "::ffff:1.2.3.4",
    "bad",
    "HIGH",
    "abc\n",
    "a b",
    "chat.turn.deleted",
]


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    type_ = draw(st.sampled_from(list(_DATA)))
    return {
        "event_id": draw(uuids),
        "type": type_,
        "version": 1,
        "occurred_at": draw(timestamps),
        "data": _DATA[type_](draw),
    }


@st.composite
def broken(draw: st.DrawFn) -> dict[str, Any]:
    """An event with one or several fields (envelope or data) replaced, removed, or added."""
    event = draw(events())
    for _ in range(draw(st.integers(1, 3))):
        inside = draw(st.booleans()) and isinstance(event.get("data"), dict)
        target = event["data"] if inside else event
        names = sorted(target) or ["extra"]
        name = draw(st.sampled_from([*names, "extra"]))
        action = draw(st.sampled_from(["replace", "replace", "remove"]))
        if action == "remove":
            target.pop(name, None)
        else:
            target[name] = copy.deepcopy(draw(st.sampled_from(_ODD)))  # never the shared `{}` itself
    return event


def _encode(draw: st.DrawFn, event: dict[str, Any]) -> bytes:
    """One of several spellings of the same JSON, or a textual mutation of it."""
    style = draw(st.sampled_from(range(10)))
    if style <= 4:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    elif style == 5:
        text = json.dumps(event, indent=1, ensure_ascii=True)
    elif style == 6:
        text = json.dumps(event, separators=(", ", ": "), ensure_ascii=True) + "\n"
    elif style == 7:  # a key twice: which one counts differs between parsers
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        name = draw(st.sampled_from(["type", "event_id", "session_id", "score", "input_tokens", "version"]))
        text = text.replace(f'"{name}":', f'"{name}":"dup","{name}":', 1)
    elif style == 8:  # a trailing comma, or a cut
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        text = text[:-1] + ",}" if draw(st.booleans()) else text[: draw(st.integers(0, max(0, len(text) - 1)))]
    else:
        return draw(st.binary(max_size=40) | st.sampled_from([b"", b"null", b"[]", b"{}", b"\xff\xfe{}", b'{"a":1}{}']))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def values(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(range(20)))
    if kind == 0:
        return None
    event = draw(broken() if kind <= 7 else events())
    if kind == 19 and isinstance(event.get("data"), dict):
        event["version"] = draw(st.sampled_from([0, 2, -1]))
    return _encode(draw, event)


# -- batches of them ------------------------------------------------------------------------------


def records_of(raw: list[bytes | None]) -> list[Record]:
    """Records of a topic `t` holding `raw`, spread over 3 partitions, every other one with a key."""
    return [Record("t", i % 3, i, b"k" if i % 2 else None, v, 1_700_000_000_000 + i) for i, v in enumerate(raw)]


def assert_same_batches(old: PreparedBatch, new: PreparedBatch) -> None:
    """The same events, rows, rejections and records, field by field."""
    assert [tuple(e) for e in new.events] == [tuple(e) for e in old.events]
    assert new.rejections == old.rejections
    assert new.turns.schema == old.turns.schema
    assert new.turns.to_pylist() == old.turns.to_pylist()
    for name in ("topics", "partitions", "offsets", "keys", "values", "timestamps"):
        assert getattr(new, name) == getattr(old, name)


def prepared_by_models(records: list[Record]) -> PreparedBatch:
    """The reference of the faster parsers' tests: every value through the Pydantic models (a registry
    given to `prepare` skips the fast parse)."""
    return prepare(records, DEFAULT_REGISTRY)
