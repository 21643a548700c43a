"""The API benchmark's fixed-rate load: requests must be spread evenly, not sent in bursts."""

from __future__ import annotations

from itertools import islice

from bench.load import fixed_rate_schedules


def test_fixed_rate_requests_are_due_one_interval_apart_across_all_connections() -> None:
    schedules = fixed_rate_schedules(100.0, rate=50.0, connections=8)
    due = sorted(t for schedule in schedules for t in islice(schedule, 5))
    assert len(due) == 40
    gaps = [b - a for a, b in zip(due, due[1:], strict=False)]
    # 50 requests/s: one request every 20 ms, never two at the same moment on different connections.
    assert all(abs(gap - 0.02) < 1e-9 for gap in gaps)
    assert abs(due[0] - 100.02) < 1e-9


def test_each_connection_waits_for_its_turn_in_the_sequence() -> None:
    schedules = fixed_rate_schedules(0.0, rate=10.0, connections=4)
    firsts = [next(schedule) for schedule in schedules]
    seconds = [next(schedule) for schedule in schedules]
    assert all(abs(first - expected) < 1e-9 for first, expected in zip(firsts, [0.1, 0.2, 0.3, 0.4], strict=True))
    assert all(abs((b - a) - 0.4) < 1e-9 for a, b in zip(firsts, seconds, strict=True))
