"""The ranges that bound a conversations refresh's read of `created` (projector/conversations.py),
`keysets.ranges`, cover every span they are made of, whatever their number and order. (The duplicate
check's ranges of event ids, `keysets.id_ranges`, split at the same largest gaps:
tests/projector/test_event_id_ranges.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from projector.keysets import MAX_RANGES, ranges

T0 = datetime(2026, 11, 1)


def _span(start_s: int, length_s: int) -> tuple[datetime, datetime]:
    return T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=start_s + length_s)


@given(st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 10**4)), min_size=1, max_size=60))
def test_every_span_lies_within_one_range_and_the_ranges_are_few_and_apart(raw: list[tuple[int, int]]) -> None:
    spans = [_span(start, length) for start, length in raw]
    covering = ranges(spans)
    assert 1 <= len(covering) <= MAX_RANGES
    for first, last in spans:
        assert any(low <= first and last <= high for low, high in covering)
    for (_, high), (low, _) in zip(covering, covering[1:], strict=False):
        assert high < low  # sorted and disjoint: no turn is read twice
    # Each range starts at some span's first turn and ends at some span's last: no wider than needed.
    assert {low for low, _ in covering} <= {first for first, _ in spans}
    assert {high for _, high in covering} <= {last for _, last in spans}


def test_distant_periods_stay_apart_and_the_closest_merge_first() -> None:
    spans = [_span(0, 10), _span(5, 20), _span(1000, 10), _span(100_000, 10)]
    assert ranges(spans) == [_span(0, 25), _span(1000, 10), _span(100_000, 10)]
    assert ranges(spans, limit=2) == [_span(0, 1010), _span(100_000, 10)]
    assert ranges(spans, limit=1) == [_span(0, 100_010)]
