"""The fold: what every event type does to the read model, one DuckDB transaction per batch.

A batch goes through two steps, so that the CPU-heavy one can run in another process:

1. `prepare(records)` (pure Python, no database): parses the whole poll at once with
   `schemas.registry.parse_events` and shapes each valid event into the row its table needs
   (JSON text, the stemmed `search_terms`, UTC-naive timestamps). The result is plain picklable data.
2. `apply_prepared(con, batch)`: in one transaction, skips records below the stored offsets and
   already-applied event ids, inserts turns, applies (or parks, or dead-letters) feedback, clicks and
   reviews, inserts usage, recomputes the aggregates of the keys it touched, and stores the next
   offset of every partition it saw. A crash anywhere leaves the file at the previous batch boundary.

`apply_batch(con, records)` does both. Per event type (docs/events.md):

- `chat.turn.recorded`: a new `interactions` row; a second turn for the same interaction under
  another event id is dead-lettered as `duplicate_interaction` (the first stands).
- `chat.feedback.submitted`: replaces `fb_*` of its turn (last one in log order wins); never touches `llm_*`.
- `chat.session.reviewed`: replaces `llm_*` of its turn (last one wins); keeps `fb_*`.
- `chat.offering.clicked`: a `clicks` row and `click_count + 1`; the offering must be one the turn offered.
- `assistant.usage.recorded`: a `usage_events` row (daily token budget only).
- `privacy.erasure.requested`: an `erasures` record; at the end of its batch, every turn of its user
  or session up to its time leaves with everything attached (projector/forget.py), and dead letters
  holding any of it go. Turns it covers that arrive later are dropped on arrival, with a tombstone so
  their feedback, clicks and reviews are dropped too; so is what is older than the retention
  watermark. Time and key decide, never arrival order (docs/privacy.md).

Feedback, clicks and reviews whose turn has not arrived wait in `pending_events` and are applied, in
arrival order, by the batch that brings the turn; a wrong session (`session_mismatch`) or offering
(`unknown_offering`) is only known then, so that is when they are dead-lettered.

Every event id the fold accepts (applied, parked, or dead-lettered by the fold) goes to
`applied_events`, so a re-published copy is skipped wherever and whenever it arrives. Records that
fail to parse are dead-lettered each time: without a valid envelope there is no identity to trust.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from uuid import UUID

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from projector import aggregates, conversations, forget
from projector.arrow_views import registered
from projector.records import Record
from schemas.events import (
    ErasureRequested,
    FeedbackSubmitted,
    OfferingClicked,
    SessionReviewed,
    TurnRecorded,
    UsageRecorded,
)
from schemas.fulltext import document_terms
from schemas.registry import (
    DUPLICATE_INTERACTION,
    FOLD_REASONS,
    INVALID_DATA,
    SESSION_MISMATCH,
    UNKNOWN_OFFERING,
    EventRegistry,
    Rejection,
    parse_events,
)
from schemas.settings import ip_policy

TURN = "chat.turn.recorded"
FEEDBACK = "chat.feedback.submitted"
CLICK = "chat.offering.clicked"
REVIEW = "chat.session.reviewed"
USAGE = "assistant.usage.recorded"
ERASURE = forget.ERASURE

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1

# Sets of uuids go to DuckDB as parameters: registering an Arrow table costs ~0.5 ms, and a live batch's
# hundred uuids were 1.5-3x slower to find in `interactions` as a table than as an IN list of parameters.
# Such a list costs more to bind the longer it is, and a table of a million event ids is scanned whatever
# the form: there, and beyond this length, the uuids go as one list parameter, unnested.
_IN_LIST_MAX = 300
_LIST_PARAM_MAX = 2_000  # beyond, a registered Arrow table: a long Python list converts slowly


# --------------------------------------------------------------------------------------------------
# Step 1: prepare (pure, picklable)
# --------------------------------------------------------------------------------------------------


class Prepared(NamedTuple):
    """One valid event, shaped for its table. `row` follows the schema of its type below, except for
    turns, whose full rows travel in `PreparedBatch.turns`: their `row` is (user_slug,), since a date
    object in every turn's row cost the parser ~2 µs/event of pickling."""

    pos: int  # index of its record in the batch
    type: str
    event_id: str
    interaction_uuid: str | None
    session_id: str | None
    row: tuple[Any, ...]


@dataclass(slots=True)
class PreparedBatch:
    """A prepared batch, laid out to be cheap to pickle (columns, tuples and an Arrow table rather than
    one object per record), so that a parser process can hand it to the writer."""

    topics: list[str]
    partitions: list[int]
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    timestamps: list[int | None]
    events: list[Prepared]  # valid events, in record order
    rejections: list[tuple[int, str, str, str | None, str | None]]  # (pos, reason, detail, event_id, type)
    turns: pa.Table  # TURN_SCHEMA plus `pos`, one row per turn event

    def __len__(self) -> int:
        return len(self.offsets)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Events travel as plain tuples: pickling a namedtuple per event cost a parser process ~5%.
        return (
            _unpickle_batch,
            (
                self.topics,
                self.partitions,
                self.offsets,
                self.keys,
                self.values,
                self.timestamps,
                [tuple(e) for e in self.events],
                self.rejections,
                self.turns,
            ),
        )


def _unpickle_batch(*fields: Any) -> PreparedBatch:
    *head, events, rejections, turns = fields
    return PreparedBatch(*head, [Prepared._make(e) for e in events], rejections, turns)


def merge_prepared(batches: Sequence[PreparedBatch]) -> PreparedBatch:
    """Consecutive prepared batches as one, positions renumbered: a parser ships small batches (its
    memory), the writer applies them in bigger transactions (each transaction costs a fixed ~0.1 s of
    table scans and aggregate refreshes, whatever its size)."""
    if len(batches) == 1:
        return batches[0]
    merged = PreparedBatch([], [], [], [], [], [], [], [], batches[0].turns.slice(0, 0))
    tables = []
    for batch in batches:
        shift = len(merged)
        merged.topics += batch.topics
        merged.partitions += batch.partitions
        merged.offsets += batch.offsets
        merged.keys += batch.keys
        merged.values += batch.values
        merged.timestamps += batch.timestamps
        if shift:
            merged.events += [Prepared(e[0] + shift, *e[1:]) for e in batch.events]
            merged.rejections += [(r[0] + shift, *r[1:]) for r in batch.rejections]
            pos = batch.turns.schema.get_field_index("pos")
            tables.append(batch.turns.set_column(pos, "pos", pc.add(batch.turns["pos"], shift)))
        else:
            merged.events += batch.events
            merged.rejections += batch.rejections
            tables.append(batch.turns)
    merged.turns = pa.concat_tables(tables)
    return merged


# Column names (and Arrow types) of the rows `prepare` builds, per type.
TURN_SCHEMA = pa.schema(
    [
        ("uuid", pa.string()),
        ("session_id", pa.string()),
        ("user_slug", pa.string()),
        ("user_input", pa.string()),
        ("assistant_blocks", pa.string()),
        ("search_terms", pa.string()),
        ("offering_uuids", pa.string()),
        ("result_count", pa.int32()),
        ("is_flagged", pa.bool_()),
        ("severity", pa.string()),
        ("injection_categories", pa.string()),
        ("pii_categories", pa.string()),
        ("action_taken", pa.string()),
        ("warning", pa.string()),
        ("ip_address", pa.string()),
        ("last_active_at", pa.timestamp("us")),
        ("created", pa.timestamp("us")),
        ("created_date", pa.date32()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("model", pa.string()),
        ("is_clarification", pa.bool_()),
        ("event_id", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
    ]
)
TURN_SCHEMA_WITH_POS = TURN_SCHEMA.append(pa.field("pos", pa.int64()))
FEEDBACK_SCHEMA = pa.schema(
    [
        ("uuid", pa.string()),
        ("score", pa.int8()),
        ("category", pa.string()),
        ("comment", pa.string()),
        ("ip", pa.string()),
        ("submitted_at", pa.timestamp("us")),
    ]
)
REVIEW_SCHEMA = pa.schema(
    [
        ("uuid", pa.string()),
        ("resolution_score", pa.int8()),
        ("intent_category", pa.string()),
        ("hallucination_detected", pa.bool_()),
        ("hallucination_details", pa.string()),
        ("summary", pa.string()),
        ("judge_model", pa.string()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("reviewed_at", pa.timestamp("us")),
    ]
)
CLICK_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("interaction_uuid", pa.string()),
        ("offering_uuid", pa.string()),
        ("session_id", pa.string()),
        ("occurred_at", pa.timestamp("us")),
    ]
)
USAGE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("occurred_at", pa.timestamp("us")),
        ("day", pa.date32()),
        ("input_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("source", pa.string()),
    ]
)


PARSE_CHUNK = 1_000  # values parsed at a time: their models are dropped once shaped into rows


def prepare(records: Sequence[Record], registry: EventRegistry | None = None) -> PreparedBatch:
    """Parses and shapes a whole batch; touches no database, so it can run in a parser process.
    `registry` is this release's (the default) unless a caller knows other versions, as a dead-letter
    retry under test does."""
    records = list(records)
    values = [r.value for r in records]
    parse = parse_events if registry is None else registry.parse_many
    # The IP policy (docs/privacy.md): with `drop`, an IP that arrives anyway is not stored.
    shaped = _Shaped(drop_ip=ip_policy() == "drop")
    with gc_paused():
        # In chunks: the models of a whole 20,000-record batch took ~6 KB per event at once.
        for start in range(0, len(values), PARSE_CHUNK):
            shaped.add(records, start, parse(values[start : start + PARSE_CHUNK]))
    return PreparedBatch(
        topics=[r.topic for r in records],
        partitions=[r.partition for r in records],
        offsets=[r.offset for r in records],
        keys=[r.key for r in records],
        values=values,
        timestamps=[r.timestamp_ms for r in records],
        events=shaped.events,
        rejections=shaped.rejections,
        turns=_table(shaped.turn_rows, TURN_SCHEMA_WITH_POS),
    )


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a batch allocates hundreds of thousands of objects that all
    live until it is shaped, and the collector scanned them again and again (about 45% of `prepare`'s
    time) to find no cycle. Whatever cycle the block leaves is collected after it, as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _uuid_texts(values: list[UUID | None]) -> list[str | None]:
    # orjson writes UUIDs in the canonical form of str(UUID), but in C: one call for the whole batch.
    return orjson.loads(orjson.dumps(values))  # type: ignore[no-any-return]


class _Shaped:
    """The rows of a batch's valid events and its rejections, in record order, filled chunk by chunk."""

    def __init__(self, *, drop_ip: bool = False) -> None:
        self.drop_ip = drop_ip
        self.events: list[Prepared] = []
        self.rejections: list[tuple[int, str, str, str | None, str | None]] = []
        self.turn_rows: list[tuple[Any, ...]] = []

    def add(self, records: list[Record], first: int, parsed: list[Any]) -> None:
        """Shapes the parsed events of `records[first : first + len(parsed)]`."""
        valid: list[tuple[int, Any]] = []
        rejections = self.rejections
        for pos, event in enumerate(parsed, first):
            if isinstance(event, Rejection):
                rejections.append((pos, event.reason, event.detail, event.event_id, event.type))
            else:
                valid.append((pos, event))
        event_ids = _uuid_texts([e.event_id for _, e in valid])
        interactions = _uuid_texts([getattr(e.data, "interaction_uuid", None) for _, e in valid])
        events, turn_rows = self.events, self.turn_rows
        out_of_range = False
        for (pos, event), event_id, uuid in zip(valid, event_ids, interactions, strict=True):
            try:
                if event.type == TURN:
                    row = _turn_row(records[pos], event, event_id, uuid)  # type: ignore[arg-type]
                    if self.drop_ip:
                        row = (*row[:_TURN_IP], None, *row[_TURN_IP + 1 :])
                    turn_rows.append((*row, pos))
                    events.append(Prepared(pos, TURN, event_id, uuid, row[1], (row[2],)))  # type: ignore[arg-type]
                else:
                    prepared = _SHAPERS[event.type](pos, event, event_id, uuid)
                    if self.drop_ip and event.type == FEEDBACK:
                        prepared = prepared._replace(row=(*prepared.row[:4], None, prepared.row[5]))
                    events.append(prepared)
            except _OutOfRange as exc:
                rejections.append((pos, INVALID_DATA, str(exc), event_id, event.type))
                out_of_range = True
        if out_of_range:
            rejections.sort(key=lambda r: r[0])  # record order, as for the parsing rejections


class _OutOfRange(ValueError):
    """A value the contract allows but a read-model column cannot hold (so the event is invalid_data)."""


def _check(name: str, value: int, limit: int) -> int:
    if value > limit:
        raise _OutOfRange(f"data.{name}: {value} is larger than the read model can store ({limit})")
    return value


def _naive(value: datetime) -> datetime:
    # The models already converted to UTC; the columns are UTC-naive TIMESTAMPs.
    if value.tzinfo is UTC:
        return value.replace(tzinfo=None)
    return value.astimezone(UTC).replace(tzinfo=None)


def _json_list(value: list[Any]) -> str:
    # Most category lists are empty.
    return to_json(value) if value else "[]"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def to_json(value: Any) -> str:
    """Compact JSON text. orjson is fast but refuses integers beyond 64 bits and very deep nesting,
    which a publisher may legally send inside assistant_blocks; the standard library takes over then."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False, default=str)


def _asks_user(block: Any) -> bool:
    """One block that asks the visitor a clarifying question (docs/api.md, KPI `clarification_*`):
    an `ask_user_form` block, an `ask_user` tool call, or our own `{"type": "ask_user"}` block."""
    if not isinstance(block, dict):
        return False
    if block.get("type") == "ask_user" or block.get("key") == "ask_user_form":
        return True
    tool = block.get("tool")
    if isinstance(tool, dict) and tool.get("name") == "ask_user":
        return True
    # A tool block carries what the tool returned in `result`: a block, or a list of blocks.
    result = block.get("result")
    results = result if isinstance(result, list) else [result]
    return any(isinstance(r, dict) and r.get("key") == "ask_user_form" for r in results)


def is_clarification(blocks: list[Any]) -> bool:
    return any(_asks_user(b) for b in blocks)


def _turn_row(record: Record, event: TurnRecorded, event_id: str, uuid: str) -> tuple[Any, ...]:
    d = event.data
    # Left aware (UTC): Arrow stores an aware datetime as its UTC instant, the same value as the naive
    # one, and datetime.replace costs ~0.8 us a call.
    created = event.occurred_at
    assert d.result_count is not None and d.last_active_at is not None  # the model fills both defaults
    blocks = d.assistant_blocks
    row = (
        uuid,
        d.session_id,
        d.user_slug,
        d.user_input,
        to_json(blocks),
        document_terms(d.user_input, blocks),
        orjson.dumps(d.offering_uuids).decode(),  # UUIDs in their canonical text, as str() writes them
        _check("result_count", d.result_count, _INT32_MAX),
        d.is_flagged,
        d.severity,
        _json_list(d.injection_categories),
        _json_list(d.pii_categories),
        d.action_taken,
        d.warning,
        d.ip_address,
        d.last_active_at,
        created,
        created.astimezone(UTC).date() if created.tzinfo is not UTC else created.date(),
        _check("input_tokens", d.input_tokens, _INT64_MAX),
        _check("output_tokens", d.output_tokens, _INT64_MAX),
        d.model,
        is_clarification(blocks),
        event_id,
        record.partition,
        record.offset,
    )
    return row


def _feedback(pos: int, event: FeedbackSubmitted, event_id: str, uuid: str) -> Prepared:
    d = event.data
    row = (uuid, d.score, d.category, d.comment, d.ip_address, _naive(event.occurred_at))
    return Prepared(pos, FEEDBACK, event_id, uuid, d.session_id, row)


def _review(pos: int, event: SessionReviewed, event_id: str, uuid: str) -> Prepared:
    d = event.data
    row = (
        uuid,
        d.resolution_score,
        d.intent_category,
        d.hallucination_detected,
        d.hallucination_details,
        d.summary,
        d.judge_model,
        _check("judge_input_tokens", d.judge_input_tokens, _INT64_MAX),
        _check("judge_output_tokens", d.judge_output_tokens, _INT64_MAX),
        _naive(event.occurred_at),
    )
    return Prepared(pos, REVIEW, event_id, uuid, d.session_id, row)


def _click(pos: int, event: OfferingClicked, event_id: str, uuid: str) -> Prepared:
    d = event.data
    row = (event_id, uuid, str(d.offering_uuid), d.session_id, _naive(event.occurred_at))
    return Prepared(pos, CLICK, event_id, uuid, d.session_id, row)


def _usage(pos: int, event: UsageRecorded, event_id: str, uuid: None) -> Prepared:
    d = event.data
    at = _naive(event.occurred_at)
    row = (
        event_id,
        at,
        at.date(),
        _check("input_tokens", d.input_tokens, _INT64_MAX),
        _check("output_tokens", d.output_tokens, _INT64_MAX),
        d.source,
    )
    return Prepared(pos, USAGE, event_id, None, None, row)


def _erasure(pos: int, event: ErasureRequested, event_id: str, uuid: None) -> Prepared:
    kind, key = event.data.key
    row = (event_id, kind, key, _naive(event.occurred_at), event.data.reason)
    return Prepared(pos, ERASURE, event_id, None, event.data.session_id, row)


_SHAPERS: dict[str, Any] = {FEEDBACK: _feedback, REVIEW: _review, CLICK: _click, USAGE: _usage, ERASURE: _erasure}
_TURN_IP = TURN_SCHEMA.get_field_index("ip_address")
# Where a dependent event's own occurred_at sits in its row (for retention of waiting events).
_OCCURRED_AT = {FEEDBACK: 5, REVIEW: 9, CLICK: 4}


# --------------------------------------------------------------------------------------------------
# Step 2: apply (one transaction)
# --------------------------------------------------------------------------------------------------


@dataclass
class BatchStats:
    records: int = 0
    skipped_below_offset: int = 0  # records the file already holds (a replay after a rebalance)
    duplicates: int = 0  # events whose event_id was already accepted
    applied: Counter[str] = field(default_factory=Counter)  # by event type
    dead_letters: Counter[str] = field(default_factory=Counter)  # by reason
    pending_added: int = 0
    pending_resolved: int = 0
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset per (topic, partition)
    erasures: int = 0  # erasure events applied
    erased: int = 0  # turns an erasure removed or dropped on arrival (each with everything attached)
    erased_events: int = 0  # feedback, clicks, reviews, copies and dead letters dropped for an erasure
    aged: int = 0  # events dropped on arrival because they are older than the retention horizon


class _Turn(NamedTuple):
    """A stored turn, as the events that depend on it need it."""

    session_id: str
    offerings: set[str]
    user_slug: str
    created_date: date
    created: datetime
    event_id: str
    state: aggregates.TurnState


# Columns of a new turn's row that its `_Turn` reads, in `_turns_of`'s order.
_TURN_COLUMNS = ("uuid", "event_id", "session_id", "offering_uuids", "user_slug", "created_date", "created")


@dataclass(slots=True)
class _Source:
    """Where a dependent event came from: this batch's records, or the pending table."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    record_timestamp: datetime | None
    pending_seq: int | None


def apply_batch(
    con: duckdb.DuckDBPyConnection, records: Sequence[Record], registry: EventRegistry | None = None
) -> BatchStats:
    """Folds `records` (in log order per partition) into the read model in one transaction."""
    return apply_prepared(con, prepare(records, registry), registry)


def apply_prepared(
    con: duckdb.DuckDBPyConnection, batch: PreparedBatch, registry: EventRegistry | None = None
) -> BatchStats:
    con.execute("BEGIN TRANSACTION")
    try:
        stats = apply_in_transaction(con, batch, registry=registry)
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT has already ended the transaction, and then ROLLBACK raises too: the error
        # to report (and to show in `status`) is the first one.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
    return stats


def apply_in_transaction(
    con: duckdb.DuckDBPyConnection,
    batch: PreparedBatch,
    *,
    replay: bool = False,
    registry: EventRegistry | None = None,
) -> BatchStats:
    """The fold of one batch inside the caller's open transaction.

    `replay=True` re-offers records the file already holds a position past (dead letters being
    retried): every record is taken, whatever the stored offsets, and no offset moves. The rules,
    duplicate detection included, are the same as for the live log."""
    return _Fold(con, batch, replay=replay, registry=registry).run()


def _record_time(timestamp_ms: int | None) -> datetime | None:
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).replace(tzinfo=None)


def _table(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("record_timestamp", pa.timestamp("us")),
        ("dead_lettered_at", pa.timestamp("us")),
        ("occurred_at", pa.timestamp("us")),
    ]
)
PENDING_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("interaction_uuid", pa.string()),
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("record_timestamp", pa.timestamp("us")),
        ("occurred_at", pa.timestamp("us")),
    ]
)
ERASURE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("key_kind", pa.string()),
        ("key", pa.string()),
        ("occurred_at", pa.timestamp("us")),
        ("reason", pa.string()),
    ]
)


class _Fold:
    """One batch's application; `run` is called inside the transaction."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: PreparedBatch,
        *,
        replay: bool = False,
        registry: EventRegistry | None = None,
    ) -> None:
        self.con = con
        self.batch = batch
        self.replay = replay
        self.registry = registry
        self.stats = BatchStats(records=len(batch))
        self.now = datetime.now(UTC).replace(tzinfo=None)
        self.dead: list[tuple[Any, ...]] = []
        # keys whose aggregates must be recomputed, and the daily counters' changes
        self.deltas = aggregates.Deltas()
        self.sessions: set[str] = set()
        # sessions whose conversation row changes: new turns, and feedback, clicks or reviews applied
        self.conversations: set[str] = set()
        # Privacy (projector/forget.py): the retention watermark, whether any erasure is stored, the
        # erased turns among the uuids this batch names, and what this batch drops for them.
        self.watermark: date | None = None
        self.has_erasures = False
        self._erasure_list: list[forget.Erasure] | None = None
        self.tombstones: set[str] = set()
        self.new_tombstones: list[tuple[str, str]] = []  # (interaction uuid, erasure event id)
        self.credits: Counter[str] = Counter()  # turns dropped on arrival, by the erasure that covers them
        self.turns_aged = 0

    def run(self) -> BatchStats:
        live = self._live_positions()
        for pos, reason, detail, event_id, type_ in self.batch.rejections:
            if pos in live:
                self._dead_letter(self._source(pos), reason, detail, event_id, type_)
        events = self._first_of_each_event_id([e for e in self.batch.events if e.pos in live])
        self._insert_applied_ids(events)
        turn_events = [e for e in events if e.type == TURN]
        dependent_events = [e for e in events if e.type in (FEEDBACK, CLICK, REVIEW)]
        named = {e.interaction_uuid for e in (*turn_events, *dependent_events) if e.interaction_uuid}
        self._load_privacy(named)
        # One lookup of every interaction the batch names, before it changes any: the first turn of a
        # duplicate interaction, and the turns that feedback, clicks and reviews apply to, as they stand.
        stored = self._stored_turns(named)
        turn_events = self._screen_turns(turn_events, stored)
        new_turns = self._insert_turns(turn_events, stored)
        self._apply_dependents(stored, new_turns, dependent_events)
        self._insert_usage(self._unaged([e for e in events if e.type == USAGE]))
        self._insert_dead_letters()
        self._record_dropped()
        aggregates.refresh(self.con, sessions=self.sessions, deltas=self.deltas)
        conversations.refresh(self.con, self.sessions | self.conversations)
        # After the batch's own rows are in, so that an erasure also covers turns of this batch that
        # came after it in the log: what it removes depends on time and key, never on arrival order.
        self._apply_erasures([e for e in events if e.type == ERASURE])
        self._count_applied()
        self._store_offsets()
        return self.stats

    # -- positions and duplicates ------------------------------------------------------------------

    def _live_positions(self) -> set[int]:
        """Positions of records at or past the stored offset of their partition: the rest is already folded."""
        if self.replay:
            return set(range(len(self.batch)))
        stored: dict[tuple[str, int], int] = {
            (t, p): o for t, p, o in self.con.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        }
        live: set[int] = set()
        b = self.batch
        for pos, key in enumerate(zip(b.topics, b.partitions, strict=True)):
            offset = b.offsets[pos]
            if offset >= stored.get(key, 0):
                live.add(pos)
                self.stats.offsets[key] = max(self.stats.offsets.get(key, 0), offset + 1)
            else:
                self.stats.skipped_below_offset += 1
        return live

    def _first_of_each_event_id(self, events: list[Prepared]) -> list[Prepared]:
        if not events:
            return []
        ids = sorted({e.event_id for e in events})
        seen = {
            row[0]
            for row in self._where_in(
                "SELECT event_id::VARCHAR FROM applied_events WHERE event_id IN ({})", ids, max_placeholders=0
            )
        }
        kept: list[Prepared] = []
        for e in events:
            if e.event_id in seen:
                self.stats.duplicates += 1
                continue
            seen.add(e.event_id)
            kept.append(e)
        return kept

    def _insert_applied_ids(self, events: list[Prepared]) -> None:
        if not events:
            return
        ids = pa.table({"event_id": pa.array([e.event_id for e in events], pa.string())})
        with registered(self.con, "new_event_ids", ids):
            self.con.execute("INSERT INTO applied_events SELECT event_id::UUID FROM new_event_ids")

    # -- turns -------------------------------------------------------------------------------------

    def _where_in(self, sql: str, uuids: list[str], *, max_placeholders: int = _IN_LIST_MAX) -> list[tuple[Any, ...]]:
        """Runs `sql`, whose `{}` is where the set of `uuids` goes (`... IN ({})`): as an IN list of
        parameters when short enough, else as one list parameter, unnested, or a registered table for a
        catch-up batch's thousands."""
        if len(uuids) <= max_placeholders:
            return self.con.execute(sql.format(", ".join("?" * len(uuids))), uuids).fetchall()
        if len(uuids) <= _LIST_PARAM_MAX:
            return self.con.execute(sql.format("SELECT unnest(?::UUID[])"), [uuids]).fetchall()
        with registered(self.con, "uuid_set", pa.table({"uuid": pa.array(uuids, pa.string())})):
            return self.con.execute(sql.format("SELECT uuid::UUID FROM uuid_set")).fetchall()

    def _stored_turns(self, uuids: set[str]) -> dict[str, _Turn]:
        """The stored turns among `uuids`, in two steps: a scan of the uuid column alone finds their row
        ids, then only the row groups between the first and the last are read for the other columns
        (live events mostly concern recent turns, stored near the end). One scan of every column
        cost ~16 ms at 250 uuids in a million-event file; the strings (session, offerings, user) most."""
        if not uuids:
            return {}
        rowids = [r for (r,) in self._where_in("SELECT rowid FROM interactions WHERE uuid IN ({})", sorted(uuids))]
        if not rowids:
            return {}
        rows = self.con.execute(_READ_TURNS, [min(rowids), max(rowids), rowids]).fetchall()
        return {
            u: _Turn(s, set(orjson.loads(o)), slug, day, created, event_id, aggregates.TurnState(*state))
            for u, event_id, s, o, slug, day, created, *state in rows
        }

    def _insert_turns(self, turns: list[Prepared], stored: dict[str, _Turn]) -> pa.Table | None:
        """Inserts the batch's new turns; returns their rows (None when there is none)."""
        if not turns:
            return None
        existing = {u: t.event_id for u, t in stored.items()}
        accepted: list[Prepared] = []
        for t in turns:
            assert t.interaction_uuid is not None
            first = existing.get(t.interaction_uuid)
            if first is not None:
                detail = f"interaction {t.interaction_uuid} was already recorded by event {first}; the first one stands"
                self._dead_letter(self._source(t.pos), DUPLICATE_INTERACTION, detail, t.event_id, TURN)
                continue
            existing[t.interaction_uuid] = t.event_id
            accepted.append(t)
            self.sessions.add(t.session_id)  # type: ignore[arg-type]
        if accepted:
            table = self.batch.turns
            if len(accepted) < table.num_rows:  # some were below the offset, duplicates or dead letters
                keep = pa.array([t.pos for t in accepted], pa.int64())
                table = table.filter(pc.is_in(table["pos"], value_set=keep))
            with registered(self.con, "new_turns", table):
                self.con.execute(_INSERT_TURNS)
                self.deltas.add_new_turns(self.con)
            columns = [table[name].to_pylist() for name in ("uuid", "user_slug", "session_id", "created")]
            self.deltas.new_turns.extend(zip(*columns, strict=True))
            self.stats.applied[TURN] += len(accepted)
            return table
        return None

    @staticmethod
    def _turns_of(table: pa.Table | None, uuids: set[str]) -> dict[str, _Turn]:
        """The batch's new turns among `uuids`, as `_stored_turns` would read them once inserted."""
        if table is None or not uuids:
            return {}
        table = table.filter(pc.is_in(table["uuid"], value_set=pa.array(sorted(uuids), pa.string())))
        columns = [table[name].to_pylist() for name in _TURN_COLUMNS]
        return {
            uuid: _Turn(
                session_id, set(orjson.loads(offerings)), slug, day, created, event_id, aggregates.NEW_TURN_STATE
            )
            for uuid, event_id, session_id, offerings, slug, day, created in zip(*columns, strict=True)
        }

    # -- feedback, clicks, reviews -----------------------------------------------------------------

    def _apply_dependents(
        self, stored: dict[str, _Turn], new_turns: pa.Table | None, batch_events: list[Prepared]
    ) -> None:
        new_uuids = set(new_turns["uuid"].to_pylist()) if new_turns is not None else set()
        # Waiting events whose turn has just arrived come first: they arrived first.
        waiting = self._take_pending(new_uuids)
        dependents: list[tuple[Prepared, _Source | None]] = [*waiting, *((e, None) for e in batch_events)]
        if not dependents:
            return
        named = {e.interaction_uuid for e, _ in dependents if e.interaction_uuid}
        turns = {**stored, **self._turns_of(new_turns, named & new_uuids)}
        feedback: dict[str, tuple[Any, ...]] = {}
        reviews: dict[str, tuple[Any, ...]] = {}
        clicks: list[tuple[Any, ...]] = []
        pending: list[tuple[Prepared, _Source]] = []
        updated: set[str] = set()
        for event, waited in dependents:
            assert event.interaction_uuid is not None
            if event.interaction_uuid in self.tombstones:  # its turn was erased: nothing to apply it to
                self._settle(event.type)
                self.stats.erased_events += 1
                continue
            turn = turns.get(event.interaction_uuid)
            if turn is None:
                if self._aged(event.row[_OCCURRED_AT[event.type]]):  # its turn is older still: purged
                    self._settle(event.type)
                    self.stats.aged += 1
                    continue
                pending.append((event, waited or self._source(event.pos)))
                continue
            session_id, offerings = turn[0], turn[1]
            if event.session_id != session_id:
                detail = (
                    f"data.session_id: {event.session_id!r} is not the session of interaction "
                    f"{event.interaction_uuid} ({session_id!r})"
                )
                self._dead_letter(
                    waited or self._source(event.pos), SESSION_MISMATCH, detail, event.event_id, event.type
                )
                continue
            if event.type == CLICK and event.row[2] not in offerings:
                detail = (
                    f"data.offering_uuid: {event.row[2]} is not among the offerings of interaction "
                    f"{event.interaction_uuid}"
                )
                self._dead_letter(
                    waited or self._source(event.pos), UNKNOWN_OFFERING, detail, event.event_id, event.type
                )
                continue
            if event.type == FEEDBACK:
                feedback[event.interaction_uuid] = event.row  # later ones replace earlier ones
            elif event.type == REVIEW:
                reviews[event.interaction_uuid] = event.row
                self.sessions.add(session_id)
            else:
                clicks.append(event.row)
            self.conversations.add(session_id)
            updated.add(event.interaction_uuid)
            self.stats.applied[event.type] += 1
        self._count_changes(turns, updated, feedback, reviews, clicks)
        self._update_feedback(feedback)
        self._update_reviews(reviews)
        self._insert_clicks(clicks)
        self._park(pending)

    def _take_pending(self, new_turns: set[str]) -> list[tuple[Prepared, _Source]]:
        if not new_turns:
            return []
        rows = self._where_in(
            'SELECT seq, topic, partition, "offset", key, value, record_timestamp FROM pending_events'
            " WHERE interaction_uuid IN ({}) ORDER BY seq",
            sorted(new_turns),
            max_placeholders=0,
        )
        if not rows:
            return []
        seqs = pa.table({"seq": pa.array([r[0] for r in rows], pa.int64())})
        with registered(self.con, "resolved_seqs", seqs):
            self.con.execute("DELETE FROM pending_events WHERE seq IN (SELECT seq FROM resolved_seqs)")
        self.stats.pending_resolved += len(rows)
        sources = [_Source(t, p, o, k, v, ts, seq) for seq, t, p, o, k, v, ts in rows]
        reparsed = prepare([Record(s.topic, s.partition, s.offset, s.key, s.value) for s in sources], self.registry)
        # A parked event was valid when parked; if this release can no longer read it, say so loudly.
        for pos, reason, detail, event_id, type_ in reparsed.rejections:
            self._dead_letter(sources[pos], reason, detail, event_id, type_)
        return [(e, sources[e.pos]) for e in reparsed.events]

    def _count_changes(
        self,
        turns: dict[str, _Turn],
        updated: set[str],
        feedback: dict[str, tuple[Any, ...]],
        reviews: dict[str, tuple[Any, ...]],
        clicks: list[tuple[Any, ...]],
    ) -> None:
        """Counts each updated turn out as the lookup read it and in as the updates below leave it."""
        clicked = Counter(c[1] for c in clicks)
        for uuid in updated:
            turn = turns[uuid]
            after = turn.state
            if uuid in clicked:
                after = after._replace(click_count=after.click_count + clicked[uuid])
            if uuid in feedback:
                after = after._replace(fb_score=feedback[uuid][1])
            if uuid in reviews:
                r = reviews[uuid]
                after = after._replace(
                    llm_reviewed_at=r[9],
                    llm_resolution_score=r[1],
                    llm_hallucination_detected=r[3],
                    llm_input_tokens=r[7],
                    llm_output_tokens=r[8],
                )
            self.deltas.change_turn(turn.created_date, turn.user_slug, turn.created, turn.state, after)
            if turn.state.llm_reviewed_at is None and after.llm_reviewed_at is not None:
                self.deltas.newly_reviewed[turn.session_id] += 1

    def _update_feedback(self, feedback: dict[str, tuple[Any, ...]]) -> None:
        if feedback:
            with registered(self.con, "new_feedback", _table(list(feedback.values()), FEEDBACK_SCHEMA)):
                self.con.execute(_UPDATE_FEEDBACK)

    def _update_reviews(self, reviews: dict[str, tuple[Any, ...]]) -> None:
        if reviews:
            with registered(self.con, "new_reviews", _table(list(reviews.values()), REVIEW_SCHEMA)):
                self.con.execute(_UPDATE_REVIEWS)

    def _insert_clicks(self, clicks: list[tuple[Any, ...]]) -> None:
        if clicks:
            with registered(self.con, "new_clicks", _table(clicks, CLICK_SCHEMA)):
                self.con.execute(_INSERT_CLICKS)
                self.con.execute(_COUNT_CLICKS)

    def _park(self, pending: list[tuple[Prepared, _Source]]) -> None:
        if not pending:
            return
        # fetchall, not fetchone: DuckDB 2 keeps a half-read result open and refuses the next statement
        ((top,),) = self.con.execute("SELECT coalesce(max(seq), 0) FROM pending_events").fetchall()
        rows = [
            (
                top + i + 1,
                e.interaction_uuid,
                e.event_id,
                e.type,
                s.topic,
                s.partition,
                s.offset,
                s.key,
                s.value,
                s.record_timestamp,
                e.row[_OCCURRED_AT[e.type]],
            )
            for i, (e, s) in enumerate(pending)
        ]
        with registered(self.con, "new_pending", _table(rows, PENDING_SCHEMA)):
            self.con.execute(_INSERT_PENDING)
        self.stats.pending_added += len(rows)

    # -- privacy: retention and erasures (projector/forget.py) --------------------------------------

    def _load_privacy(self, named: set[str]) -> None:
        ((erasures, mark),) = self.con.execute(
            "SELECT (SELECT count(*) FROM erasures), (SELECT value FROM meta WHERE key = ?)", [forget.WATERMARK_KEY]
        ).fetchall()
        self.watermark = date.fromisoformat(mark) if mark else None
        self.has_erasures = bool(erasures)
        if self.has_erasures:
            self.tombstones = forget.tombstoned(self.con, named)

    def _erasures(self) -> list[forget.Erasure]:
        if self._erasure_list is None:
            self._erasure_list = forget.stored_erasures(self.con) if self.has_erasures else []
        return self._erasure_list

    def _aged(self, at: datetime | date) -> bool:
        """Older than the retention watermark: what the purge removed, or would."""
        if self.watermark is None:
            return False
        day = at.date() if isinstance(at, datetime) else at
        return day < self.watermark

    def _unaged(self, usage: list[Prepared]) -> list[Prepared]:
        kept = [u for u in usage if not self._aged(u.row[1])]
        for _ in range(len(usage) - len(kept)):
            self._settle(USAGE)
            self.stats.aged += 1
        return kept

    def _settle(self, type_: str) -> None:
        # An event accepted but moot (erased, or too old) counts as applied: so the counts are the same
        # whether it came before or after what makes it moot (see forget.count_settled).
        self.stats.applied[type_] += 1

    def _screen_turns(self, turns: list[Prepared], stored: dict[str, _Turn]) -> list[Prepared]:
        """The arriving turns that are stored; the others are dropped: a copy of an erased turn, a turn
        older than the retention watermark, or one a stored erasure covers (it gets a tombstone, so that
        its feedback, clicks and reviews are dropped too, and its tokens stay in the day's budget)."""
        if not turns or (not self.has_erasures and self.watermark is None):
            return turns
        table = self.batch.turns
        positions = pa.array([t.pos for t in turns], pa.int64())
        table = table.filter(pc.is_in(table["pos"], value_set=positions))
        facts = dict(
            zip(
                table["pos"].to_pylist(),
                zip(
                    table["created_date"].to_pylist(),
                    pc.add(table["input_tokens"], table["output_tokens"]).to_pylist(),
                    strict=True,
                ),
                strict=True,
            )
        )
        matches: dict[int, str] = {}
        if self.has_erasures:
            columns = table.select(["pos", "session_id", "user_slug", "created"])
            with registered(self.con, "arriving_turns", columns):
                matches = dict(self.con.execute(_ERASURE_MATCHES).fetchall())
        kept: list[Prepared] = []
        standing = set(stored)
        for t in turns:
            uuid = t.interaction_uuid
            assert uuid is not None
            day, tokens = facts[t.pos]
            if uuid in self.tombstones:
                self._settle(TURN)
                self.stats.erased_events += 1
                continue
            if self.watermark is not None and day < self.watermark:
                self._settle(TURN)
                self.stats.aged += 1
                self.turns_aged += 1
                continue
            erasure = matches.get(t.pos)
            if erasure is not None:
                self._settle(TURN)
                if uuid in standing:  # a copy of a turn that stands: it would be a dead letter, erased
                    self.stats.erased_events += 1
                    continue
                self.tombstones.add(uuid)
                self.new_tombstones.append((uuid, erasure))
                self.credits[erasure] += 1
                self.deltas.add_erased(day, int(tokens))
                self.stats.erased += 1
                continue
            standing.add(uuid)
            kept.append(t)
        return kept

    def _drop_forgotten_dead_letters(self) -> None:
        """A dead letter is not kept when it is older than the watermark or holds erased data; one the
        fold gave to a valid event counts as settled, as it does when an erasure deletes it later."""
        if not self.dead or (not self.has_erasures and not self.new_tombstones and self.watermark is None):
            return
        facts = [forget.raw_facts(row[4]) for row in self.dead]  # parsed again: dead letters are rare
        tombstones = self.tombstones
        if self.has_erasures:
            tombstones = tombstones | forget.tombstoned(
                self.con, {f.interaction_uuid for f in facts if f.interaction_uuid}
            )
        since = datetime.combine(self.watermark, datetime.min.time()) if self.watermark is not None else None
        kept = []
        for row, f in zip(self.dead, facts, strict=True):
            record_ts, reason, type_ = row[9], row[5], row[8]
            at = f.occurred_at or record_ts  # as the purge reads it: coalesce(occurred_at, record_timestamp)
            if since is not None and at is not None and at < since:
                self.stats.aged += 1
            elif forget.erased_dead_letter(row[3], f, record_ts, self._erasures(), tombstones):
                self.stats.erased_events += 1
            else:
                kept.append(row)
                continue
            if reason in FOLD_REASONS and type_:
                self._settle(type_)
            self.stats.dead_letters[reason] -= 1
            if not self.stats.dead_letters[reason]:
                del self.stats.dead_letters[reason]
        self.dead = kept

    def _record_dropped(self) -> None:
        """Tombstones of the turns dropped on arrival, their erasures' counts, and the waiting events
        of those turns (dropped, counted as settled)."""
        if self.new_tombstones:
            forget.add_tombstones(self.con, (u for u, _ in self.new_tombstones))
            uuids = sorted({u for u, _ in self.new_tombstones})
            waiting = self._where_in(
                "SELECT type, count(*) FROM pending_events WHERE interaction_uuid IN ({}) GROUP BY type",
                uuids,
                max_placeholders=0,
            )
            if waiting:
                self._where_in("DELETE FROM pending_events WHERE interaction_uuid IN ({})", uuids, max_placeholders=0)
                for type_, n in waiting:
                    self.stats.applied[type_] += int(n)
                    self.stats.erased_events += int(n)
                self.stats.pending_resolved += sum(int(n) for _, n in waiting)
        if self.credits:
            table = pa.table(
                {
                    "event_id": pa.array(list(self.credits), pa.string()),
                    "n": pa.array(list(self.credits.values()), pa.int64()),
                }
            )
            with registered(self.con, "erasure_credits", table):
                self.con.execute(
                    "UPDATE erasures SET rows_removed = erasures.rows_removed + c.n"
                    " FROM erasure_credits c WHERE erasures.event_id = c.event_id::UUID"
                )
        forget.add_to_meta(self.con, forget.TURNS_PURGED_KEY, self.turns_aged)

    def _apply_erasures(self, erasures: list[Prepared]) -> None:
        """Each erasure of the batch, in log order: its record, then the turns it covers removed with
        everything attached (their tokens kept in the budget), tombstones, and its dead letters."""
        for event in erasures:
            erasure = forget.Erasure(*event.row[:4])
            with registered(self.con, "new_erasure", _table([event.row], ERASURE_SCHEMA)):
                self.con.execute(
                    "INSERT INTO erasures SELECT event_id::UUID, key_kind, key, occurred_at, reason, 0 FROM new_erasure"
                )
            where, params = forget.erasure_condition(erasure)
            removed = forget.remove_turns(self.con, where, params)
            forget.keep_in_budget(self.con, removed.days)
            forget.add_tombstones(self.con, removed.uuids)
            self.tombstones.update(removed.uuids)
            self._erase_dead_letters(erasure, set(removed.uuids))
            if removed.uuids:
                self.con.execute(
                    "UPDATE erasures SET rows_removed = ? WHERE event_id = ?", [len(removed.uuids), erasure.event_id]
                )
            self.has_erasures = True
            if self._erasure_list is not None:
                self._erasure_list.append(erasure)
            self.stats.erasures += 1
            self.stats.erased += len(removed.uuids)
            self.stats.applied[ERASURE] += 1

    def _erase_dead_letters(self, erasure: forget.Erasure, removed: set[str]) -> None:
        rows = self.con.execute(
            'SELECT topic, partition, "offset", key, value, record_timestamp, reason, type FROM dead_letters'
        ).fetchall()
        gone = [r for r in rows if forget.erased_dead_letter(r[3], forget.raw_facts(r[4]), r[5], [erasure], removed)]
        if not gone:
            return
        keys = pa.table(
            {
                "topic": pa.array([r[0] for r in gone], pa.string()),
                "partition": pa.array([r[1] for r in gone], pa.int32()),
                "offset": pa.array([r[2] for r in gone], pa.int64()),
            }
        )
        with registered(self.con, "erased_letters", keys):
            self.con.execute(
                "DELETE FROM dead_letters d USING erased_letters e WHERE d.topic = e.topic"
                ' AND d.partition = e.partition AND d."offset" = e."offset"'
            )
        for r in gone:
            if r[6] in FOLD_REASONS and r[7]:
                self._settle(r[7])
        self.stats.erased_events += len(gone)

    # -- usage -------------------------------------------------------------------------------------

    def _insert_usage(self, usage: list[Prepared]) -> None:
        if not usage:
            return
        with registered(self.con, "new_usage", _table([u.row for u in usage], USAGE_SCHEMA)):
            self.con.execute(_INSERT_USAGE)
        for u in usage:
            self.deltas.add_usage(u.row[2], u.row[3], u.row[4])
        self.stats.applied[USAGE] += len(usage)

    # -- dead letters and offsets ------------------------------------------------------------------

    def _source(self, pos: int) -> _Source:
        b = self.batch
        return _Source(
            b.topics[pos],
            b.partitions[pos],
            b.offsets[pos],
            b.keys[pos],
            b.values[pos],
            _record_time(b.timestamps[pos]),
            None,
        )

    def _dead_letter(self, source: _Source, reason: str, detail: str, event_id: str | None, type_: str | None) -> None:
        self.dead.append(
            (
                source.topic,
                source.partition,
                source.offset,
                source.key,
                source.value,
                reason,
                detail,
                event_id,
                type_,
                source.record_timestamp,
                self.now,
                forget.raw_facts(source.value).occurred_at,
            )
        )
        self.stats.dead_letters[reason] += 1

    def _insert_dead_letters(self) -> None:
        self._drop_forgotten_dead_letters()
        if self.dead:
            with registered(self.con, "new_dead_letters", _table(self.dead, DEAD_LETTER_SCHEMA)):
                self.con.execute("INSERT INTO dead_letters BY NAME SELECT * FROM new_dead_letters")

    def _count_applied(self) -> None:
        # Kept in the file so that an offline `status` knows what a feedback or review replaced.
        if not self.stats.applied:
            return
        rows = sorted(self.stats.applied.items())
        table = _table(rows, pa.schema([("type", pa.string()), ("events", pa.int64())]))
        with registered(self.con, "new_applied_counts", table):
            # UPDATE then INSERT of the new keys: a few times cheaper in DuckDB than INSERT ... ON CONFLICT.
            self.con.execute(
                "UPDATE applied_counts SET events = applied_counts.events + n.events"
                " FROM new_applied_counts n WHERE applied_counts.type = n.type"
            )
            self.con.execute(
                "INSERT INTO applied_counts SELECT type, events FROM new_applied_counts n"
                " ANTI JOIN applied_counts USING (type)"
            )

    def _store_offsets(self) -> None:
        if not self.stats.offsets:
            return
        rows = [(t, p, o) for (t, p), o in sorted(self.stats.offsets.items())]
        table = _table(
            rows, pa.schema([("topic", pa.string()), ("partition", pa.int32()), ("next_offset", pa.int64())])
        )
        with registered(self.con, "new_offsets", table):
            self.con.execute(
                "UPDATE offsets SET next_offset = greatest(offsets.next_offset, n.next_offset) FROM new_offsets n"
                " WHERE offsets.topic = n.topic AND offsets.partition = n.partition"
            )
            self.con.execute(
                "INSERT INTO offsets SELECT topic, partition, next_offset FROM new_offsets n"
                " ANTI JOIN offsets USING (topic, partition)"
            )


# The columns of `_Turn`, for row ids found by uuid: the range lets DuckDB skip the row groups outside it.
_READ_TURNS = """
SELECT uuid::VARCHAR, event_id::VARCHAR, session_id, offering_uuids, user_slug, created_date, created,
       click_count, fb_score, llm_reviewed_at, llm_resolution_score, llm_hallucination_detected,
       llm_input_tokens, llm_output_tokens
FROM interactions
WHERE rowid BETWEEN ? AND ? AND rowid = ANY(?)
"""

# The interactions table is the one these statements serve (schemas/readmodel.py); defaults for a
# turn without feedback, review or clicks are spelled out here so that a new turn is one INSERT.
_INSERT_TURNS = """
INSERT INTO interactions BY NAME
SELECT
    uuid::UUID AS uuid, session_id, user_slug, user_input, assistant_blocks, search_terms, offering_uuids,
    result_count, is_flagged, severity, injection_categories, pii_categories, action_taken, warning, ip_address,
    last_active_at, created, created_date, input_tokens, output_tokens, model, is_clarification,
    0 AS click_count,
    NULL AS fb_score, NULL AS fb_category, '' AS fb_comment, NULL AS fb_ip, NULL AS fb_submitted_at,
    NULL AS llm_resolution_score, '' AS llm_intent_category, false AS llm_hallucination_detected,
    '' AS llm_hallucination_details, '' AS llm_summary, '' AS llm_judge_model,
    0 AS llm_input_tokens, 0 AS llm_output_tokens, NULL AS llm_reviewed_at,
    event_id::UUID AS event_id, source_partition, source_offset
FROM new_turns
"""

_UPDATE_FEEDBACK = """
UPDATE interactions SET
    fb_score = f.score, fb_category = f.category, fb_comment = f.comment, fb_ip = f.ip, fb_submitted_at = f.submitted_at
FROM new_feedback f
WHERE interactions.uuid = f.uuid::UUID
"""

_UPDATE_REVIEWS = """
UPDATE interactions SET
    llm_resolution_score = r.resolution_score,
    llm_intent_category = r.intent_category,
    llm_hallucination_detected = r.hallucination_detected,
    llm_hallucination_details = r.hallucination_details,
    llm_summary = r.summary,
    llm_judge_model = r.judge_model,
    llm_input_tokens = r.input_tokens,
    llm_output_tokens = r.output_tokens,
    llm_reviewed_at = r.reviewed_at
FROM new_reviews r
WHERE interactions.uuid = r.uuid::UUID
"""

_INSERT_CLICKS = """
INSERT INTO clicks
SELECT event_id::UUID, interaction_uuid::UUID, offering_uuid::UUID, session_id, occurred_at FROM new_clicks
"""

_COUNT_CLICKS = """
UPDATE interactions SET click_count = interactions.click_count + c.n
FROM (SELECT interaction_uuid::UUID AS uuid, count(*) AS n FROM new_clicks GROUP BY 1) c
WHERE interactions.uuid = c.uuid
"""

_INSERT_USAGE = """
INSERT INTO usage_events
SELECT event_id::UUID, occurred_at, day, input_tokens, output_tokens, source FROM new_usage
"""

_INSERT_PENDING = """
INSERT INTO pending_events BY NAME
SELECT seq, interaction_uuid::UUID AS interaction_uuid, event_id::UUID AS event_id, type, topic, partition,
       "offset", key, value, record_timestamp, occurred_at
FROM new_pending
"""

# The stored erasure that covers each arriving turn (the earliest, for its count), if any.
_ERASURE_MATCHES = """
SELECT t.pos, e.event_id::VARCHAR
FROM arriving_turns t JOIN erasures e
  ON ((e.key_kind = 'session_id' AND e.key = t.session_id) OR (e.key_kind = 'user_slug' AND e.key = t.user_slug))
 AND t.created <= e.occurred_at
QUALIFY row_number() OVER (PARTITION BY t.pos ORDER BY e.occurred_at, e.event_id) = 1
"""
