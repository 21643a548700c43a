"""The lag in seconds (projector.lag.LagClock): the file holds every record the topic had that long ago.
A clock the test moves by hand, and the end offsets and positions the projector would report."""

from __future__ import annotations

from projector.lag import MARK_EVERY_S, LagClock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_projector_that_folds_what_arrives_is_never_more_than_a_batch_behind() -> None:
    clock = Clock()
    lag = LagClock(clock)
    lag.observe({0: 10, 1: 4}, {0: 10, 1: 4})
    assert lag.seconds() == 0.0
    for step in range(100):  # a record every 0.1 s, each folded 0.25 s after it arrived
        clock.now += 0.1
        ends = {0: 11 + step, 1: 4}
        lag.observe(ends, {0: 10 + step, 1: 4})
        assert lag.seconds() <= 0.25 + MARK_EVERY_S, (step, lag.seconds())
        clock.now += 0.25
        lag.observe(ends, ends)
        assert lag.seconds() == 0.0


def test_under_steady_ingest_it_measures_how_old_the_missing_records_are_not_how_long_it_was_above_0() -> None:
    # The position never covers the newest end (records keep arriving), but always covers the end of 2 s ago.
    clock = Clock()
    lag = LagClock(clock)
    history: list[tuple[float, int]] = []
    for tick in range(600):  # a minute, 10 ticks a second, 100 records a second
        clock.now += 0.1
        end = 10 * (tick + 1)
        history.append((clock.now, end))
        folded = max([e for t, e in history if t <= clock.now - 2.0], default=0)
        lag.observe({0: end}, {0: folded})
    assert 2.0 <= lag.seconds() <= 2.0 + MARK_EVERY_S + 0.1, lag.seconds()


def test_a_stuck_projector_falls_behind_by_the_clock_and_recovers_at_once() -> None:
    clock = Clock()
    lag = LagClock(clock)
    lag.observe({0: 5}, {0: 5})
    for _ in range(1200):  # records arrive for two minutes; nothing is folded
        clock.now += 0.1
        lag.observe({0: 5 + int(clock.now - 1000)}, {0: 5})
    assert 119.0 <= lag.seconds() <= 120.1, lag.seconds()
    lag.observe({0: 125}, {0: 60})  # what had arrived 55 s in is folded now: the file is 65 s behind
    assert 64.5 - MARK_EVERY_S <= lag.seconds() <= 65.0, lag.seconds()
    lag.observe({0: 125}, {0: 125})
    assert lag.seconds() == 0.0


def test_behind_since_start_up_it_counts_from_when_it_first_knew_of_the_records() -> None:
    clock = Clock()
    lag = LagClock(clock)
    lag.observe({0: 1_000_000}, {0: 0})
    clock.now += 30
    assert lag.seconds() == 30.0
    many = 5000  # far more notes than kept: the answer errs late, never early
    for n in range(many):
        clock.now += MARK_EVERY_S
        lag.observe({0: 1_000_000 + n}, {0: n})
    assert lag.seconds() >= 30.0 + many * MARK_EVERY_S
