"""`interactions.body`, each turn's JSON as the API serves it, is kept exact by the fold.

The reference is how the API rendered a turn before the column existed: its fields selected one by one
(`schemas.interaction_rows`) and serialised by orjson, the JSON-valued columns spliced in as stored. After
every batch of a stream with feedback (replaced), reviews, clicks, duplicates, events that come before
their turn, and an erasure, every stored body must equal that rendering byte for byte; Hypothesis then
tries awkward text (control characters, quotes, backslashes, any unicode, long text) and extreme numbers.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.models import Feedback, Interaction, field_names
from projector.fold import apply_batch
from schemas.interaction_rows import FEEDBACK_SQL, INTERACTION_SQL, JSON_FIELDS, _fast_value, json_value
from schemas.readmodel import connect
from tests.support.events import BASE_TIME, click, erasure, feedback, review, to_records, turn

INTERACTION_FIELDS, FEEDBACK_FIELDS = field_names(Interaction), field_names(Feedback)
_SELECT = ", ".join([*INTERACTION_SQL.values(), *FEEDBACK_SQL.values()])
_N = len(INTERACTION_FIELDS)


def reference_body(row: Sequence[Any]) -> bytes:
    """The row as the API rendered it from its columns: orjson over the selected values."""
    body = dict(zip(INTERACTION_FIELDS, row[:_N], strict=True))
    for name in JSON_FIELDS:
        body[name] = orjson.Fragment(body[name])
    body["feedback"] = dict(zip(FEEDBACK_FIELDS, row[_N:], strict=True)) if body["feedback"] else None
    return orjson.dumps(body)


def mismatches(con: duckdb.DuckDBPyConnection) -> list[tuple[bytes, bytes]]:
    """(stored, reference) for every turn whose stored body differs from the reference rendering."""
    rows = con.execute(f"SELECT body, {_SELECT} FROM interactions").fetchall()
    pairs = [(row[0].encode(), reference_body(row[1:])) for row in rows]
    return [(stored, expected) for stored, expected in pairs if stored != expected]


def turn_count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT count(*) FROM interactions").fetchone()
    assert row is not None
    return int(row[0])


AWKWARD = 'tab\there\nnew "quoted" back\\slash \\u001F \x00\x0b\x0e\x1a\x1f\x7f é 😀 \u2028 / \''


def story() -> list[dict[str, Any]]:
    """A session's life with every kind of change to its turns, in log order."""
    rng = random.Random(14)
    offers = [f"00000000-0000-4000-8000-00000000010{i}" for i in range(3)]
    a = turn("s1", at=BASE_TIME, user_slug="u1", user_input=AWKWARD, offering_uuids=offers, rng=rng,
             assistant_blocks=[{"type": "text", "text": AWKWARD, "score": 0.1}], warning=AWKWARD,
             ip_address="2001:db8::1", input_tokens=2**63 - 1, injection_categories=["x\x1fy"])  # fmt: skip
    b = turn("s1", at=BASE_TIME + timedelta(minutes=1), user_slug="u1", rng=rng, offering_uuids=offers[:1])
    c = turn("s2", at=BASE_TIME + timedelta(minutes=2), user_slug="u2", rng=rng, severity="high", is_flagged=True)
    d = turn("s3", at=BASE_TIME + timedelta(minutes=3), user_slug="u3", rng=rng)
    early = feedback(c, -1, "inaccurate", comment=AWKWARD, rng=rng)  # before its turn: it waits
    early_review = review(c, 2, summary="early\x1b", rng=rng)
    copy = dict(a)  # the same event again: skipped
    other = turn("s1", interaction_uuid=a["data"]["interaction_uuid"], rng=rng)  # a duplicate interaction
    return [
        early,
        early_review,
        a,
        feedback(a, 1, rng=rng),
        click(a, rng=rng),
        click(a, offers[2], rng=rng),
        copy,
        other,
        b,
        c,
        review(
            a,
            5,
            summary=AWKWARD,
            hallucination_details="\x0e",
            judge_model="m\x0f",
            rng=rng,
            hallucination_detected=True,
            judge_input_tokens=7,
            judge_output_tokens=2**62,
        ),  # fmt: skip
        feedback(a, -1, "other", comment="replaced", ip_address="192.0.2.7", rng=rng),
        feedback(b, 1, rng=rng),
        d,
        erasure(session_id="s3", at=BASE_TIME + timedelta(hours=1), rng=rng),
        click(b, rng=rng),
    ]


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_every_stored_body_equals_the_rendering_of_its_columns(tmp_path: Path, batch_size: int) -> None:
    con = connect(tmp_path / "rm.duckdb")
    records = to_records(story())
    for start in range(0, len(records), batch_size):
        apply_batch(con, records[start : start + batch_size])
        assert mismatches(con) == []
    # What the story meant to exercise did happen: c's early feedback and review reached it, a kept its
    # last feedback, a review and two clicks, and the erased session's turn is gone.
    assert turn_count(con) == 3
    bodies = [orjson.loads(b) for (b,) in con.execute("SELECT body FROM interactions ORDER BY created").fetchall()]
    first, second, third = bodies
    assert first["user_input"] == AWKWARD and first["click_count"] == 2
    assert first["feedback"]["score"] == -1 and first["feedback"]["comment"] == "replaced"
    assert first["feedback"]["llm_summary"] == AWKWARD and first["feedback"]["llm_resolution_score"] == 5
    assert second["session_id"] == "s1" and second["click_count"] == 1 and second["feedback"]["score"] == 1
    assert third["feedback"]["comment"] == AWKWARD and third["feedback"]["llm_summary"] == "early\x1b"


# -- Hypothesis: awkward strings and numbers ---------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60) | st.text(
    st.sampled_from("\x00\x01\x08\t\n\x0b\x0c\r\x0e\x0f\x1a\x1b\x1f\x7f\"\\/'u0F{}é😀\u2028"), max_size=40
)
LONG_TEXT = st.builds(lambda s, n: s * n, TEXT, st.integers(1, 200))
# Large, but not so large that the day's summed counters of the file this test fills overflow BIGINT (the
# extremes of a single value are in test_json_value_writes_what_orjson_writes).
TOKENS = st.integers(0, 2**50)
SLUG = st.from_regex(r"[a-z0-9_-]{1,32}", fullmatch=True)


@pytest.fixture(scope="module")
def rm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(tmp_path_factory.mktemp("body") / "rm.duckdb")
    yield con
    con.close()


OFFSET = [0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    user_input=LONG_TEXT,
    warning=TEXT,
    user_slug=TEXT.map(lambda s: s[:128]),
    session_id=TEXT.map(lambda s: (s or "s")[:64]),
    blocks=st.lists(st.dictionaries(TEXT, TEXT | st.integers() | st.floats(allow_nan=False)), max_size=3),
    categories=st.lists(TEXT, max_size=3),
    tokens=st.tuples(TOKENS, TOKENS, TOKENS, TOKENS),
    comment=TEXT,
    summary=LONG_TEXT,
    details=TEXT,
    model=TEXT,
    intent=SLUG,
    score=st.sampled_from([1, -1]),
    resolution=st.integers(1, 5),
    with_feedback=st.booleans(),
    with_review=st.booleans(),
)
def test_awkward_text_and_numbers_render_as_orjson_writes_them(
    rm: duckdb.DuckDBPyConnection,
    user_input: str,
    warning: str,
    user_slug: str,
    session_id: str,
    blocks: list[dict[str, Any]],
    categories: list[str],
    tokens: tuple[int, int, int, int],
    comment: str,
    summary: str,
    details: str,
    model: str,
    intent: str,
    score: int,
    resolution: int,
    with_feedback: bool,
    with_review: bool,
) -> None:
    t = turn(session_id, user_slug=user_slug, user_input=user_input, warning=warning, assistant_blocks=blocks,
             injection_categories=categories, pii_categories=categories[::-1], input_tokens=tokens[0],
             output_tokens=tokens[1])  # fmt: skip
    events = [t]
    if with_feedback:
        events.append(feedback(t, score, "other" if score == -1 else None, comment=comment))
    if with_review:
        events.append(review(t, resolution, intent_category=intent, hallucination_details=details,
                             summary=summary, judge_model=model, judge_input_tokens=tokens[2],
                             judge_output_tokens=tokens[3]))  # fmt: skip
    before = turn_count(rm)
    records = to_records(events, start=OFFSET[0])
    OFFSET[0] += len(records)
    # Two batches: the turn, then what changes it (a stored turn is rendered again, not only a new one).
    apply_batch(rm, records[:1])
    apply_batch(rm, records[1:])
    assert turn_count(rm) == before + 1, "the turn was dead-lettered: the example tested nothing"
    row = rm.execute(f"SELECT body, {_SELECT} FROM interactions WHERE uuid = ?", [t["data"]["interaction_uuid"]])
    stored, *columns = row.fetchone() or ()
    assert stored.encode() == reference_body(columns)
    assert orjson.loads(stored)["user_input"] == user_input[:2000]


VALUES = TEXT | LONG_TEXT | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.none()


@settings(max_examples=2000, deadline=None)
@given(value=VALUES)
def test_json_value_writes_what_orjson_writes(value: Any) -> None:
    (text,) = duckdb.execute(f"SELECT {json_value('v')} FROM (SELECT ? AS v)", [value]).fetchone() or ()
    assert text.encode() == orjson.dumps(value)


@settings(max_examples=2000, deadline=None)
@given(value=VALUES)
def test_to_json_differs_from_orjson_only_where_a_row_is_rendered_exactly(value: Any) -> None:
    # ROW_JSON takes DuckDB's to_json() for a row unless its text holds a `\u00` escape.
    (text,) = duckdb.execute(f"SELECT {_fast_value('v')} FROM (SELECT ? AS v)", [value]).fetchone() or ()
    assert text.encode() == orjson.dumps(value) or "\\u00" in text


def test_every_code_point_is_written_as_orjson_writes_it() -> None:
    # Every Unicode scalar value, 64 to a string between a letter and a backslash: the exact rendering
    # equals orjson's, and to_json() differs from it only with a `\u00` escape in its text.
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    strings = ["a" + "".join(map(chr, points[i : i + 64])) + "\\" for i in range(0, len(points), 64)]
    rows = duckdb.execute(
        f"SELECT {_fast_value('v')}, {json_value('v')} FROM (SELECT unnest(?::VARCHAR[]) AS v, "
        "generate_subscripts(?::VARCHAR[], 1) AS i) ORDER BY i",
        [strings, strings],
    ).fetchall()
    assert len(rows) == len(strings)
    for text, (fast, exact) in zip(strings, rows, strict=True):
        expected = orjson.dumps(text).decode()
        assert exact == expected
        assert fast == expected or "\\u00" in fast
