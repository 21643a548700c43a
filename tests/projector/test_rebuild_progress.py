"""The rebuild's progress (`projector.rebuild.Progress`), what `rebuild` and `GET /api/admin/rebuild/` show:
its rate and time left follow what is folded now, on a clock the test moves."""

from __future__ import annotations

import types

import pytest

import projector.rebuild
from projector.rebuild import Progress


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    # Only this module's clock: other threads keep the real one.
    monkeypatch.setattr(projector.rebuild, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


def test_the_rate_and_the_time_left_follow_the_folding(clock: list[float]) -> None:
    progress = Progress(total=1_000_000)
    for _ in range(5):  # 50,000 records a second
        clock[0] += 1.0
        progress.advance(50_000)
    assert progress.rate == pytest.approx(50_000, rel=0.01)
    assert progress.seconds_left == pytest.approx(750_000 / 50_000, rel=0.01)


def test_while_nothing_is_folded_the_rate_falls_and_the_time_left_grows(clock: list[float]) -> None:
    # A broker gone: no batch for a minute. The display must not keep the last rate and time left.
    progress = Progress(total=1_000_000)
    for _ in range(5):
        clock[0] += 1.0
        progress.advance(50_000)
    before = progress.seconds_left
    clock[0] += 60.0
    assert progress.rate < 5_000
    assert progress.seconds_left is not None and before is not None and progress.seconds_left > 10 * before
    for _ in range(12):  # folding again: the old samples leave the window
        clock[0] += 1.0
        progress.advance(40_000)
    assert progress.rate == pytest.approx(40_000, rel=0.15)
