"""The fold: what every event type does to the read model, one DuckDB transaction per batch.

A batch goes through two steps, each in its own module, so that the CPU-heavy one can run in another
process:

1. `projector.prepare.prepare(records)` (pure Python, no database): parses the whole poll at once
   with `schemas.registry.parse_events` and shapes each valid event into the row its table needs
   (JSON text, the stemmed `search_terms`, timestamps in UTC). The result is plain picklable data.
2. `projector.apply.apply_prepared(con, batch)`: in one transaction, skips records below the stored
   offsets and already-applied event ids, inserts turns, applies (or parks, or dead-letters) feedback,
   clicks and reviews, inserts usage, recomputes the aggregates of the keys it touched, and stores the
   next offset of every partition it saw. A crash anywhere leaves the file at the previous batch
   boundary. The SQL of each step is beside it in that module.

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

from collections.abc import Sequence

import duckdb

from projector.apply import BatchStats, apply_in_transaction, apply_prepared, fold_clock
from projector.prepare import PreparedBatch, is_clarification, merge_prepared, prepare, to_json
from projector.records import Record
from schemas.registry import EventRegistry

__all__ = [
    "BatchStats",
    "PreparedBatch",
    "apply_batch",
    "apply_in_transaction",
    "apply_prepared",
    "is_clarification",
    "merge_prepared",
    "prepare",
    "to_json",
]


def apply_batch(
    con: duckdb.DuckDBPyConnection,
    records: Sequence[Record],
    registry: EventRegistry | None = None,
) -> BatchStats:
    """Folds `records` (in log order per partition) into the read model in one transaction, parsing them
    in this thread first (its time counted as the fold's). `ProjectorService` parses beside the fold
    instead (`prefetch.Prefetcher`) and calls `apply_prepared`."""
    started = fold_clock()
    return apply_prepared(con, prepare(records, registry), registry).took(started)
