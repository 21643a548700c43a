"""The feedbacks endpoints, served from `feedback_records`, against the same questions answered from the
wide `interactions` table (how they were served before the narrow table, and still are for a file older
than it): the same bytes, for filters, orderings and pages; and the kept records against a fresh copy
from the turns, after a fold with late, replaced and erased feedback and reviews.

The generated stream (tests/support/events.py) is reordered so that some feedback and reviews arrive
before their turn (they wait in `pending_events` and are applied when it comes), given categories and
comments, reviewed twice, and a few of its sessions are erased midway.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import QueryParams

from api import feedbacks_sql, queries
from api.interactions_sql import FEEDBACK_SELECT_LIST
from api.params import FEEDBACK_ORDERINGS, Pagination, parse_feedback_filters, parse_ordering
from projector import forget
from projector.fold import apply_batch
from schemas.events import FEEDBACK_CATEGORIES
from schemas.readmodel import FEEDBACK_RECORDS_VERSION, connect
from serving.handle import ReadModelHandle
from tests.support.api_data import AUTH, make_client
from tests.support.events import BASE_TIME, erasure, feedback, review, stream, to_records, turn
from tests.support.kept import kept_and_copied_records

FEEDBACKS = "/api/anonymous-chat-feedbacks/"

TURN, FEEDBACK, REVIEW = "chat.turn.recorded", "chat.feedback.submitted", "chat.session.reviewed"
# The file served from `feedback_records`, the same file served as an older one, the erased sessions,
# and the turns whose feedback or review arrived before them.
Folded = tuple[ReadModelHandle, ReadModelHandle, list[str], set[str]]


def generated() -> tuple[list[Any], list[str], set[str]]:
    """The events, the sessions erased among them, and the turns with a dependent that arrives early."""
    rng = random.Random(31)
    events: list[Any] = list(stream(3000, seed=12, sessions=80))
    turns = [e for e in events if isinstance(e, dict) and e.get("type") == TURN and e.get("version") == 1]
    extra: list[Any] = []
    for t in rng.sample(turns, 250):
        at = BASE_TIME + timedelta(days=rng.randint(0, 3), minutes=rng.randint(0, 600))
        if rng.random() < 0.6:
            score = rng.choice([1, -1])
            category = None if score == 1 and rng.random() < 0.5 else rng.choice(FEEDBACK_CATEGORIES)
            comment = rng.choice(["", "", "slow", "wrong answer"])
            extra.append(feedback(t, score, category, at=at, rng=rng, comment=comment))
        else:
            extra.append(review(t, rng.randint(1, 5), at=at, rng=rng, judge_model=rng.choice(["j1", "j2"])))
    for e in extra:
        events.insert(rng.randrange(len(events) + 1), e)
    # Some dependents move ahead of their turn: they wait, and their turn's arrival releases them.
    by_uuid = {t["data"]["interaction_uuid"]: t for t in turns}
    early: set[str] = set()
    for e in [e for e in events if isinstance(e, dict) and e.get("type") in (FEEDBACK, REVIEW)]:
        t = by_uuid.get(e["data"]["interaction_uuid"])
        if t is not None and rng.random() < 0.15:
            events.remove(e)
            events.insert(max(0, events.index(t) - rng.randint(1, 400)), e)
            early.add(e["data"]["interaction_uuid"])
    # Erasures of a few sessions with records, after their turns (the erasure covers them by time).
    recorded = sorted({e["data"]["session_id"] for e in extra if e["data"]["session_id"] in _sessions(turns)})
    erased = rng.sample(recorded, 4)
    for session in erased:
        at = BASE_TIME + timedelta(days=9)
        events.insert(rng.randrange(len(events) // 2, len(events)), erasure(session_id=session, at=at))
    return events, erased, early


def _sessions(turns: list[dict[str, Any]]) -> set[str]:
    return {t["data"]["session_id"] for t in turns}


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Folded]:
    path = tmp_path_factory.mktemp("feedback-records") / "rm.duckdb"
    con = connect(path)
    events, erased, early = generated()
    records = to_records(events)
    for i in range(0, len(records), 150):
        apply_batch(con, records[i : i + 150])
    narrow = ReadModelHandle(con, path)
    # The same file, answered as a file without `feedback_records` would be.
    wide = ReadModelHandle(con, path)
    wide.version = FEEDBACK_RECORDS_VERSION - 1
    yield narrow, wide, erased, early
    con.close()


@pytest.fixture(scope="module")
def clients(folded: Folded) -> Iterator[tuple[Any, Any]]:
    narrow, wide, _, _ = folded
    with make_client(narrow) as n, make_client(wide) as w:
        yield n, w


def test_the_data_has_what_the_cases_need(folded: Folded) -> None:
    cur = folded[0].cursor()
    ((records, scored, reviewed, both, commented, categories),) = cur.execute(
        "SELECT count(*), count(fb_score), count(llm_reviewed_at), count(*) FILTER (fb_score IS NOT NULL AND"
        " llm_reviewed_at IS NOT NULL), count(*) FILTER (fb_comment <> ''), count(DISTINCT fb_category)"
        " FROM feedback_records"
    ).fetchall()
    released = {str(u) for (u,) in cur.execute("SELECT uuid FROM feedback_records").fetchall()} & folded[3]
    ((waiting,),) = cur.execute("SELECT count(*) FROM pending_events").fetchall()
    cur.close()
    assert (
        records > 300
        and scored > 150
        and reviewed > 100
        and both > 20
        and commented > 50
        and categories == len(FEEDBACK_CATEGORIES)
    )
    # Dependents that waited for their turn were applied when it came.
    assert len(released) > 20 and waiting == 0


CASES: list[dict[str, str]] = [
    {},
    {"score": "1"},
    {"score": "-1", "has_comment": "true"},
    {"has_comment": "false"},
    {"category": "inaccurate"},
    {"category": "other", "score": "-1"},
    {"submitted_from": "2026-11-27"},
    {"submitted_from": "2026-11-27", "submitted_to": "2026-11-28"},
    {"submitted_to": "2026-11-26"},
]
ORDERINGS = [None, "submitted_at", "score", "-score", "llm_resolution_score", "-llm_resolution_score,submitted_at"]
PAGES = [{}, {"page_size": "7"}, {"page": "3", "page_size": "7"}, {"page": "2", "page_size": "100"}]


def _same_answer(clients: tuple[Any, Any], path: str, params: dict[str, str]) -> Any:
    narrow, wide = (c.get(path, params=params, headers=AUTH) for c in clients)
    assert narrow.status_code == wide.status_code
    assert narrow.content == wide.content
    for header in ("x-result-count", "content-type"):
        assert narrow.headers.get(header) == wide.headers.get(header)
    assert _links(narrow) == _links(wide)
    return narrow


def _links(response: Any) -> str:
    # The links carry the read position, whose version differs between the two handles on purpose.
    return "".join(part.split("min_position=")[0] for part in response.headers.get("link", "").split(","))


@pytest.mark.parametrize("params", CASES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "none")
@pytest.mark.parametrize("o", ORDERINGS, ids=lambda o: o or "default")
def test_the_list_is_what_the_wide_table_answers(
    clients: tuple[Any, Any], params: dict[str, str], o: str | None
) -> None:
    for page in PAGES:
        _same_answer(clients, FEEDBACKS, {**params, **page, **({"o": o} if o else {})})
    first = clients[0].get(FEEDBACKS, params={**params, **({"o": o} if o else {})}, headers=AUTH)
    assert int(first.headers["x-result-count"]) > (0 if params else 300)


def test_a_page_past_the_end_is_the_same_404(clients: tuple[Any, Any]) -> None:
    response = _same_answer(clients, FEEDBACKS, {"category": "inaccurate", "page": "500"})
    assert response.status_code == 404


def test_retrieve_is_what_the_wide_table_answers(clients: tuple[Any, Any], folded: Folded) -> None:
    cur = folded[0].cursor()
    uuids = [str(u) for (u,) in cur.execute("SELECT uuid FROM interactions ORDER BY uuid").fetchall()]
    cur.close()
    rng = random.Random(5)
    found = 0
    for uuid in rng.sample(uuids, 120):
        for params in ({}, {"score": "-1"}, {"has_comment": "true"}, {"submitted_from": "2026-11-27"}):
            found += _same_answer(clients, f"{FEEDBACKS}{uuid}/", params).status_code == 200
    assert found > 30
    assert _same_answer(clients, f"{FEEDBACKS}not-a-uuid/", {}).status_code == 404


def test_the_kept_records_are_the_turns_with_a_score_or_a_review(folded: Folded) -> None:
    kept, copied = kept_and_copied_records(folded[0].connection)
    assert len(kept) > 300 and kept == copied


def test_erased_sessions_left_no_record(folded: Folded) -> None:
    narrow, _, erased, _ = folded
    cur = narrow.cursor()
    ((left,),) = cur.execute(
        "SELECT count(*) FROM interactions WHERE session_id IN (SELECT unnest(?::VARCHAR[]))", [erased]
    ).fetchall()
    ((tombstones,),) = cur.execute("SELECT count(*) FROM erased_interactions").fetchall()
    cur.close()
    assert left == 0 and tombstones > 0


def test_an_erased_interaction_vanishes_from_the_records_and_stays_gone(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    handle = ReadModelHandle(con)
    kept_turn, erased_turn = turn("sess-keep"), turn("sess-gone", at=BASE_TIME + timedelta(minutes=1))
    events = [
        kept_turn,
        erased_turn,
        feedback(kept_turn, 1, at=BASE_TIME + timedelta(minutes=2)),
        feedback(erased_turn, -1, "inaccurate", at=BASE_TIME + timedelta(minutes=3), comment="it lied"),
        review(erased_turn, 2, at=BASE_TIME + timedelta(minutes=4)),
    ]
    apply_batch(con, to_records(events))
    gone = erased_turn["data"]["interaction_uuid"]
    with make_client(handle) as client:
        assert client.get(f"{FEEDBACKS}{gone}/", headers=AUTH).status_code == 200
        assert client.get(FEEDBACKS, headers=AUTH).headers["x-result-count"] == "2"

        later = [
            erasure(session_id="sess-gone", at=BASE_TIME + timedelta(hours=1)),
            # A review of the erased turn that arrives after the erasure: dropped, not a new record.
            review(erased_turn, 5, at=BASE_TIME + timedelta(hours=2)),
        ]
        apply_batch(con, to_records(later, start=len(events)))
        assert con.execute("SELECT count(*) FROM feedback_records WHERE uuid = ?", [gone]).fetchone() == (0,)
        assert client.get(f"{FEEDBACKS}{gone}/", headers=AUTH).status_code == 404
        body = client.get(FEEDBACKS, headers=AUTH)
        assert body.headers["x-result-count"] == "1"
        assert [r["interaction_uuid"] for r in body.json()] == [kept_turn["data"]["interaction_uuid"]]
    kept, copied = kept_and_copied_records(con)
    assert kept == copied and len(kept) == 1
    con.close()


def test_the_retention_purge_takes_the_records_of_the_turns_it_removes(tmp_path: Path) -> None:
    con = connect(tmp_path / "rm.duckdb")
    old, new = turn("sess-old"), turn("sess-new", at=BASE_TIME + timedelta(days=40))
    apply_batch(
        con,
        to_records([old, new, feedback(old, -1, "other"), review(new, 4, at=BASE_TIME + timedelta(days=40, hours=1))]),
    )
    assert con.execute("SELECT count(*) FROM feedback_records").fetchone() == (2,)
    forget.purge(con, 30, today=(BASE_TIME + timedelta(days=41)).date())
    rows = con.execute("SELECT uuid::VARCHAR FROM feedback_records").fetchall()
    assert rows == [(new["data"]["interaction_uuid"],)]
    kept, copied = kept_and_copied_records(con)
    assert kept == copied
    con.close()


@pytest.mark.parametrize("params", CASES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "none")
@pytest.mark.parametrize("o", ORDERINGS, ids=lambda o: o or "default")
def test_the_pages_are_the_plainly_ordered_records_cut_in_pages(
    folded: Folded, params: dict[str, str], o: str | None
) -> None:
    # Every page the list serves (two parts, the newest record's window, counted with the newest record in
    # one statement) against one plain ORDER BY of the records passing the filters, cut in pages.
    errors: dict[str, list[str]] = {}
    filters = parse_feedback_filters(QueryParams(params), errors)
    terms = parse_ordering(QueryParams({"o": o} if o else {}), errors, FEEDBACK_ORDERINGS) or ("-submitted_at",)
    assert not errors
    cur = folded[0].cursor()
    try:
        condition, values = feedbacks_sql.where(filters, feedbacks_sql.RECORDS)
        plain = cur.execute(
            f"SELECT {FEEDBACK_SELECT_LIST} FROM feedback_records WHERE {condition}"
            f" ORDER BY {feedbacks_sql.order_by(terms)}",
            values,
        ).fetchall()
        expected = [feedbacks_sql.to_body(row) for row in plain]
        for size in (7, 100):
            served: list[dict[str, Any]] = []
            for page in range(1, len(expected) // size + 2):
                got = queries.list_feedbacks(cur, feedbacks_sql.RECORDS, filters, terms, Pagination(page, size))
                assert got.total == len(expected)
                served += got.rows
            assert served == expected, size
    finally:
        cur.close()
