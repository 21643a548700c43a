"""`python -m bench --endpoint TEXT`: which API rows a run measures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench import api_latency
from bench.__main__ import parse_args

SAMPLES = api_latency.Samples(
    uuids=["u1"], sessions=["s1"], users=["alice"], interactions=10, many_uuids=["u1"], many_sessions=["s1"],
    heaviest_user="alice", heaviest_user_turns=3, user_turns={"alice": 3},
)  # fmt: skip


def _names(only: list[str] | None) -> list[str]:
    planned = api_latency.endpoints(SAMPLES, datetime(2026, 11, 30, tzinfo=UTC))
    return [e["name"] for e in api_latency.select(planned, only)]


def test_rows_are_chosen_by_a_part_of_their_name_case_insensitively() -> None:
    every = _names(None)
    assert "healthz (floor)" in every and "feedbacks list ?submitted_to (miss)" in every
    assert _names(["HEALTHZ"]) == ["healthz (floor)"]
    assert _names(["feedbacks list"]) == ["feedbacks list", "feedbacks list ?submitted_to (miss)"]
    chosen = _names(["retrieve", "budget"])
    assert chosen == [n for n in every if "retrieve" in n or "budget" in n] and len(chosen) == 3


def test_an_equals_sign_picks_the_row_of_that_whole_name_alone() -> None:
    assert len([n for n in _names(None) if "list" in n]) > 1
    assert _names(["=LIST"]) == ["list"]
    assert _names(["=list", "=retrieve", "kpi (miss)"]) == ["list", "retrieve", "kpi (miss)"]


def test_a_text_no_row_has_is_an_error_that_lists_the_rows() -> None:
    with pytest.raises(ValueError, match="healthz"):
        _names(["no such endpoint"])


def test_flags_of_the_api_run() -> None:
    args = parse_args(["--only", "api", "--endpoint", "kpi", "--live-rate", "0", "--no-closed-loop"])
    assert args.endpoint == ["kpi"] and args.live_rate == 0 and args.no_closed_loop
    with pytest.raises(SystemExit):
        parse_args(["--no-closed-loop", "--rate", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--live-rate", "-1"])
