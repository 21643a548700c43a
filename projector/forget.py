"""Forgetting: the one way turns leave the read model, for erasures and for the retention purge.

`remove_turns` deletes turns from every table that holds rows of a turn (`TURN_TABLES` of
schemas/readmodel.py, so a new per-turn table cannot be forgotten) and recounts the aggregate rows
they contributed to. Two callers:

- an erasure (`privacy.erasure.requested`, folded by projector/fold.py): the turns of one user or
  session that occurred up to the erasure, their tombstones in `erased_interactions`, and the dead
  letters that hold any of it (`erased_dead_letter`);
- the retention purge (`purge`): turns whose UTC created day is before the horizon, waiting events,
  usage and dead letters older than it, in one transaction. The horizon is remembered in `meta` as a
  watermark: the fold drops what arrives older than it, so a catch-up after a purge, or a rebuild
  (which sets the watermark before it starts), never brings old turns back.

See docs/privacy.md for the rules and why they make every order of arrival end in the same tables.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from projector import aggregates, conversations
from projector.arrow_views import execute_with
from projector.transaction import transaction
from schemas.events import ERASURE_REQUESTED
from schemas.readmodel import TURN_TABLES
from schemas.registry import FOLD_REASONS
from schemas.settings import KEEP_FOREVER

WATERMARK_KEY = "retention_horizon"  # meta: turns created before this day are gone and stay gone
TURNS_PURGED_KEY = "turns_purged"  # meta: turns removed or dropped by retention, ever
PURGES_KEY = "retention_purges"  # meta: purge transactions that removed something (changes the snapshot mark)
ERASURE = ERASURE_REQUESTED


def horizon(days: int, today: date | None = None) -> date | None:
    """The first UTC day kept under a retention of `days` (None: keep everything)."""
    if days == KEEP_FOREVER:
        return None
    return (today or datetime.now(UTC).date()) - timedelta(days=days)


def watermark(con: duckdb.DuckDBPyConnection) -> date | None:
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [WATERMARK_KEY]).fetchall()
    return date.fromisoformat(rows[0][0]) if rows else None


def meta_int(con: duckdb.DuckDBPyConnection, key: str) -> int:
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
    return int(rows[0][0]) if rows else 0


def add_to_meta(con: duckdb.DuckDBPyConnection, key: str, n: int) -> None:
    if n:
        con.execute(
            "INSERT INTO meta VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + ? AS VARCHAR)",
            [key, str(n), n],
        )


def set_watermark(con: duckdb.DuckDBPyConnection, day: date | None) -> None:
    if day is None:
        con.execute("DELETE FROM meta WHERE key = ?", [WATERMARK_KEY])
    else:
        con.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [WATERMARK_KEY, day.isoformat()],
        )


# -- removing turns ---------------------------------------------------------------------------------


@dataclass
class Removed:
    uuids: list[str] = field(default_factory=list)
    days: dict[date, tuple[int, int]] = field(default_factory=dict)  # day -> (turns, tokens)


_GONE = """
SELECT uuid::VARCHAR AS uuid, session_id, user_slug, created_date, input_tokens + output_tokens AS tokens
FROM interactions WHERE {}
"""


def remove_turns(con: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any]) -> Removed:
    """Deletes the turns matching `where` (a condition on `interactions` written in code, never from
    user text) from every per-turn table and recounts the aggregates they were part of. Call inside
    the caller's transaction."""
    rows = con.execute(_GONE.format(where), list(params)).fetchall()
    removed = Removed()
    if not rows:
        return removed
    uuids, sessions, users, days, tokens = (list(c) for c in zip(*rows, strict=True))
    gone_turns = pa.table({"uuid": pa.array(uuids, pa.string())})
    for table, column in TURN_TABLES.items():
        # Names from the schema module, never from a user.
        statement = f"DELETE FROM {table} WHERE {column} IN (SELECT uuid::UUID FROM gone_turns)"
        execute_with(con, statement, gone_turns=gone_turns)
    removed.uuids = uuids
    for day, cost in zip(days, tokens, strict=True):
        turns, total = removed.days.get(day, (0, 0))
        removed.days[day] = (turns + 1, total + int(cost))
    aggregates.recount(con, days=removed.days, sessions=sessions, users=users)
    conversations.refresh(con, sessions)  # from the turns left; a session without any loses its row
    return removed


def keep_in_budget(con: duckdb.DuckDBPyConnection, days: dict[date, tuple[int, int]]) -> None:
    """Erased turns leave every table, but what they cost stays in the daily token budget."""
    if not days:
        return
    table = pa.table(
        {
            "day": pa.array(sorted(days), pa.date32()),
            "turns": pa.array([days[d][0] for d in sorted(days)], pa.int64()),
            "tokens": pa.array([days[d][1] for d in sorted(days)], pa.int64()),
        }
    )
    execute_with(
        con,
        "UPDATE daily_counters SET erased_turns = daily_counters.erased_turns + e.turns,"
        " erased_tokens = daily_counters.erased_tokens + e.tokens FROM erased_days e"
        " WHERE daily_counters.day = e.day",
        erased_days=table,
    )


# -- erasures ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Erasure:
    event_id: str
    key_kind: str  # user_slug | session_id
    key: str
    occurred_at: datetime  # UTC, naive


def stored_erasures(con: duckdb.DuckDBPyConnection) -> list[Erasure]:
    rows = con.execute(
        "SELECT event_id::VARCHAR, key_kind, key, occurred_at FROM erasures ORDER BY occurred_at, event_id"
    ).fetchall()
    return [Erasure(*row) for row in rows]


def erasure_condition(erasure: Erasure) -> tuple[str, list[Any]]:
    """The turns an erasure covers, as a condition on `interactions`."""
    column = "session_id" if erasure.key_kind == "session_id" else "user_slug"
    return f"{column} = ? AND created <= ?", [erasure.key, erasure.occurred_at]


def tombstoned(con: duckdb.DuckDBPyConnection, uuids: Iterable[str]) -> set[str]:
    """Which of `uuids` are turns an erasure removed."""
    wanted = sorted(set(uuids))
    if not wanted:
        return set()
    rows = con.execute(
        "SELECT uuid::VARCHAR FROM erased_interactions WHERE uuid IN (SELECT unnest(?::UUID[]))", [wanted]
    ).fetchall()
    return {u for (u,) in rows}


def add_tombstones(con: duckdb.DuckDBPyConnection, uuids: Iterable[str]) -> None:
    """Remembers erased turns by their random id alone (not which erasure: two may cover one turn)."""
    wanted = sorted(set(uuids))
    if not wanted:
        return
    execute_with(
        con,
        "INSERT INTO erased_interactions SELECT uuid::UUID FROM new_tombstones"
        " WHERE uuid::UUID NOT IN (SELECT uuid FROM erased_interactions)",
        new_tombstones=pa.table({"uuid": pa.array(wanted, pa.string())}),
    )


def _naive_utc(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None)


def _canonical_uuid(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RawFacts:
    """What a raw event (a dead letter's bytes) says about whose it is, as far as it can be read."""

    session_id: str | None
    user_slug: str | None
    interaction_uuid: str | None
    occurred_at: datetime | None


def raw_facts(value: bytes | None) -> RawFacts:
    try:
        obj = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        return RawFacts(None, None, None, None)
    data = obj.get("data")
    data = data if isinstance(data, dict) else {}
    session, slug = data.get("session_id"), data.get("user_slug")
    return RawFacts(
        session if isinstance(session, str) else None,
        slug if isinstance(slug, str) and slug else None,
        _canonical_uuid(data.get("interaction_uuid")),
        _naive_utc(obj.get("occurred_at")),
    )


def erased_dead_letter(
    key: bytes | None,
    facts: RawFacts,
    record_timestamp: datetime | None,
    erasures: Sequence[Erasure],
    tombstones: set[str],
) -> bool:
    """Whether a dead letter holds data that an erasure covers: an event of an erased turn, or one of
    the erased user or session (by its data or its Kafka key) that occurred up to the erasure (by its
    own time; the record's when it has none readable; always, when neither can be read)."""
    if facts.interaction_uuid is not None and facts.interaction_uuid in tombstones:
        return True
    if not erasures:
        return False
    at = facts.occurred_at or record_timestamp
    for e in erasures:
        if at is not None and at > e.occurred_at:
            continue
        if key is not None and key == e.key.encode():
            return True
        if e.key_kind == "session_id" and facts.session_id == e.key:
            return True
        if e.key_kind == "user_slug" and facts.user_slug == e.key:
            return True
    return False


# -- the retention purge ----------------------------------------------------------------------------


@dataclass
class PurgeResult:
    horizon: date | None
    turns: int = 0
    pending: int = 0
    usage: int = 0
    dead_letters: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "horizon": None if self.horizon is None else self.horizon.isoformat(),
            "turns": self.turns,
            "pending_events": self.pending,
            "usage_events": self.usage,
            "dead_letters": self.dead_letters,
        }


def purge(con: duckdb.DuckDBPyConnection, retention_days: int, today: date | None = None) -> PurgeResult:
    """Removes what is older than the horizon of `retention_days`, in one transaction, and sets the
    watermark the fold drops late arrivals by. -1: keeps everything (and clears the watermark)."""
    day = horizon(retention_days, today)
    result = PurgeResult(day)
    with transaction(con):
        set_watermark(con, day)
        if day is not None:
            _purge_in_transaction(con, day, result)
    return result


def _purge_in_transaction(con: duckdb.DuckDBPyConnection, day: date, result: PurgeResult) -> None:
    # Waiting events older than the horizon: their turn is older still, or will never come. They count
    # as settled, as the fold counts one it drops on arrival for the same reason.
    pending = con.execute(
        "SELECT type, count(*) FROM pending_events WHERE occurred_at < ? GROUP BY type", [day]
    ).fetchall()
    if pending:
        con.execute("DELETE FROM pending_events WHERE occurred_at < ?", [day])
        result.pending = sum(int(n) for _, n in pending)
        count_settled(con, {str(t): int(n) for t, n in pending})
    result.turns = len(remove_turns(con, "created_date < ?", [day]).uuids)
    ((usage,),) = con.execute("SELECT count(*) FROM usage_events WHERE day < ?", [day]).fetchall()
    if usage:
        con.execute("DELETE FROM usage_events WHERE day < ?", [day])
        result.usage = int(usage)
    con.execute("DELETE FROM daily_counters WHERE day < ?", [day])
    # By the event's own time where it can be read, as the fold drops them on arrival; those the fold
    # gave to valid events count as settled, as an event dropped for its age does.
    dead = con.execute(_OLD_DEAD_LETTERS, [day]).fetchall()
    if dead:
        con.execute("DELETE FROM dead_letters WHERE coalesce(occurred_at, record_timestamp) < ?", [day])
        result.dead_letters = sum(int(n) for _, _, n in dead)
        count_settled(con, {str(t): int(n) for reason, t, n in dead if reason in FOLD_REASONS and t})
    add_to_meta(con, TURNS_PURGED_KEY, result.turns)
    if result.turns or result.pending or result.usage or result.dead_letters:
        add_to_meta(con, PURGES_KEY, 1)


_OLD_DEAD_LETTERS = """
SELECT reason, type, count(*) FROM dead_letters WHERE coalesce(occurred_at, record_timestamp) < ? GROUP BY ALL
"""


def count_settled(con: duckdb.DuckDBPyConnection, by_type: dict[str, int]) -> None:
    """Adds events the fold accepted but will never apply (erased, or too old) to `applied_counts`, so
    that the counts are the same whichever came first, the event or what makes it moot."""
    rows = sorted((t, n) for t, n in by_type.items() if n)
    if not rows:
        return
    table = pa.table({"type": pa.array([r[0] for r in rows], pa.string()), "events": pa.array([r[1] for r in rows])})
    execute_with(
        con,
        "UPDATE applied_counts SET events = applied_counts.events + n.events"
        " FROM settled_counts n WHERE applied_counts.type = n.type",
        settled_counts=table,
    )
    execute_with(
        con,
        "INSERT INTO applied_counts SELECT type, events FROM settled_counts n ANTI JOIN applied_counts USING (type)",
        settled_counts=table,
    )


def privacy_figures(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """What `status` and /metrics show: the watermark, turns purged, erasures and rows they removed."""
    ((erasures, rows),) = cur.execute("SELECT count(*), coalesce(sum(rows_removed), 0) FROM erasures").fetchall()
    mark = watermark(cur)
    return {
        "retention_horizon": None if mark is None else mark.isoformat(),
        "turns_purged_by_retention": meta_int(cur, TURNS_PURGED_KEY),
        "retention_purges": meta_int(cur, PURGES_KEY),
        "erasures_applied": int(erasures),
        "erasure_rows_removed": int(rows),
    }
