"""Property: however a log is consumed, the tables come out the same.

Hypothesis builds a keyed, multi-partition log of valid and invalid events (early feedback, clicks and
reviews, duplicates, duplicate interactions, mismatches, garbage, and in the second test erasures of
users and sessions, keyed by what they erase, so often on another partition than the turns they
cover), then folds it once cleanly in one batch and once the hard way: partitions interleaved at
random (each partition's order kept, as a consumer sees them), random batch sizes, the file closed
and reopened at random points, and records below the stored offsets redelivered after a restart.
Both files must hold the same rows.
"""

from __future__ import annotations

import random
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projector.fold import apply_batch
from projector.records import Record
from projector.snapshot import diff, table_rows
from schemas.readmodel import connect
from tests.support.events import BASE_TIME, click, encode, erasure, feedback, review, turn, usage

TOPIC = "chat.events"
SESSIONS = ("sess-a", "sess-b", "sess-c", "sess-d")
SLUGS = ("", "slug-1", "slug-2")
OFFERS = tuple(f"00000000-0000-4000-8000-00000000000{i}" for i in range(4))
GARBAGE = (
    b"not json",
    b'{"event_id": "x"}',
    b'{"event_id":"6f1c0d5e-3b0a-4c7e-9a51-0f2d8e4b7a10","type":"chat.nope","version":1,'
    b'"occurred_at":"2026-11-26T09:00:00Z","data":{}}',
)
TURN_POOL = 4

OPS = st.lists(
    st.tuples(
        # Turns are a minority so that feedback, clicks and reviews often come early and wait.
        st.sampled_from(
            ["feedback", "review", "turn", "feedback", "click", "turn", "review", "usage"]
            + ["dup", "dup_interaction", "mismatch", "bad"]
        ),
        st.integers(0, TURN_POOL - 1),
    ),
    min_size=1,
    max_size=45,
)
ERASURE_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["feedback", "review", "turn", "feedback", "click", "turn", "review", "usage"]
            + ["dup", "dup_interaction", "mismatch", "bad"]
            + ["erase_user", "erase_session", "erase_user", "bad_erasure"]
        ),
        st.integers(0, TURN_POOL - 1),
    ),
    min_size=1,
    max_size=45,
)


def build_log(ops: list[tuple[str, int]], seed: int, partitions: int) -> list[list[Record]]:
    rng = random.Random(seed)
    pool = []
    for k in range(TURN_POOL):
        at = BASE_TIME + timedelta(days=rng.randint(0, 2), minutes=rng.randint(0, 600))
        blocks = [{"type": rng.choice(["text", "ask_user"]), "text": f"t{k}"}]
        pool.append(
            turn(
                rng.choice(SESSIONS),
                at=at,
                user_slug=rng.choice(SLUGS),
                rng=rng,
                assistant_blocks=blocks,
                offering_uuids=rng.sample(OFFERS, rng.randint(0, 2)),
                severity=rng.choice(["none", "", "low", "high"]),
                is_flagged=rng.random() < 0.3,
                action_taken=rng.choice(["", "block", "redact", "allow"]),
                input_tokens=rng.randint(0, 50),
                output_tokens=rng.randint(0, 50),
            )
        )
    events: list[dict[str, Any] | bytes] = []
    for kind, k in ops:
        t = pool[k]
        at = BASE_TIME + timedelta(days=rng.randint(0, 3), minutes=rng.randint(0, 600))
        if kind == "turn":
            event: dict[str, Any] | bytes = t
        elif kind == "dup_interaction":
            # Same interaction and session (so the same partition), another event id.
            event = turn(t["data"]["session_id"], at=at, interaction_uuid=t["data"]["interaction_uuid"], rng=rng)
        elif kind == "feedback":
            score = rng.choice([1, -1])
            event = feedback(t, score, None if score == 1 else "other", at=at, rng=rng, comment=str(rng.random()))
        elif kind == "click":
            offers = t["data"]["offering_uuids"]
            event = click(t, rng.choice(offers) if offers and rng.random() < 0.8 else OFFERS[3], at=at, rng=rng)
        elif kind == "review":
            event = review(t, rng.randint(1, 5), at=at, rng=rng, hallucination_detected=rng.random() < 0.5)
        elif kind == "usage":
            event = usage(rng.randint(0, 9), rng.randint(0, 9), at=at, rng=rng)
        elif kind == "mismatch":
            other = rng.choice([s for s in SESSIONS if s != t["data"]["session_id"]])
            event = rng.choice(
                [feedback(t, 1, at=at, rng=rng, session_id=other), review(t, 3, at=at, rng=rng, session_id=other)]
            )
        elif kind == "erase_user":
            event = erasure(at=at, rng=rng, user_slug=t["data"]["user_slug"] or rng.choice(SLUGS[1:]))
        elif kind == "erase_session":
            event = erasure(at=at, rng=rng, session_id=t["data"]["session_id"])
        elif kind == "bad_erasure":
            # both keys, neither, or a reason too long: invalid_data, and it names the visitor
            event = rng.choice(
                [
                    erasure(at=at, rng=rng, user_slug=t["data"]["user_slug"] or "slug-1", session_id="sess-a"),
                    erasure(at=at, rng=rng),
                    erasure(at=at, rng=rng, session_id=t["data"]["session_id"], reason="x" * 501),
                ]
            )
        elif kind == "dup":
            event = rng.choice(events) if events else t
        else:
            event = rng.choice(GARBAGE)
        events.append(event)
    log: list[list[Record]] = [[] for _ in range(partitions)]
    for i, event in enumerate(events):
        data = event["data"] if isinstance(event, dict) else {}
        # An erasure of a user is keyed by the user: another partition than its sessions' turns.
        session = data.get("session_id") or data.get("user_slug")
        key = session.encode() if session else None
        # Keyed records go where a keyed producer puts them; keyless ones anywhere.
        p = zlib.crc32(key) % partitions if key else rng.randrange(partitions)
        if isinstance(event, bytes):
            key = rng.choice(SESSIONS).encode()
        log[p].append(Record(TOPIC, p, len(log[p]), key, encode(event), 1_764_000_000_000 + i))
    return log


def fold_clean(path: Path, log: list[list[Record]]) -> dict[str, list[tuple[Any, ...]]]:
    con = connect(path)
    apply_batch(con, [r for part in log for r in part])
    rows = table_rows(con)
    con.close()
    return rows


def fold_the_hard_way(path: Path, log: list[list[Record]], rng: random.Random) -> dict[str, list[tuple[Any, ...]]]:
    con = connect(path)
    while True:
        stored = {p: o for (t, p), o in _offsets(con).items() if t == TOPIC}
        cursor = {p: stored.get(p, 0) for p in range(len(log))}
        if rng.random() < 0.3:
            # a redelivery: the consumer starts before the stored offset of some partition
            p = rng.randrange(len(log))
            cursor[p] = rng.randint(0, cursor[p])
        remaining = sum(len(log[p]) - cursor[p] for p in cursor)
        if remaining == 0:
            break
        stream: list[Record] = []
        while any(cursor[p] < len(log[p]) for p in cursor):
            p = rng.choice([p for p in cursor if cursor[p] < len(log[p])])
            stream.append(log[p][cursor[p]])
            cursor[p] += 1
        interrupted = False
        i = 0
        while i < len(stream):
            size = rng.randint(1, 8)
            apply_batch(con, stream[i : i + size])
            i += size
            if rng.random() < 0.15:
                interrupted = True
                break
        con.close()
        con = connect(path)
        if not interrupted:
            break
    rows = table_rows(con)
    con.close()
    return rows


def _offsets(con: Any) -> dict[tuple[str, int], int]:
    return {(t, p): o for t, p, o in con.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()}


def clean_and_hard(ops: list[tuple[str, int]], seed: int, partitions: int, consume_seed: int) -> Any:
    """The log of `ops` folded cleanly and the hard way; asserts both hold the same rows."""
    log = build_log(ops, seed, partitions)
    with tempfile.TemporaryDirectory() as tmp:
        clean = fold_clean(Path(tmp) / "clean.duckdb", log)
        hard = fold_the_hard_way(Path(tmp) / "hard.duckdb", log, random.Random(consume_seed))
    assert diff(clean, hard) == {}
    assert clean == hard
    # The comparison must have something to compare: every record moved the offsets.
    assert sum(o for _, _, o in clean["offsets"]) == sum(len(p) for p in log)
    return clean


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, seed=st.integers(0, 2**32), partitions=st.integers(1, 3), consume_seed=st.integers(0, 2**32))
def test_any_consumption_of_a_log_gives_the_tables_of_one_clean_fold(
    ops: list[tuple[str, int]], seed: int, partitions: int, consume_seed: int
) -> None:
    clean_and_hard(ops, seed, partitions, consume_seed)


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ERASURE_OPS, seed=st.integers(0, 2**32), partitions=st.integers(1, 3), consume_seed=st.integers(0, 2**32))
def test_erasures_give_the_tables_of_one_clean_fold_whatever_the_interleaving(
    ops: list[tuple[str, int]], seed: int, partitions: int, consume_seed: int
) -> None:
    clean = clean_and_hard(ops, seed, partitions, consume_seed)
    # The log had erasures to fold whenever it asked for some.
    assert len(clean["erasures"]) == sum(kind.startswith("erase_") for kind, _ in ops)
