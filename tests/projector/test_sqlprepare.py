"""The set-wise prepare (projector/sqlprepare.py) against the Pydantic one (projector/prepare.py).

Generated batches of valid events, events breaking one rule or several, other spellings of valid
values, and garbage bytes go through both paths; both must accept the same events, give the same
rows, and the same dead-letter reason and detail. Each example is a batch of many values, so that
thousands of events cost a few dozen DuckDB statements.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import projector.sqlprepare
from ingest.demo import demo_events
from projector.prepare import PreparedBatch, prepare
from projector.records import Record
from projector.sqlprepare import prepare_columns, raw_table
from schemas.events import OFFERING_CLICKED as CLICK_TYPE
from tests.support.event_values import assert_same_batches, prepared_by_models, records_of, values

# -- the comparison --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    yield con
    con.close()


@given(st.lists(values(), min_size=40, max_size=120))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_both_paths_accept_the_same_events_with_the_same_rows_and_reasons(
    scratch: duckdb.DuckDBPyConnection, raw: list[bytes | None]
) -> None:
    records = records_of(raw)
    assert_same_batches(prepared_by_models(records), prepare_columns(scratch, raw_table(records)))


@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_the_ip_policy_applies_to_rows_shaped_in_sql(
    scratch: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    monkeypatch.setenv("CHAT_ANALYTICS_IP_POLICY", policy)
    records = records_of([v for _, v in demo_events(600, seed=5)])
    new = prepare_columns(scratch, raw_table(records))
    assert_same_batches(prepared_by_models(records), new)
    ips = {ip for ip in new.turns["ip_address"].to_pylist() if ip is not None}
    assert (not ips) if policy == "drop" else ips


def test_sql_claims_the_ordinary_events_and_leaves_only_the_unusual_to_pydantic(
    scratch: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without this, a path that claimed nothing would pass every comparison above.
    fallen_back: list[int] = []

    def counted(records: list[Record], registry: Any = None) -> PreparedBatch:
        fallen_back.append(len(records))
        return prepare(records, registry)

    monkeypatch.setattr(projector.sqlprepare, "prepare", counted)
    records = records_of([v for _, v in demo_events(3000, seed=9, bad_share=0.02)])
    batch = prepare_columns(scratch, raw_table(records))
    assert len(batch.events) + batch.turns.num_rows > 2800  # turns travel as the rows of `turns` only
    assert sum(fallen_back) < 300  # the bad ones, and a few unusual spellings (e.g. big exponents)


_CLICK = {
    "event_id": "6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a10",
    "type": CLICK_TYPE,
    "version": 1,
    "occurred_at": "2026-11-26T09:15:02Z",
    "data": {
        "interaction_uuid": "6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a11",
        "session_id": "s1",
        "offering_uuid": "6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a12",
    },
}
_CLICK_TEXT = json.dumps(_CLICK, separators=(",", ":"))


@pytest.mark.parametrize(
    "text",
    [
        _CLICK_TEXT,
        *(_CLICK_TEXT.replace(f'"{k}":', f'"{k}":"dup","{k}":', 1) for k in ("session_id", "offering_uuid", "type")),
        *(_CLICK_TEXT.replace(f'"{k}":', f'"{k}":"s2","{k}":', 1) for k in ("session_id",)),
        _CLICK_TEXT.replace('"data":{', '"data":{"extra":NaN,'),
        _CLICK_TEXT.replace('"version":1,', '"version":1,"extra":[1,],'),
        _CLICK_TEXT.replace('"s1"', '"s\\u0001"'),
        _CLICK_TEXT.replace('"s1"', '"s\\ud800"'),
        _CLICK_TEXT.replace('"s1"', '"\\u0073\\u0031"'),
        _CLICK_TEXT[:-1] + " }",
        _CLICK_TEXT.replace('"version":1', '"version":1.0'),
    ],
    ids=[
        "plain",
        "dup-session",
        "dup-offering",
        "dup-type",
        "dup-session-valid-first",
        "nan-in-unknown-field",
        "trailing-comma-in-unknown-field",
        "escaped-control",
        "lone-surrogate",
        "escaped-letters",
        "space-before-brace",
        "float-version",
    ],
)
def test_spellings_that_parsers_read_differently_go_the_same_way(scratch: duckdb.DuckDBPyConnection, text: str) -> None:
    # Duplicate keys (Pydantic keeps the last, DuckDB's paths the first), what DuckDB's reader takes
    # and Pydantic's does not, and escapes: each case on its own, so that chance does not decide.
    records = records_of([text.encode()])
    assert_same_batches(prepared_by_models(records), prepare_columns(scratch, raw_table(records)))
