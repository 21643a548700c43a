"""Step 1 of the fold, `prepare`: a batch of records parsed and shaped into rows, without a database.

It runs in a parser process during catch-up (projector/pipeline.py), so what it returns, a
`PreparedBatch`, is what travels between processes: plain columns, tuples and an Arrow table, laid out
to be cheap to pickle. Each valid event becomes the row its table needs (JSON text, the stemmed
`search_terms`, timestamps in UTC); each invalid one a rejection with its dead-letter reason and
detail. Step 2, `projector/apply.py`, writes them in one transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from projector.arrow_views import rows_table, schema_of
from projector.gcpause import gc_paused
from projector.records import Record
from schemas import fastparse
from schemas.events import (
    ERASURE_REQUESTED,
    FEEDBACK_SUBMITTED,
    OFFERING_CLICKED,
    SESSION_REVIEWED,
    TURN_RECORDED,
    USAGE_RECORDED,
    ErasureRequested,
    FeedbackSubmitted,
    OfferingClicked,
    SessionReviewed,
    TurnRecorded,
    UsageRecorded,
)
from schemas.fulltext import document_terms
from schemas.registry import INVALID_DATA, EventRegistry, Rejection
from schemas.settings import ip_policy

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


# -- the rows of each type ---------------------------------------------------------------------------


class FeedbackRow(NamedTuple):
    uuid: str
    score: int
    category: str | None
    comment: str
    ip: str | None
    submitted_at: datetime

    @property
    def occurred_at(self) -> datetime:
        return self.submitted_at


class ReviewRow(NamedTuple):
    uuid: str
    resolution_score: int
    intent_category: str
    hallucination_detected: bool
    hallucination_details: str
    summary: str
    judge_model: str
    input_tokens: int
    output_tokens: int
    reviewed_at: datetime

    @property
    def occurred_at(self) -> datetime:
        return self.reviewed_at


class ClickRow(NamedTuple):
    event_id: str
    interaction_uuid: str
    offering_uuid: str
    session_id: str
    occurred_at: datetime


class UsageRow(NamedTuple):
    event_id: str
    occurred_at: datetime
    day: date
    input_tokens: int
    output_tokens: int
    source: str


class ErasureRow(NamedTuple):
    event_id: str
    key_kind: str
    key: str
    occurred_at: datetime
    reason: str


Row = FeedbackRow | ReviewRow | ClickRow | UsageRow | ErasureRow
# The row class of each type, to rebuild rows shipped as plain tuples.
ROW_TYPES: dict[str, type[Any]] = {
    FEEDBACK_SUBMITTED: FeedbackRow,
    SESSION_REVIEWED: ReviewRow,
    OFFERING_CLICKED: ClickRow,
    USAGE_RECORDED: UsageRow,
    ERASURE_REQUESTED: ErasureRow,
}


_TS = pa.timestamp("us")
FEEDBACK_SCHEMA = schema_of(FeedbackRow, [pa.string(), pa.int8(), pa.string(), pa.string(), pa.string(), _TS])
REVIEW_SCHEMA = schema_of(
    ReviewRow,
    [
        pa.string(),
        pa.int8(),
        pa.string(),
        pa.bool_(),
        pa.string(),
        pa.string(),
        pa.string(),
        pa.int64(),
        pa.int64(),
        pa.timestamp("us"),
    ],
)
CLICK_SCHEMA = schema_of(ClickRow, [pa.string(), pa.string(), pa.string(), pa.string(), pa.timestamp("us")])
USAGE_SCHEMA = schema_of(UsageRow, [pa.string(), pa.timestamp("us"), pa.date32(), pa.int64(), pa.int64(), pa.string()])
ERASURE_SCHEMA = schema_of(ErasureRow, [pa.string(), pa.string(), pa.string(), pa.timestamp("us"), pa.string()])

# A turn's full row, a column per field (built as a plain tuple: a turn is the most common event).
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
_TURN_IP = TURN_SCHEMA.get_field_index("ip_address")


# -- the batch ---------------------------------------------------------------------------------------


class Rejected(NamedTuple):
    """A record that does not parse (or a value no column can hold): its dead letter's fields."""

    pos: int
    reason: str
    detail: str
    event_id: str | None
    type: str | None


class Prepared(NamedTuple):
    """One valid event, shaped for its table: `row` is its type's row above (`ROW_TYPES`)."""

    pos: int  # index of its record in the batch
    type: str
    event_id: str
    interaction_uuid: str | None
    session_id: str | None
    row: Row


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
    rejections: list[Rejected]
    turns: pa.Table  # TURN_SCHEMA plus `pos`, one row per turn event

    def __len__(self) -> int:
        return len(self.offsets)

    def shipped(self) -> tuple[Any, ...]:
        """The batch as plain values, what a parser process pickles (`from_shipped` makes it again): events
        and their rows travel as plain tuples, since pickling a namedtuple per event cost a parser ~5%."""
        return (
            self.topics,
            self.partitions,
            self.offsets,
            self.keys,
            self.values,
            self.timestamps,
            [(*e[:5], tuple(e.row)) for e in self.events],
            self.rejections,
            self.turns,
        )

    @staticmethod
    def from_shipped(fields: tuple[Any, ...], first: int = 0) -> PreparedBatch:
        """The batch of `shipped()` values, its positions moved by `first`: where it starts in the writer's
        transaction, so that `merge_prepared(..., numbered=True)` only concatenates (renumbering every
        event a second time there was ~6% of the writer's CPU)."""
        *head, events, rejections, turns = fields
        if first:
            rejections = [r._replace(pos=r.pos + first) for r in rejections]
            turns = turns.set_column(turns.schema.get_field_index("pos"), "pos", pc.add(turns["pos"], first))
        prepared = [_new(Prepared, (e[0] + first, *e[1:5], _new(ROW_TYPES[e[1]], e[5]))) for e in events]
        return PreparedBatch(*head, prepared, rejections, turns)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_unpickle_batch, self.shipped())


# A named tuple made from a plain one without its Python-level `__new__`: the writer remakes every event of
# every shipped batch.
_new = tuple.__new__


def _unpickle_batch(*fields: Any) -> PreparedBatch:
    return PreparedBatch.from_shipped(fields)


def merge_prepared(batches: Sequence[PreparedBatch], *, numbered: bool = False) -> PreparedBatch:
    """Consecutive prepared batches as one, positions renumbered: a parser ships small batches (its
    memory), the writer applies them in bigger transactions (each transaction costs a fixed ~0.1 s of
    table scans and aggregate refreshes, whatever its size). `numbered`: each batch's positions already
    count from where it starts in the merged one (`PreparedBatch.from_shipped`)."""
    if len(batches) == 1:
        return batches[0]
    merged = PreparedBatch([], [], [], [], [], [], [], [], batches[0].turns.slice(0, 0))
    tables = []
    for batch in batches:
        shift = 0 if numbered else len(merged)
        merged.topics += batch.topics
        merged.partitions += batch.partitions
        merged.offsets += batch.offsets
        merged.keys += batch.keys
        merged.values += batch.values
        merged.timestamps += batch.timestamps
        if shift:
            merged.events += [_new(Prepared, (pos + shift, *rest)) for pos, *rest in batch.events]
            merged.rejections += [r._replace(pos=r.pos + shift) for r in batch.rejections]
            pos = batch.turns.schema.get_field_index("pos")
            tables.append(batch.turns.set_column(pos, "pos", pc.add(batch.turns["pos"], shift)))
        else:
            merged.events += batch.events
            merged.rejections += batch.rejections
            tables.append(batch.turns)
    merged.turns = pa.concat_tables(tables)
    return merged


PARSE_CHUNK = 1_000  # values parsed at a time: their models are dropped once shaped into rows


def prepare(records: Sequence[Record], registry: EventRegistry | None = None) -> PreparedBatch:
    """Parses and shapes a whole batch; touches no database, so it can run in a parser process.
    `registry` is this release's (the default) unless a caller knows other versions, as a dead-letter
    retry under test does."""
    records = list(records)
    # The records' fields as columns, transposed in C (six comprehensions over the batch cost ~1 µs an event).
    topics, partitions, offsets, keys, values, timestamps = (
        map(list, zip(*records, strict=True)) if records else ([] for _ in Record._fields)
    )
    # This release's events: the ordinary ones through the fast parse, the rest through the models.
    parse = fastparse.parse_many if registry is None else registry.parse_many
    # The IP policy (docs/privacy.md): with `drop`, an IP that arrives anyway is not stored.
    shaped = _Shaped(drop_ip=ip_policy() == "drop")
    with gc_paused():
        # In chunks: the models of a whole 20,000-record batch took ~6 KB per event at once.
        for start in range(0, len(values), PARSE_CHUNK):
            shaped.add(records, start, parse(values[start : start + PARSE_CHUNK]))
    return PreparedBatch(
        topics=topics,
        partitions=partitions,
        offsets=offsets,
        keys=keys,
        values=values,
        timestamps=timestamps,
        events=shaped.events,
        rejections=shaped.rejections,
        turns=rows_table(shaped.turn_rows, TURN_SCHEMA_WITH_POS),
    )


def _uuid_texts(values: list[UUID | None]) -> list[str | None]:
    # orjson writes UUIDs in the canonical form of str(UUID), but in C: one call for the whole batch.
    return orjson.loads(orjson.dumps(values))  # type: ignore[no-any-return]


class _Shaped:
    """The rows of a batch's valid events and its rejections, in record order, filled chunk by chunk."""

    def __init__(self, *, drop_ip: bool = False) -> None:
        self.drop_ip = drop_ip
        self.events: list[Prepared] = []
        self.rejections: list[Rejected] = []
        self.turn_rows: list[tuple[Any, ...]] = []

    def add(self, records: list[Record], first: int, parsed: list[Any]) -> None:
        """Shapes the parsed events of `records[first : first + len(parsed)]`."""
        valid: list[tuple[int, Any]] = []
        rejections = self.rejections
        for pos, event in enumerate(parsed, first):
            if isinstance(event, Rejection):
                rejections.append(Rejected(pos, event.reason, event.detail, event.event_id, event.type))
            else:
                valid.append((pos, event))
        event_ids = _uuid_texts([e.event_id for _, e in valid])
        interactions = _uuid_texts([getattr(e.data, "interaction_uuid", None) for _, e in valid])
        events, turn_rows = self.events, self.turn_rows
        out_of_range = False
        for (pos, event), event_id, uuid in zip(valid, event_ids, interactions, strict=True):
            try:
                if event.type == TURN_RECORDED:
                    row = _turn_row(records[pos], event, event_id, uuid)  # type: ignore[arg-type]
                    if self.drop_ip:
                        row = (*row[:_TURN_IP], None, *row[_TURN_IP + 1 :])
                    turn_rows.append((*row, pos))  # a turn is its row of `turns` only
                else:
                    prepared = _SHAPERS[event.type](pos, event, event_id, uuid)
                    if self.drop_ip and event.type == FEEDBACK_SUBMITTED:
                        prepared = prepared._replace(row=prepared.row._replace(ip=None))
                    events.append(prepared)
            except _OutOfRange as exc:
                rejections.append(Rejected(pos, INVALID_DATA, str(exc), event_id, event.type))
                out_of_range = True
        if out_of_range:
            rejections.sort(key=lambda r: r.pos)  # record order, as for the parsing rejections


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


def may_ask_user(value: bytes | None) -> bool:
    """Whether the raw event `value` can hold a block that asks the visitor: every way a block asks
    spells `ask_user` in a JSON string, literally or through a `\\u` escape. Most turns have neither,
    and substring searches in C spare them the walk of their blocks (~1.9 µs a turn). A value without a
    backslash has no escape, and a one-byte search is a memchr: the test took 0.64 µs a turn instead of
    1.2 (20,000 demo turns of 674 bytes on average, none holding a backslash)."""
    return value is None or b"ask_user" in value or (b"\\" in value and b"\\u" in value)


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
        may_ask_user(record.value) and is_clarification(blocks),
        event_id,
        record.partition,
        record.offset,
    )
    return row


def _feedback(pos: int, event: FeedbackSubmitted, event_id: str, uuid: str) -> Prepared:
    d = event.data
    row = FeedbackRow(uuid, d.score, d.category, d.comment, d.ip_address, _naive(event.occurred_at))
    return Prepared(pos, FEEDBACK_SUBMITTED, event_id, uuid, d.session_id, row)


def _review(pos: int, event: SessionReviewed, event_id: str, uuid: str) -> Prepared:
    d = event.data
    row = ReviewRow(
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
    return Prepared(pos, SESSION_REVIEWED, event_id, uuid, d.session_id, row)


def _click(pos: int, event: OfferingClicked, event_id: str, uuid: str) -> Prepared:
    d = event.data
    row = ClickRow(event_id, uuid, str(d.offering_uuid), d.session_id, _naive(event.occurred_at))
    return Prepared(pos, OFFERING_CLICKED, event_id, uuid, d.session_id, row)


def _usage(pos: int, event: UsageRecorded, event_id: str, uuid: None) -> Prepared:
    d = event.data
    at = _naive(event.occurred_at)
    row = UsageRow(
        event_id,
        at,
        at.date(),
        _check("input_tokens", d.input_tokens, _INT64_MAX),
        _check("output_tokens", d.output_tokens, _INT64_MAX),
        d.source,
    )
    return Prepared(pos, USAGE_RECORDED, event_id, None, None, row)


def _erasure(pos: int, event: ErasureRequested, event_id: str, uuid: None) -> Prepared:
    kind, key = event.data.key
    row = ErasureRow(event_id, kind, key, _naive(event.occurred_at), event.data.reason)
    return Prepared(pos, ERASURE_REQUESTED, event_id, None, event.data.session_id, row)


_SHAPERS: dict[str, Any] = {
    FEEDBACK_SUBMITTED: _feedback,
    SESSION_REVIEWED: _review,
    OFFERING_CLICKED: _click,
    USAGE_RECORDED: _usage,
    ERASURE_REQUESTED: _erasure,
}
