"""Step 2 of the fold, `apply`: a prepared batch (projector/prepare.py) written in one transaction.

`apply_prepared(con, batch)` skips records below the stored offsets and already-applied event ids,
inserts turns, applies (or parks, or dead-letters) feedback, clicks and reviews, inserts usage,
recomputes the aggregates of the keys it touched, applies erasures, and stores the next offset of
every partition it saw. A crash anywhere leaves the file at the previous batch boundary. The SQL of
each step is at the end of this module, beside the tables it writes (schemas/readmodel.py).

The design: the writer is the one serial stage of a catch-up (readers fetch and prepare in parallel),
so it works on the batch as columns and lets DuckDB do the per-event work, with Python touching only
the events that need a decision of their own (a duplicate, a dead letter, an event that waits):

- Turns, the most common event, exist only as the batch's Arrow table (`PreparedBatch.turns`): the
  new event ids of the whole batch are accepted by one statement over its ids (`_ACCEPT_NEW_EVENT_IDS`), a second
  turn of an interaction is looked for with two Arrow kernels, and the table is inserted as it is.
- Feedback, clicks and reviews become one Arrow table per type (`_dependent_table`, each row with its
  place in log order, `ord`), looked up once among the turns they name (the stored ones as one lookup
  read them, and the batch's new ones), which gives each event its verdict as a column: it applies,
  waits for its turn, or is a `session_mismatch` or `unknown_offering` dead letter. That, the last
  feedback and review of each turn, the applied clicks and each updated turn before and after the batch
  (counted by `aggregates.Deltas.change_turns`) are Arrow kernels over those tables
  (projector/dependents.py): as statements they cost a live batch milliseconds of binding each, for a
  few rows. Only the events that do not apply are walked in Python, in log order, for their dead
  letter's message or their place in `pending_events`.
- Erasures, usage and everything rare stay as `Prepared` events (projector/prepare.py).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from projector import aggregates, conversations, dependents, feedback_records, forget, keysets
from projector.arrow_views import arrow_with, execute_with, rows_table, schema_of
from projector.prepare import (
    CLICK_SCHEMA,
    ERASURE_SCHEMA,
    FEEDBACK_SCHEMA,
    REVIEW_SCHEMA,
    USAGE_SCHEMA,
    ClickRow,
    ErasureRow,
    Prepared,
    PreparedBatch,
    UsageRow,
    prepare,
)
from projector.records import Record
from projector.transaction import transaction
from schemas.events import ERASURE_REQUESTED as ERASURE
from schemas.events import FEEDBACK_SUBMITTED as FEEDBACK
from schemas.events import OFFERING_CLICKED as CLICK
from schemas.events import SESSION_REVIEWED as REVIEW
from schemas.events import TURN_RECORDED as TURN
from schemas.events import USAGE_RECORDED as USAGE
from schemas.readmodel import RECORD_DEFAULTS
from schemas.registry import (
    DUPLICATE_INTERACTION,
    FOLD_REASONS,
    SESSION_MISMATCH,
    UNKNOWN_OFFERING,
    EventRegistry,
)
from serving.changes import ChangeLog, Key, mark_rows, mark_total, total_of, turn_keys
from serving.parsed import parsed

# Up to this many uuids go to DuckDB as parameters (projector.keysets); beyond, as an Arrow table lent to the
# statement: a long Python list converts slowly.
_LIST_PARAM_MAX = 2_000


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
    # The turns the batch inserted or updated (Arrow tables with uuid, session_id and user_slug): what it
    # changed of the answers that read one interaction, session or visitor (`changed_keys`).
    turns_touched: list[pa.Table] = field(default_factory=list)
    # How long folding the batch took (`took`), parsing included when the same call parsed it
    # (`fold.apply_batch`): wall time, and the CPU time of the thread that folded it (DuckDB's own worker
    # threads not counted). Zero when nobody timed it.
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def took(self, since: tuple[float, float]) -> BatchStats:
        """Notes the time since `since` (a `fold_clock()` taken before the batch was parsed) as the fold's."""
        wall, cpu = fold_clock()
        self.seconds, self.cpu_seconds = wall - since[0], cpu - since[1]
        return self


def fold_clock() -> tuple[float, float]:
    """Now, as monotonic wall time and this thread's CPU time (`BatchStats.took`)."""
    return time.monotonic(), time.thread_time()


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


def apply_prepared(
    con: duckdb.DuckDBPyConnection,
    batch: PreparedBatch,
    registry: EventRegistry | None = None,
    *,
    changes: ChangeLog | None = None,
) -> BatchStats:
    """The fold of one batch in a transaction of its own. `changes`: the served file's change log, where
    the commit files what it changed, under the snapshot marks before and after it, and then publishes
    the mark it left (`serving.changes`)."""
    return _committed(con, lambda: apply_in_transaction(con, batch, registry=registry), changes)


def _committed(con: duckdb.DuckDBPyConnection, fold: Callable[[], BatchStats], changes: ChangeLog | None) -> BatchStats:
    """`fold()` in a transaction of its own; with `changes`, the commit files what it changed (its
    `changed_keys`) under the snapshot marks before and after it, then publishes the mark it left."""
    if changes is None:
        with transaction(con):
            return fold()
    filed = None
    try:
        with transaction(con) as commit:
            before = mark_total(con)
            stats = fold()
            after = mark_rows(con)
            filed = changes.expect(before, total_of(after), changed_keys(stats))
    except BaseException:
        changes.retract(filed)
        raise
    if commit.sequence is not None:
        changes.publish(after, commit.sequence)
    return stats


def changed_keys(stats: BatchStats) -> frozenset[Key] | None:
    """The keys of `serving.changes` a folded batch changed; None when it may have changed any (an erasure)."""
    if stats.erasures:
        return None
    uuids: list[str] = []
    sessions: list[str] = []
    users: list[str | None] = []
    for turns in stats.turns_touched:
        uuids += turns["uuid"].to_pylist()
        sessions += turns["session_id"].to_pylist()
        users += turns["user_slug"].to_pylist()
    return turn_keys(uuids, sessions, users)


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


def accept_new_event_ids(con: duckdb.DuckDBPyConnection, batch_ids: pa.Table) -> pa.ChunkedArray:
    """Stores the ids of `batch_ids` (its `event_id` column, UUIDs as DuckDB prints them) that
    `applied_events` does not hold yet, each once, and returns them. Only the stored ids within ranges
    that cover the batch's can match one of them: with time-ordered ids (UUIDv7) DuckDB then skips the
    row groups of the older ones instead of reading every id ever accepted (`keysets.id_ranges`)."""
    sql, params = accept_statement(batch_ids["event_id"])
    return arrow_with(con, sql, params or None, batch_event_ids=batch_ids)["event_id"]


def accept_statement(batch_ids: pa.ChunkedArray) -> tuple[str, list[str]]:
    """The statement of `accept_new_event_ids` for these ids, and its parameters."""
    spans = keysets.id_ranges(batch_ids) or []
    stored = "SELECT event_id FROM applied_events"
    if spans:
        stored += f" WHERE {keysets.within('event_id', spans, 'UUID')}"
    return _ACCEPT_NEW_EVENT_IDS.format(stored), keysets.range_params(spans)


def _record_time(timestamp_ms: int | None) -> datetime | None:
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).replace(tzinfo=None)


class _DeadLetterRow(NamedTuple):
    """A `dead_letters` row this batch writes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    event_id: str | None
    type: str | None
    record_timestamp: datetime | None
    dead_lettered_at: datetime
    occurred_at: datetime | None


class _PendingRow(NamedTuple):
    """A `pending_events` row: a dependent event waiting for its turn."""

    seq: int
    interaction_uuid: str | None
    event_id: str
    type: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    record_timestamp: datetime | None
    occurred_at: datetime


_TS = pa.timestamp("us")
DEAD_LETTER_SCHEMA = schema_of(
    _DeadLetterRow,
    [pa.string(), pa.int32(), pa.int64(), pa.binary(), pa.binary(), pa.string(), pa.string(), pa.string(),
     pa.string(), _TS, _TS, _TS],
)  # fmt: skip
PENDING_SCHEMA = schema_of(
    _PendingRow,
    [pa.int64(), pa.string(), pa.string(), pa.string(), pa.string(), pa.int32(), pa.int64(), pa.binary(),
     pa.binary(), _TS, _TS],
)  # fmt: skip


class _StoredDeadLetter(NamedTuple):
    """A stored dead letter, as an erasure screens it (`_ERASABLE_DEAD_LETTERS`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    record_timestamp: datetime | None
    reason: str
    type: str | None


def _at(table: pa.Table, positions: list[int] | set[int]) -> pa.Table:
    """The rows of `table` (one with `pos`) at these positions of the batch."""
    return table.filter(pc.is_in(table["pos"], value_set=pa.array(sorted(positions), pa.int64())))


def _event_ids(turns: pa.Table) -> dict[str, str]:
    """The event id of each turn of `turns` (`_READ_TURNS`), by interaction uuid."""
    return dict(zip(turns["uuid"].to_pylist(), turns["event_id"].to_pylist(), strict=True))


def _dependent_table(events: list[Prepared], type_: str, schema: pa.Schema) -> pa.Table:
    """The rows of `events` of one dependent type, with `ord` (the event's place among the dependents,
    which is log order) and the session it names."""
    chosen = [(i, e) for i, e in enumerate(events) if e.type == type_]
    table = rows_table([e.row for _, e in chosen], schema)  # type: ignore[misc]
    table = table.append_column("ord", pa.array([i for i, _ in chosen], pa.int64()))
    if "session_id" not in schema.names:
        table = table.append_column("session_id", pa.array([e.session_id for _, e in chosen], pa.string()))
    return table


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
        self.dead: list[_DeadLetterRow] = []
        # keys whose aggregates must be recomputed, and the daily counters' changes
        self.deltas = aggregates.Deltas()
        self.sessions: set[str] = set()
        # sessions whose conversation row changes: new turns, and feedback, clicks or reviews applied
        self.conversations: set[str] = set()
        # Privacy (projector/forget.py): the retention watermark, whether any erasure is stored, the
        # erased turns among the uuids this batch names, and what this batch drops for them.
        self.watermark: date | None = None
        self.has_pending = True  # whether `pending_events` holds any row (`_load_privacy` knows)
        self.conversations_deferred = False  # whether the batch leaves `conversations` alone (the same)
        self.has_erasures = False
        self._erasure_list: list[forget.Erasure] | None = None
        self.tombstones: set[str] = set()
        self.new_tombstones: list[tuple[str, str]] = []  # (interaction uuid, erasure event id)
        self.credits: Counter[str] = Counter()  # turns dropped on arrival, by the erasure that covers them
        self.turns_aged = 0

    def run(self) -> BatchStats:
        live = self._live_positions()
        turns, events = self.batch.turns, self.batch.events
        for r in self.batch.rejections:
            if live is None or r.pos in live:
                self._dead_letter(self._source(r.pos), r.reason, r.detail, r.event_id, r.type)
        if live is not None:
            turns = _at(turns, live)
            events = [e for e in events if e.pos in live]
        turns, events = self._first_of_each_event_id(turns, events)
        dependent_events = [e for e in events if e.type in (FEEDBACK, CLICK, REVIEW)]
        named = pc.unique(
            pa.chunked_array(
                [*turns["uuid"].chunks, pa.array([e.interaction_uuid for e in dependent_events], pa.string())],
                pa.string(),
            )
        )
        self._load_privacy(named)
        # One lookup of every interaction the batch names, before it changes any: the first turn of a
        # duplicate interaction, and the turns that feedback, clicks and reviews apply to, as they stand.
        stored = self._stored_turns(named)
        turns = self._screen_turns(turns, stored)
        new_turns = self._insert_turns(turns, stored)
        self._apply_dependents(stored, new_turns, dependent_events)
        self._insert_usage(self._unaged([e for e in events if e.type == USAGE]))
        self._insert_dead_letters()
        self._record_dropped()
        aggregates.refresh(self.con, sessions=self.sessions, deltas=self.deltas)
        if not self.conversations_deferred:
            conversations.refresh(self.con, self.sessions | self.conversations)
        # After the batch's own rows are in, so that an erasure also covers turns of this batch that
        # came after it in the log: what it removes depends on time and key, never on arrival order.
        self._apply_erasures([e for e in events if e.type == ERASURE])
        self._count_applied()
        _store_offsets(self.con, self.stats.offsets)
        self.stats.turns_touched = [*self.deltas.new_turns, *self.deltas.changed_turns]
        return self.stats

    # -- positions and duplicates ------------------------------------------------------------------

    def _live_positions(self) -> set[int] | None:
        """Positions of records at or past the stored offset of their partition (the rest is already
        folded); None when that is all of them, as it is for every batch of a catch-up."""
        if self.replay:
            return None
        stored: dict[tuple[str, int], int] = {
            (t, p): o
            for t, p, o in self.con.execute(parsed("SELECT topic, partition, next_offset FROM offsets")).fetchall()
        }
        b = self.batch
        # Per partition at once (Arrow's group-by, in C): a catch-up batch is all past its stored offsets,
        # and a loop over its records to say so cost the writer ~2 us a record.
        table = pa.table(
            {
                "topic": pa.array(b.topics, pa.string()),
                "partition": pa.array(b.partitions, pa.int32()),
                "offset": pa.array(b.offsets, pa.int64()),
            }
        )
        groups = table.group_by(["topic", "partition"], use_threads=False).aggregate(
            [("offset", "min"), ("offset", "max")]
        )
        behind = False
        for t, p, low, high in zip(
            groups["topic"].to_pylist(),
            groups["partition"].to_pylist(),
            groups["offset_min"].to_pylist(),
            groups["offset_max"].to_pylist(),
            strict=True,
        ):
            start = stored.get((t, p), 0)
            behind = behind or low < start
            if high >= start:
                self.stats.offsets[(t, p)] = max(self.stats.offsets.get((t, p), 0), high + 1)
        if not behind:
            return None
        live: set[int] = set()
        for pos, key in enumerate(zip(b.topics, b.partitions, strict=True)):
            if b.offsets[pos] >= stored.get(key, 0):
                live.add(pos)
            else:
                self.stats.skipped_below_offset += 1
        return live

    def _first_of_each_event_id(self, turns: pa.Table, events: list[Prepared]) -> tuple[pa.Table, list[Prepared]]:
        """The batch's turns and other events without those whose event id is already accepted (stored,
        or earlier in the batch); the event ids of the rest are stored as accepted. One statement over
        the batch's ids: the turns' come from their Arrow column."""
        if not turns.num_rows and not events:
            return turns, events
        ids = pa.table(
            {
                "pos": pa.chunked_array([*turns["pos"].chunks, pa.array([e.pos for e in events], pa.int64())]),
                "event_id": pa.chunked_array(
                    [*turns["event_id"].chunks, pa.array([e.event_id for e in events], pa.string())]
                ),
            }
        )
        accepted = accept_new_event_ids(self.con, ids)
        if len(accepted) == ids.num_rows:
            # As many new ids as events: each event's id is new and its own, so every event applies. Nearly
            # every catch-up batch; the group-by below cost its writer ~2%.
            return turns, events
        # An event applies when its id is new and this is its first place in the batch. Both prepare paths
        # write an event id as DuckDB prints a UUID (the set-wise one claims no other spelling).
        firsts = ids.group_by("event_id", use_threads=False).aggregate([("pos", "min")])
        applying = firsts.filter(pc.is_in(firsts["event_id"], value_set=accepted))["pos_min"]
        duplicates = ids.filter(pc.invert(pc.is_in(ids["pos"], value_set=applying)))["pos"].to_pylist()
        if duplicates:
            self.stats.duplicates += len(duplicates)
            again = set(duplicates)
            turns = turns.filter(pc.invert(pc.is_in(turns["pos"], value_set=pa.array(duplicates, pa.int64()))))
            events = [e for e in events if e.pos not in again]
        return turns, events

    # -- turns -------------------------------------------------------------------------------------

    def _where_in(
        self, sql: str, uuids: list[str] | pa.Array | pa.ChunkedArray, *, max_placeholders: int = keysets.IN_LIST_MAX
    ) -> list[tuple[Any, ...]]:
        """Runs `sql`, whose `{}` is where the set of `uuids` goes (`... IN ({})`), as `keysets.where_in`
        puts it, or as an Arrow table lent to it for a catch-up batch's thousands (an Arrow column goes as it
        is, never through Python strings)."""
        if len(uuids) <= _LIST_PARAM_MAX and not isinstance(uuids, list):
            uuids = sorted(uuids.to_pylist())
        if len(uuids) <= _LIST_PARAM_MAX:
            statement, params = keysets.where_in(sql, uuids, key_type="UUID", max_placeholders=max_placeholders)
            return self.con.execute(parsed(statement), params).fetchall()
        column = pa.array(uuids, pa.string()) if isinstance(uuids, list) else uuids
        statement = sql.format("SELECT uuid::UUID FROM uuid_set")
        return execute_with(self.con, statement, uuid_set=pa.table({"uuid": column})).fetchall()

    def _stored_turns(self, uuids: pa.Array) -> pa.Table:
        """The stored turns among `uuids` (`_READ_TURNS`), in two steps: a scan of the uuid column alone
        finds their row ids, then only the row groups between the first and the last are read for the
        other columns (live events mostly concern recent turns, stored near the end). One scan of every
        column cost ~16 ms at 250 uuids in a million-event file; the strings (session, offerings, user) most."""
        rowids = [r for (r,) in self._where_in("SELECT rowid FROM interactions WHERE uuid IN ({})", uuids)]
        if not rowids:
            rowids = [-1]  # no row: the table of no turns, with its columns
        return arrow_with(self.con, _READ_TURNS, [min(rowids), max(rowids), rowids])

    def _insert_turns(self, table: pa.Table, stored: pa.Table) -> pa.Table | None:
        """Inserts the batch's new turns (`table`, in log order) but a second turn of an interaction, stored
        (`stored`) or earlier in the batch, which is a dead letter; returns their rows (None when there is none)."""
        if not table.num_rows:
            return None
        uuids = table["uuid"]
        if (
            pc.count_distinct(uuids).as_py() < table.num_rows
            or pc.any(pc.is_in(uuids, value_set=stored["uuid"])).as_py()
        ):
            table = self._without_second_turns(table, stored)
        if not table.num_rows:
            return None
        self.sessions.update(pc.unique(table["session_id"]).to_pylist())
        execute_with(self.con, _INSERT_TURNS, new_turns=table)
        self.deltas.add_new_turns(table)
        self.deltas.new_turns.append(table)
        self.stats.applied[TURN] += table.num_rows
        return table

    def _without_second_turns(self, table: pa.Table, stored: pa.Table) -> pa.Table:
        """`table` without the turns of an interaction already recorded, dead-lettered: the first one stands."""
        existing = _event_ids(stored)
        keep: list[int] = []
        for pos, uuid, event_id in zip(
            table["pos"].to_pylist(), table["uuid"].to_pylist(), table["event_id"].to_pylist(), strict=True
        ):
            first = existing.get(uuid)
            if first is not None:
                detail = f"interaction {uuid} was already recorded by event {first}; the first one stands"
                self._dead_letter(self._source(pos), DUPLICATE_INTERACTION, detail, event_id, TURN)
                continue
            existing[uuid] = event_id
            keep.append(pos)
        return _at(table, keep)

    # -- feedback, clicks, reviews -----------------------------------------------------------------

    def _apply_dependents(self, stored: pa.Table, new_turns: pa.Table | None, batch_events: list[Prepared]) -> None:
        """Feedback, clicks and reviews as Arrow kernels over the batch (projector/dependents.py): their
        verdicts against the turns they name say which apply and which wait, settle or are dead letters;
        only those few go through Python, one by one, in log order."""
        # Waiting events whose turn has just arrived come first: they arrived first.
        waiting = self._take_pending(new_turns)
        arrivals: list[tuple[Prepared, _Source | None]] = [*waiting, *((e, None) for e in batch_events)]
        if self.tombstones:  # their turn was erased: nothing to apply them to
            kept = []
            for event, waited in arrivals:
                if event.interaction_uuid in self.tombstones:
                    self._settle(event.type)
                    self.stats.erased_events += 1
                else:
                    kept.append((event, waited))
            arrivals = kept
        if not arrivals:
            return
        events = [e for e, _ in arrivals]
        feedback_rows = _dependent_table(events, FEEDBACK, FEEDBACK_SCHEMA)
        review_rows = _dependent_table(events, REVIEW, REVIEW_SCHEMA)
        click_rows = _dependent_table(events, CLICK, CLICK_SCHEMA)
        turns = dependents.named_turns(stored, new_turns)
        verdicts = dependents.verdicts(turns, feedback_rows, review_rows, click_rows)
        applied = verdicts.filter(pc.field("verdict") == dependents.APPLY)
        # The last applied feedback and review of each turn: later ones replace earlier ones.
        feedback = dependents.latest_of_each_turn(feedback_rows, applied)
        reviews = dependents.latest_of_each_turn(review_rows, applied)
        clicks = dependents.applied_rows(click_rows, applied)
        self._update_turns(feedback, reviews, dependents.changed_turns(turns, feedback, reviews, clicks))
        self._insert_clicks(clicks.select(list(ClickRow._fields)))
        for type_, n, sessions in zip(*dependents.applied_by_type(applied), strict=True):
            self.stats.applied[type_] += n
            self.conversations.update(sessions)
            if type_ == REVIEW:
                self.sessions.update(sessions)
        self._settle_unapplied(arrivals, verdicts.filter(pc.field("verdict") != dependents.APPLY))

    def _settle_unapplied(self, arrivals: list[tuple[Prepared, _Source | None]], unapplied: pa.Table) -> None:
        """The dependents that do not apply, in log order: parked for their turn, dropped as older than the
        retention horizon, or dead-lettered (a wrong session or offering)."""
        pending: list[tuple[Prepared, _Source]] = []
        for index, verdict, session_id in zip(
            unapplied["ord"].to_pylist(),
            unapplied["verdict"].to_pylist(),
            unapplied["turn_session"].to_pylist(),
            strict=True,
        ):
            event, waited = arrivals[index]
            source = waited or self._source(event.pos)
            if verdict == dependents.NO_TURN:
                if self._aged(event.row.occurred_at):  # type: ignore[union-attr]  # its turn is older still: purged
                    self._settle(event.type)
                    self.stats.aged += 1
                else:
                    pending.append((event, source))
            elif verdict == SESSION_MISMATCH:
                detail = (
                    f"data.session_id: {event.session_id!r} is not the session of interaction "
                    f"{event.interaction_uuid} ({session_id!r})"
                )
                self._dead_letter(source, SESSION_MISMATCH, detail, event.event_id, event.type)
            else:
                assert verdict == UNKNOWN_OFFERING and isinstance(event.row, ClickRow)
                detail = (
                    f"data.offering_uuid: {event.row.offering_uuid} is not among the offerings of interaction "
                    f"{event.interaction_uuid}"
                )
                self._dead_letter(source, UNKNOWN_OFFERING, detail, event.event_id, event.type)
        self._park(pending)

    def _take_pending(self, new_turns: pa.Table | None) -> list[tuple[Prepared, _Source]]:
        if new_turns is None or not new_turns.num_rows or not self.has_pending:
            return []
        rows = self._where_in(
            'SELECT seq, topic, partition, "offset", key, value, record_timestamp FROM pending_events'
            " WHERE interaction_uuid IN ({}) ORDER BY seq",
            new_turns["uuid"],
            max_placeholders=0,
        )
        if not rows:
            return []
        sources = [_Source(t, p, o, k, v, ts, seq) for seq, t, p, o, k, v, ts in rows]
        seqs = pa.table({"seq": pa.array([s.pending_seq for s in sources], pa.int64())})
        execute_with(
            self.con, "DELETE FROM pending_events WHERE seq IN (SELECT seq FROM resolved_seqs)", resolved_seqs=seqs
        )
        self.stats.pending_resolved += len(rows)
        reparsed = prepare([Record(s.topic, s.partition, s.offset, s.key, s.value) for s in sources], self.registry)
        # A parked event was valid when parked; if this release can no longer read it, say so loudly.
        for r in reparsed.rejections:
            self._dead_letter(sources[r.pos], r.reason, r.detail, r.event_id, r.type)
        return [(e, sources[e.pos]) for e in reparsed.events]

    def _update_turns(self, feedback: pa.Table, reviews: pa.Table, changed: pa.Table) -> None:
        """Writes the last applied feedback and review of each turn into `interactions` and its record
        (projector/feedback_records.py), after counting each updated turn out as the lookup read it and in
        as the updates leave it (`aggregates.Deltas.change_turns`, over `changed`: `dependents.changed_turns`)."""
        self.deltas.change_turns(changed)
        if feedback.num_rows:
            sql, params = keysets.narrowed(_UPDATE_FEEDBACK, "interactions.uuid", feedback["uuid"])
            execute_with(self.con, sql, params, new_feedback=feedback)
        if reviews.num_rows:
            sql, params = keysets.narrowed(_UPDATE_REVIEWS, "interactions.uuid", reviews["uuid"])
            execute_with(self.con, sql, params, new_reviews=reviews)
        feedback_records.refresh(self.con, feedback, reviews, changed)

    def _insert_clicks(self, clicks: pa.Table) -> None:
        if clicks.num_rows:
            execute_with(self.con, _INSERT_CLICKS, new_clicks=clicks)
            sql, params = keysets.narrowed(_COUNT_CLICKS, "interactions.uuid", pc.unique(clicks["interaction_uuid"]))
            execute_with(self.con, sql, params, new_clicks=clicks)

    def _park(self, pending: list[tuple[Prepared, _Source]]) -> None:
        if not pending:
            return
        # fetchall, not fetchone: a result read with fetchone stays open, and DuckDB 2 then refuses to
        # `register` an Arrow table on the connection (as below); a plain execute, as the API's, is allowed.
        ((top,),) = self.con.execute(parsed("SELECT coalesce(max(seq), 0) FROM pending_events")).fetchall()
        rows = [
            _PendingRow(
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
                e.row.occurred_at,  # type: ignore[union-attr]
            )
            for i, (e, s) in enumerate(pending)
        ]
        execute_with(self.con, _INSERT_PENDING, new_pending=rows_table(rows, PENDING_SCHEMA))
        self.stats.pending_added += len(rows)

    # -- privacy: retention and erasures (projector/forget.py) --------------------------------------

    def _load_privacy(self, named: pa.Array) -> None:
        # Whether any event waits for its turn comes with the same statement: a catch-up batch's
        # thousands of new turns are then not looked for in an empty `pending_events`.
        # So does whether the file's conversations are deferred (a rebuild's: `conversations.defer`).
        ((erasures, mark, self.has_pending, self.conversations_deferred),) = self.con.execute(
            parsed(
                "SELECT (SELECT count(*) FROM erasures), (SELECT value FROM meta WHERE key = ?),"
                " EXISTS (SELECT 1 FROM pending_events), EXISTS (SELECT 1 FROM meta WHERE key = ?)"
            ),
            [forget.WATERMARK_KEY, conversations.DEFERRED_KEY],
        ).fetchall()
        self.watermark = date.fromisoformat(mark) if mark else None
        self.has_erasures = bool(erasures)
        if self.has_erasures:
            self.tombstones = forget.tombstoned(self.con, named.to_pylist())

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
        kept = [u for u in usage if not self._aged(u.row.occurred_at)]  # type: ignore[union-attr]
        for _ in range(len(usage) - len(kept)):
            self._settle(USAGE)
            self.stats.aged += 1
        return kept

    def _settle(self, type_: str) -> None:
        # An event accepted but moot (erased, or too old) counts as applied: so the counts are the same
        # whether it came before or after what makes it moot (see forget.count_settled).
        self.stats.applied[type_] += 1

    def _screen_turns(self, table: pa.Table, stored: pa.Table) -> pa.Table:
        """The arriving turns that are stored; the others are dropped: a copy of an erased turn, a turn
        older than the retention watermark, or one a stored erasure covers (it gets a tombstone, so that
        its feedback, clicks and reviews are dropped too, and its tokens stay in the day's budget)."""
        if not table.num_rows or (not self.has_erasures and self.watermark is None):
            return table
        if not self.has_erasures and not self.tombstones:
            # Only the watermark screens: one comparison over the column says whether any turn is aged.
            assert self.watermark is not None
            oldest = pc.min(table["created_date"]).as_py()
            if oldest is None or oldest >= self.watermark:
                return table
        matches: dict[int, str] = {}
        if self.has_erasures:
            columns = table.select(["pos", "session_id", "user_slug", "created"])
            matches = dict(execute_with(self.con, _ERASURE_MATCHES, arriving_turns=columns).fetchall())
        kept: list[int] = []
        standing = set(stored["uuid"].to_pylist())
        for pos, uuid, day, tokens in zip(
            table["pos"].to_pylist(),
            table["uuid"].to_pylist(),
            table["created_date"].to_pylist(),
            pc.add(table["input_tokens"], table["output_tokens"]).to_pylist(),
            strict=True,
        ):
            if uuid in self.tombstones:
                self._settle(TURN)
                self.stats.erased_events += 1
                continue
            if self.watermark is not None and day < self.watermark:
                self._settle(TURN)
                self.stats.aged += 1
                self.turns_aged += 1
                continue
            erasure = matches.get(pos)
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
            kept.append(pos)
        return table if len(kept) == table.num_rows else _at(table, kept)

    def _drop_forgotten_dead_letters(self) -> None:
        """A dead letter is not kept when it is older than the watermark or holds erased data; one the
        fold gave to a valid event counts as settled, as it does when an erasure deletes it later."""
        if not self.dead or (not self.has_erasures and not self.new_tombstones and self.watermark is None):
            return
        facts = [forget.raw_facts(row.value) for row in self.dead]  # parsed again: dead letters are rare
        tombstones = self.tombstones
        if self.has_erasures:
            tombstones = tombstones | forget.tombstoned(
                self.con, {f.interaction_uuid for f in facts if f.interaction_uuid}
            )
        since = datetime.combine(self.watermark, datetime.min.time()) if self.watermark is not None else None
        kept = []
        for row, f in zip(self.dead, facts, strict=True):
            record_ts, reason, type_ = row.record_timestamp, row.reason, row.type
            at = f.occurred_at or record_ts  # as the purge reads it: coalesce(occurred_at, record_timestamp)
            if since is not None and at is not None and at < since:
                self.stats.aged += 1
            elif forget.erased_dead_letter(row.key, f, record_ts, self._erasures(), tombstones):
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
            execute_with(
                self.con,
                "UPDATE erasures SET rows_removed = erasures.rows_removed + c.n"
                " FROM erasure_credits c WHERE erasures.event_id = c.event_id::UUID",
                erasure_credits=table,
            )
        forget.add_to_meta(self.con, forget.TURNS_PURGED_KEY, self.turns_aged)

    def _apply_erasures(self, erasures: list[Prepared]) -> None:
        """Each erasure of the batch, in log order: its record, then the turns it covers removed with
        everything attached (their tokens kept in the budget), tombstones, and its dead letters."""
        for event in erasures:
            row = event.row
            assert isinstance(row, ErasureRow)
            erasure = forget.Erasure(row.event_id, row.key_kind, row.key, row.occurred_at)
            execute_with(
                self.con,
                "INSERT INTO erasures SELECT event_id::UUID, key_kind, key, occurred_at, reason, 0 FROM new_erasure",
                new_erasure=rows_table([row], ERASURE_SCHEMA),
            )
            where, params = forget.erasure_condition(erasure)
            removed = forget.remove_turns(self.con, where, params)
            forget.keep_in_budget(self.con, removed.days)
            forget.add_tombstones(self.con, removed.uuids)
            self.tombstones.update(removed.uuids)
            self._erase_dead_letters(erasure, set(removed.uuids))
            if removed.uuids:
                self.con.execute(
                    parsed("UPDATE erasures SET rows_removed = ? WHERE event_id = ?"),
                    [len(removed.uuids), erasure.event_id],
                )
            self.has_erasures = True
            if self._erasure_list is not None:
                self._erasure_list.append(erasure)
            self.stats.erasures += 1
            self.stats.erased += len(removed.uuids)
            self.stats.applied[ERASURE] += 1

    def _erase_dead_letters(self, erasure: forget.Erasure, removed: set[str]) -> None:
        rows = map(_StoredDeadLetter._make, self.con.execute(parsed(_ERASABLE_DEAD_LETTERS)).fetchall())
        gone = [
            r
            for r in rows
            if forget.erased_dead_letter(r.key, forget.raw_facts(r.value), r.record_timestamp, [erasure], removed)
        ]
        if not gone:
            return
        keys = pa.table(
            {
                "topic": pa.array([r.topic for r in gone], pa.string()),
                "partition": pa.array([r.partition for r in gone], pa.int32()),
                "offset": pa.array([r.offset for r in gone], pa.int64()),
            }
        )
        execute_with(
            self.con,
            "DELETE FROM dead_letters d USING erased_letters e WHERE d.topic = e.topic"
            ' AND d.partition = e.partition AND d."offset" = e."offset"',
            erased_letters=keys,
        )
        for r in gone:
            if r.reason in FOLD_REASONS and r.type:
                self._settle(r.type)
        self.stats.erased_events += len(gone)

    # -- usage -------------------------------------------------------------------------------------

    def _insert_usage(self, usage: list[Prepared]) -> None:
        if not usage:
            return
        execute_with(self.con, _INSERT_USAGE, new_usage=rows_table([u.row for u in usage], USAGE_SCHEMA))
        for u in usage:
            row = u.row
            assert isinstance(row, UsageRow)
            self.deltas.add_usage(row.day, row.input_tokens, row.output_tokens)
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
            _DeadLetterRow(
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
            execute_with(
                self.con,
                "INSERT INTO dead_letters BY NAME SELECT * FROM new_dead_letters",
                new_dead_letters=rows_table(self.dead, DEAD_LETTER_SCHEMA),
            )

    def _count_applied(self) -> None:
        # Kept in the file so that an offline `status` knows what a feedback or review replaced.
        if not self.stats.applied:
            return
        types, counts = zip(*sorted(self.stats.applied.items()), strict=True)
        updated = {t for (t,) in self.con.execute(parsed(_ADD_APPLIED_COUNTS), [list(types), list(counts)]).fetchall()}
        new = [(t, n) for t, n in zip(types, counts, strict=True) if t not in updated]  # first events of a type
        if new:
            self.con.execute(parsed(_INSERT_APPLIED_COUNTS), [list(c) for c in zip(*new, strict=True)])


def _store_offsets(con: duckdb.DuckDBPyConnection, offsets_by_key: dict[tuple[str, int], int]) -> None:
    """Moves the stored next offsets up to `offsets_by_key` ((topic, partition) -> next offset), never down."""
    for topic in sorted({t for t, _ in offsets_by_key}):
        partitions = sorted(p for t, p in offsets_by_key if t == topic)
        offsets = [offsets_by_key[(topic, p)] for p in partitions]
        stored = {p for (p,) in con.execute(parsed(_ADVANCE_OFFSETS), [topic, partitions, offsets]).fetchall()}
        new = [(p, o) for p, o in zip(partitions, offsets, strict=True) if p not in stored]  # first records
        if new:
            con.execute(parsed(_INSERT_OFFSETS), [topic, *(list(c) for c in zip(*new, strict=True))])


def pass_recordless_offsets(
    con: duckdb.DuckDBPyConnection, topic: str, positions: dict[int, int], *, changes: ChangeLog | None = None
) -> BatchStats:
    """Stores `positions` (partition -> next offset) of `topic` as folded, in a transaction of its own, for
    offsets that hold no record: a transactional producer's commit or abort marker takes an offset that no
    consumer ever receives as a record, so a fold that counts only records stops one short of the end
    offsets for ever. The caller's Kafka consumer has passed them (its position), and every record it
    returned before them is applied. Returns that commit's stats: no records, the offsets it moved (and,
    with `changes`, no key changed: the answers the cache keeps stay)."""

    def store() -> BatchStats:
        stats = BatchStats(offsets={(topic, p): o for p, o in positions.items()})
        _store_offsets(con, stats.offsets)
        return stats

    return _committed(con, store, changes)


# The two small tables every batch writes, without a join: each row finds its value by the position of its
# key in the list parameters, and RETURNING says which keys were there (the rest are inserted). Joined
# against an Arrow table, the same UPDATE cost a live batch several times as much.
_ADD_APPLIED_COUNTS = """
UPDATE applied_counts SET events = events + ($2::BIGINT[])[list_position($1::VARCHAR[], type)]
WHERE list_contains($1::VARCHAR[], type)
RETURNING type
"""
_ADVANCE_OFFSETS = """
UPDATE offsets SET next_offset = greatest(next_offset, ($3::BIGINT[])[list_position($2::INTEGER[], partition)])
WHERE topic = $1 AND list_contains($2::INTEGER[], partition)
RETURNING partition
"""
# The keys RETURNING did not report, all at once.
_INSERT_APPLIED_COUNTS = "INSERT INTO applied_counts SELECT unnest($1::VARCHAR[]), unnest($2::BIGINT[])"
_INSERT_OFFSETS = "INSERT INTO offsets SELECT $1, unnest($2::INTEGER[]), unnest($3::BIGINT[])"

# The batch's event ids (`batch_event_ids`) not yet accepted, each once, stored as accepted: one statement,
# in which DuckDB builds its hash table on the batch's ids and probes it with the stored ones, `{}` (all
# of `applied_events`, or the part within ranges that cover the batch's ids: `keysets.id_ranges`).
_ACCEPT_NEW_EVENT_IDS = """
INSERT INTO applied_events
SELECT DISTINCT b.event_id::UUID FROM batch_event_ids b ANTI JOIN ({}) a ON a.event_id = b.event_id::UUID
RETURNING event_id::VARCHAR AS event_id
"""

# A new turn's feedback, review and click columns, as `_INSERT_TURNS` writes them (the dependents of its
# batch see it so before their updates: `dependents.NEW_TURN_STATE`, which tests/projector/test_dependents.py
# checks against these).
_NEW_TURN_DEFAULTS = {"click_count": "0", **RECORD_DEFAULTS}

# The columns of a looked-up turn, for row ids found by uuid: the range lets DuckDB skip the row groups outside it.
_READ_TURNS = f"""
SELECT uuid::VARCHAR AS uuid, event_id::VARCHAR AS event_id, session_id, offering_uuids, user_slug, created_date,
       created, {", ".join(aggregates.TURN_STATE)}
FROM interactions
WHERE rowid BETWEEN ? AND ? AND rowid = ANY(?)
"""

# The interactions table is the one these statements serve (schemas/readmodel.py); defaults for a
# turn without feedback, review or clicks are spelled out here so that a new turn is one INSERT.
_INSERT_TURNS = f"""
INSERT INTO interactions BY NAME
SELECT
    uuid::UUID AS uuid, session_id, user_slug, user_input, assistant_blocks, search_terms, offering_uuids,
    result_count, is_flagged, severity, injection_categories, pii_categories, action_taken, warning, ip_address,
    last_active_at, created, created_date, input_tokens, output_tokens, model, is_clarification,
    {", ".join(f"{value} AS {column}" for column, value in _NEW_TURN_DEFAULTS.items())},
    event_id::UUID AS event_id, source_partition, source_offset
FROM new_turns
"""

# A feedback's and a review's columns, as `feedback_records` gets them too.
# Every feedback, review and click applied to a turn counts in its `row_version`, which the API's row
# cache keys its served rows by (api/row_cache.py): a row read before an update is then never served
# after it. Counted per event, not per statement, so that the column is the same however the log was
# batched (a clean replay reaches the same table).
_ADD_APPLIED = "row_version = interactions.row_version + s.applied"  # `dependents.latest_of_each_turn`
_UPDATE_FEEDBACK = feedback_records.update_sql(
    "interactions", "new_feedback", feedback_records.FEEDBACK_SETS, also=_ADD_APPLIED
)
_UPDATE_REVIEWS = feedback_records.update_sql(
    "interactions", "new_reviews", feedback_records.REVIEW_SETS, also=_ADD_APPLIED
)

_INSERT_CLICKS = """
INSERT INTO clicks
SELECT event_id::UUID, interaction_uuid::UUID, offering_uuid::UUID, session_id, occurred_at FROM new_clicks
"""

_COUNT_CLICKS = """
UPDATE interactions SET click_count = interactions.click_count + c.n, row_version = interactions.row_version + c.n
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

# What an erasure needs to know of each stored dead letter (`_StoredDeadLetter`).
_ERASABLE_DEAD_LETTERS = """
SELECT topic, partition, "offset", key, value, record_timestamp, reason, type FROM dead_letters
"""
