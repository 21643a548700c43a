"""One visitor's story across sessions, days and tables, for the erasure and retention tests, and a way
to find anything of it that is still stored."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from tests.support.events import (
    BASE_TIME,
    click,
    erasure,
    feedback,
    review,
    stream,
    turn,
    usage,
)

OTHER = "other-slug-0002"
OFFER = "0b7c1f1e-8a43-4f55-9d7e-2f0c7e1d0a01"
TODAY = date(2026, 11, 26)


def early_at(t: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(t["occurred_at"].replace("Z", "+00:00")) + timedelta(minutes=1)


VISITOR = "visitor-slug-0001"


IP = "203.0.113.9"


def everything_stored(con: duckdb.DuckDBPyConnection) -> str:
    """Every value of every table, as text (raw bytes included): where a secret would show."""
    tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    return "\n".join(f"{t}: {con.execute(f'SELECT * FROM {t}').fetchall()}" for t in tables)


def visitor_story() -> tuple[list[dict[str, Any] | bytes], dict[str, Any]]:
    """A visitor with turns in three sessions, feedback and clicks before and after the erasure, events
    waiting for turns that arrive only after it, dead letters that name them, and one turn after it."""
    at = BASE_TIME
    a1 = turn("sess-a", at=at, user_slug=VISITOR, user_input="SECRET-A1", offering_uuids=[OFFER], input_tokens=40)
    a2 = turn("sess-a", at=at + timedelta(minutes=1), user_slug=VISITOR, user_input="SECRET-A2", output_tokens=7)
    b1 = turn(
        "sess-b", at=at + timedelta(minutes=5), user_slug=VISITOR, user_input="SECRET-B1", ip_address="203.0.113.9"
    )
    c1 = turn("sess-c", at=at + timedelta(minutes=9), user_slug=VISITOR, user_input="SECRET-C1", offering_uuids=[OFFER])
    later = turn("sess-d", at=at + timedelta(hours=3), user_slug=VISITOR, user_input="after the erasure")
    other = turn("sess-o", at=at + timedelta(minutes=2), user_slug=OTHER, user_input="someone else", input_tokens=3)
    erase = erasure(user_slug=VISITOR, reason="visitor asked", at=at + timedelta(hours=1))
    bad_turn = turn("sess-a", at=at + timedelta(minutes=2), user_slug=VISITOR, user_input="SECRET-BAD", severity="odd")
    events: list[dict[str, Any] | bytes] = [
        feedback(c1, -1, "other", at=at + timedelta(minutes=10), comment="SECRET-WAITING"),  # before its turn
        click(c1, at=at + timedelta(minutes=11)),  # before its turn
        a1,
        feedback(a1, -1, "inaccurate", at=at + timedelta(minutes=2), comment="SECRET-FB", ip_address="198.51.100.4"),
        click(a1, at=at + timedelta(minutes=3)),
        review(a2, 2, at=at + timedelta(minutes=4), summary="SECRET-REVIEW"),
        feedback(a1, 1, at=at + timedelta(minutes=5), session_id="sess-o", comment="SECRET-MISMATCH"),
        bad_turn,
        a2,
        other,
        feedback(other, 1, at=at + timedelta(minutes=3)),
        erase,
        b1,  # arrives after the erasure, occurred before it
        feedback(b1, 1, at=at + timedelta(minutes=6), comment="SECRET-LATE"),
        click(a1, at=at + timedelta(minutes=20)),  # on an erased turn, after the erasure
        c1,  # brings the waiting events' turn, after the erasure
        later,
        feedback(later, 1, at=at + timedelta(hours=4)),
        usage(100, 50, at=at),
    ]
    return events, {"erase": erase, "later": later, "other": other}


def spanning_days(days: int = 120, today: date = TODAY) -> list[dict[str, Any] | bytes]:
    """Generated traffic over `days` days up to `today`, and one session that spans the horizon."""
    start = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), UTC)
    events: list[dict[str, Any] | bytes] = []
    for day in range(0, days, 4):
        events += stream(90, seed=day + 1, sessions=12, start=start + timedelta(days=day, hours=6))
    early = turn("sess-span", at=start + timedelta(days=5), user_slug=VISITOR, input_tokens=11)
    late = turn("sess-span", at=start + timedelta(days=days - 3), user_slug=VISITOR, input_tokens=13)
    events += [early, feedback(early, 1, at=early_at(early)), late]
    return events
