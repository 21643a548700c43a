"""The dead-letter table for operators: list, export, count, and retry through the fold.

A retry re-offers dead letters to this release's fold, in their log order (topic, partition,
offset), in one transaction: the rows are taken out of the table, their records go through
`apply.apply_in_transaction(..., replay=True)` (the same rules and duplicate detection as the live
log, without moving any stored offset), and whatever the fold still rejects is written back with its
new reason and detail. Those that now apply leave the table; a feedback, click or review whose turn
is still missing moves to the waiting events, as it would have on arrival.

Exactly-once: the fold records in `applied_events` the id of every event it accepts, and it accepts
(then sets aside) the three fold-level reasons below, so those ids are taken back out first; a dead
letter rejected by the parser never had its id recorded. An event that some other copy already
applied is skipped as a duplicate, as on the live log, and leaves the table.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import duckdb
import orjson
import pyarrow as pa

from projector.apply import apply_in_transaction
from projector.arrow_views import execute_with
from projector.prepare import prepare
from projector.records import Record
from projector.transaction import transaction
from schemas.registry import FOLD_REASONS, EventRegistry

_COLUMNS = 'topic, partition, "offset", key, value, reason, detail, event_id, type, record_timestamp, dead_lettered_at'
_WHERE_REASON = "WHERE (CAST(? AS VARCHAR) IS NULL OR reason = ?)"
_LOG_ORDER = 'ORDER BY topic, partition, "offset"'


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    event_id: str | None
    type: str | None
    record_timestamp: datetime | None  # UTC
    dead_lettered_at: datetime  # UTC

    def as_json(self) -> dict[str, Any]:
        """The export shape: raw bytes as base64 (they may be anything, JSON or not)."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": _b64(self.key),
            "value": _b64(self.value),
            "reason": self.reason,
            "detail": self.detail,
            "event_id": self.event_id,
            "type": self.type,
            "record_timestamp": _iso(self.record_timestamp),
            "dead_lettered_at": _iso(self.dead_lettered_at),
        }


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _letter(row: tuple[Any, ...]) -> DeadLetter:
    topic, partition, offset, key, value, reason, detail, event_id, type_, record_ts, at = row
    return DeadLetter(topic, int(partition), int(offset), key, value, reason, detail, event_id, type_, record_ts, at)


def iter_dead_letters(
    con: duckdb.DuckDBPyConnection,
    *,
    reason: str | None = None,
    limit: int | None = None,
    chunk: int = 1000,
    after: tuple[str, int, int] | None = None,
) -> Iterator[DeadLetter]:
    """Dead letters in log order, optionally of one reason, at most `limit` of them, starting after the
    log position `after` (topic, partition, offset) when given: a page of a longer listing."""
    query = f"SELECT {_COLUMNS} FROM dead_letters {_WHERE_REASON}"
    params: list[Any] = [reason, reason]
    if after is not None:
        query += ' AND (topic, partition, "offset") > (?, ?, ?)'
        params.extend(after)
    query += f" {_LOG_ORDER}"
    if limit is not None:
        query += " LIMIT ?"
        params.append(limit)
    cur = con.cursor()
    try:
        cur.execute(query, params)
        while rows := cur.fetchmany(chunk):
            yield from (_letter(r) for r in rows)
    finally:
        cur.close()


def count_by_reason(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason").fetchall()
    return {str(reason): int(n) for reason, n in rows}


def export_jsonl(letters: Iterable[DeadLetter], out: IO[bytes]) -> int:
    """Writes one JSON object per line; returns how many."""
    n = 0
    for letter in letters:
        out.write(orjson.dumps(letter.as_json()) + b"\n")
        n += 1
    return n


@dataclass
class RetryResult:
    offered: int = 0
    applied: Counter[str] = field(default_factory=Counter)  # by event type
    still_dead: Counter[str] = field(default_factory=Counter)  # by (new) reason
    duplicates: int = 0  # another copy of the event was applied already: dropped, as on the live log
    waiting: int = 0  # valid now, but their turn has not arrived: moved to the waiting events

    def as_json(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "applied": dict(self.applied),
            "still_dead": dict(self.still_dead),
            "duplicates": self.duplicates,
            "waiting": self.waiting,
        }


def _record(letter_row: tuple[Any, ...]) -> Record:
    topic, partition, offset, key, value, record_ts = letter_row
    ms = None if record_ts is None else round(record_ts.replace(tzinfo=UTC).timestamp() * 1000)
    return Record(topic, int(partition), int(offset), key, value, ms)


def retry(
    con: duckdb.DuckDBPyConnection, *, reason: str | None = None, registry: EventRegistry | None = None
) -> RetryResult:
    """Re-offers the dead letters (of one reason, or all) to the fold, in log order, in one transaction.

    `registry` defaults to this release's; it must be the one the live fold uses, so that a retry and
    the log agree on what is valid. The caller must be the file's only writer meanwhile."""
    result = RetryResult()
    with transaction(con):
        rows = con.execute(
            f'SELECT topic, partition, "offset", key, value, record_timestamp, reason, event_id '
            f"FROM dead_letters {_WHERE_REASON} {_LOG_ORDER}",
            [reason, reason],
        ).fetchall()
        if rows:
            _take_out(con, rows)
            stats = apply_in_transaction(
                con, prepare([_record(r[:6]) for r in rows], registry), replay=True, registry=registry
            )
            result.offered = len(rows)
            result.applied = stats.applied
            result.still_dead = stats.dead_letters
            result.duplicates = stats.duplicates
            result.waiting = stats.pending_added
    return result


def _take_out(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    """Removes the retried rows, and the ids the fold accepted when it set them aside."""
    keys = pa.table(
        {
            "topic": pa.array([r[0] for r in rows], pa.string()),
            "partition": pa.array([r[1] for r in rows], pa.int32()),
            "offset": pa.array([r[2] for r in rows], pa.int64()),
        }
    )
    execute_with(
        con,
        """
        DELETE FROM dead_letters d USING retried_letters r
        WHERE d.topic = r.topic AND d.partition = r.partition AND d."offset" = r."offset"
        """,
        retried_letters=keys,
    )
    accepted = sorted({r[7] for r in rows if r[6] in FOLD_REASONS and r[7] is not None})
    if accepted:
        ids = pa.table({"event_id": pa.array(accepted, pa.string())})
        execute_with(
            con,
            "DELETE FROM applied_events WHERE event_id IN (SELECT event_id::UUID FROM retried_event_ids)",
            retried_event_ids=ids,
        )
