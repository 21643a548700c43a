"""A long transcript's rows are rendered by DuckDB (`api.interactions_sql.ROW_JSON`) rather than by
`to_body` in Python: the two must give the same JSON for every turn the fold can store, whatever its text
(quotes, backslashes, control characters, any Unicode), its feedback and review, or their absence."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import interactions_sql as sql
from projector.fold import apply_batch
from schemas.readmodel import connect
from tests.support.events import feedback, review, to_records, turn

# Any text a publisher may send: every code point but lone surrogates (not valid UTF-8, so not valid JSON).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
BLOCK = st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}) | st.fixed_dictionaries(
    {"key": st.just("markdown"), "content": TEXT, "n": st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)}
)


@st.composite
def turns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few turns of one session, each perhaps with a feedback and perhaps with a review."""
    events: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        t = turn(
            "s-" + draw(st.text('ab"\\\u00e9\u0007', min_size=1, max_size=5)),
            user_slug=draw(st.sampled_from(["", "alice", "b\u00f6b"])),
            user_input=draw(TEXT),
            assistant_blocks=draw(st.lists(BLOCK, max_size=3)),
            warning=draw(TEXT),
            ip_address=draw(st.none() | st.just("2001:db8::1")),
            model=draw(st.sampled_from(["", "gpt-x"])),
            input_tokens=draw(st.integers(0, 2**62)),
        )
        events.append(t)
        if draw(st.booleans()):
            score = draw(st.sampled_from([1, -1]))
            category = draw(st.sampled_from(["inaccurate", "other"])) if score == -1 else None
            events.append(feedback(t, score, category, comment=draw(TEXT)))
        if draw(st.booleans()):
            events.append(review(t, summary=draw(TEXT), hallucination_details=draw(TEXT), judge_model=draw(TEXT)))
    return events


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns())
def test_duckdb_renders_every_stored_turn_as_to_body_does(events: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        con = connect(Path(scratch) / "rm.duckdb")
        try:
            apply_batch(con, to_records(events))
            order = sql.order_by(["created"])
            built = [sql.to_body(r) for r in con.execute(sql.select_all("TRUE", order)).fetchall()]
            texts = con.execute(f"SELECT {sql.ROW_JSON} FROM interactions ORDER BY {order}").fetchall()
        finally:
            con.close()
    assert len(built) == sum(1 for e in events if e["type"] == "chat.turn.recorded"), "every turn is stored"
    assert [orjson.loads(text) for (text,) in texts] == orjson.loads(orjson.dumps(built))
