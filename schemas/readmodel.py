"""The DuckDB read model: its tables, its version, and how to open it.

This is the one module through which the projector (the only writer) and the API (a reader) meet.
Tables, by what they serve:

- `interactions`: one row per turn, with the current human feedback (`fb_*`), the current LLM
  review (`llm_*`) and the click count folded in. Serves list, retrieve, by-session, by-user/{slug}
  and every filtered KPI / by-user query, the conversations roll-up (grouped by `session_id`) and the
  full-text `query` (`search_terms`, the turn's stemmed words: the search structure lives on the turn's
  own row, so deleting a turn deletes it).
- `feedback_records`: one row per turn with a human score or an LLM review, holding only its `fb_*` and
  `llm_*` columns: the feedbacks endpoints count, filter, order and render these instead of picking the
  few turns with a record out of the wide `interactions` table. Kept by `projector.feedback_records`
  from `interactions`, in the batch's transaction; a per-turn table, so forgetting a turn removes its row.
- `sessions`: one row per session (first and last turn, turn count, reviewed turns).
- `conversations`: one row per session over all its turns, the row /conversations/ serves (rendered as
  its JSON in `body`), the columns its conversation-level filters and orderings read, and what the KPI
  counts of the session (so a KPI narrowed by conversation-level filters alone reads no turn); kept by
  `projector.conversations` from `interactions` (so a session's row follows its turns, deleted ones too).
- `user_stats`: one row per non-empty `user_slug`, the counters of the by-user endpoint.
- `daily_counters`: one row per UTC day of `created` (or of `occurred_at` for usage events).
- `clicks`, `usage_events`: the facts behind click counts and the token budget.
- `applied_events`: every applied `event_id`, so a duplicate is skipped wherever it arrives.
- `applied_counts`: events applied, by type (a feedback or review that replaced another still counts).
- `pending_events`: feedback, clicks and reviews whose turn has not arrived yet.
- `erasures`: one record per applied `privacy.erasure.requested` (never the erased data), and
  `erased_interactions`: the random ids of the turns erasures removed, so that a late feedback, click,
  review or copy of such a turn is dropped instead of waiting or coming back (docs/privacy.md).
- `dead_letters`: events that cannot be applied, with their raw bytes and a reason.
- `offsets`: the next Kafka offset per (topic, partition), written in the same transaction as the
  rows that the offsets before it produced. This, not Kafka's committed offsets, is the position.
- `meta`: `readmodel_version` and other facts about the file itself.

Timestamps are stored as naive `TIMESTAMP` in UTC (never TIMESTAMPTZ, so no session time zone can
shift them). JSON-valued fields of a turn are stored as their JSON text, ready to be spliced into a
response without re-encoding.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

# Bump when a release changes the tables or what the fold writes into them: a file with an older
# version is rebuilt from the topic (docs/operations.md, "Rebuilding the read model").
# 2: `applied_counts` (a version-1 file has no such counts to carry over).
# 3: `interactions.model` and `interactions.search_terms` (in place of `blocks_text`).
# 4: erasures and retention (`erasures`, `erased_interactions`, `pending_events.occurred_at`,
#    `dead_letters.occurred_at`, `daily_counters.erased_*`).
# 5: `conversations`.
# 6: `interactions.is_clarification` also counts `ask_user_form` blocks and `ask_user` tool calls.
# 7: the KPI's counters, days and intents of each session in `conversations`.
# 8: `conversations.intents` lists each reviewed turn's intent (the KPI counts them).
# 9: the token sums of `daily_counters` are HUGEINTs (a day of BIGINT counts can pass 2^63).
# 10: `feedback_records`.
# 11: `interactions.row_version`.
READMODEL_VERSION = 11
# The first version with `feedback_records`: an older file, served while its rebuild runs, still answers
# the feedbacks endpoints from `interactions` (api.feedbacks_sql.source).
FEEDBACK_RECORDS_VERSION = 10

# A turn's current human feedback and LLM review: columns of `interactions`, copied as they are into
# `feedback_records` for the turns that have either.
_RECORD_COLUMNS = """
        -- the visitor's current feedback (NULL score: none)
        fb_score TINYINT,
        fb_category VARCHAR,
        fb_comment VARCHAR NOT NULL,
        fb_ip VARCHAR,
        fb_submitted_at TIMESTAMP,
        -- the LLM judge's current review (NULL llm_reviewed_at: not reviewed)
        llm_resolution_score TINYINT,
        llm_intent_category VARCHAR NOT NULL,
        llm_hallucination_detected BOOLEAN NOT NULL,
        llm_hallucination_details VARCHAR NOT NULL,
        llm_summary VARCHAR NOT NULL,
        llm_judge_model VARCHAR NOT NULL,
        llm_input_tokens BIGINT NOT NULL,
        llm_output_tokens BIGINT NOT NULL,
        llm_reviewed_at TIMESTAMP""".strip()

DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS meta (
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS offsets (
        topic VARCHAR NOT NULL,
        partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (topic, partition)
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS interactions (
        uuid UUID PRIMARY KEY,
        session_id VARCHAR NOT NULL,
        user_slug VARCHAR NOT NULL,
        user_input VARCHAR NOT NULL,
        assistant_blocks VARCHAR NOT NULL,      -- JSON text of the array, as given
        search_terms VARCHAR NOT NULL,          -- the stemmed words of the turn's text, for `query` (schemas.fulltext)
        offering_uuids VARCHAR NOT NULL,        -- JSON text of the array of UUID strings
        result_count INTEGER NOT NULL,
        is_flagged BOOLEAN NOT NULL,
        severity VARCHAR NOT NULL,              -- none | low | medium | high | critical
        injection_categories VARCHAR NOT NULL,  -- JSON text
        pii_categories VARCHAR NOT NULL,        -- JSON text
        action_taken VARCHAR NOT NULL,
        warning VARCHAR NOT NULL,
        ip_address VARCHAR,
        last_active_at TIMESTAMP NOT NULL,
        created TIMESTAMP NOT NULL,
        created_date DATE NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        model VARCHAR NOT NULL,                 -- the chat model of the reply; '' when unknown
        is_clarification BOOLEAN NOT NULL,      -- some block asks the visitor (prepare.is_clarification)
        click_count INTEGER NOT NULL,
        {_RECORD_COLUMNS},
        -- where the turn came from in the log
        event_id UUID NOT NULL,
        source_partition INTEGER NOT NULL,
        source_offset BIGINT NOT NULL,
        -- how many feedback, review and click events the fold has applied to the turn: with `uuid` and
        -- `event_id`, what the API's row cache keys a served row by (api/row_cache.py)
        row_version INTEGER NOT NULL DEFAULT 0
    )
    """,
    f"""
    CREATE TABLE IF NOT EXISTS feedback_records (
        uuid UUID NOT NULL,                     -- the turn's; the columns below as `interactions` holds them
        {_RECORD_COLUMNS}
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS sessions (
        session_id VARCHAR PRIMARY KEY,
        user_slug VARCHAR NOT NULL,             -- of the session's first turn
        first_created TIMESTAMP NOT NULL,
        last_created TIMESTAMP NOT NULL,
        turns BIGINT NOT NULL,
        reviewed_turns BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS conversations (
        session_id VARCHAR PRIMARY KEY,
        started TIMESTAMP NOT NULL,
        last_active TIMESTAMP NOT NULL,
        message_count BIGINT NOT NULL,
        max_severity_rank INTEGER NOT NULL,
        is_reviewed BOOLEAN NOT NULL,
        input_tokens HUGEINT NOT NULL,
        output_tokens HUGEINT NOT NULL,
        total_tokens HUGEINT NOT NULL,
        offerings_shown HUGEINT NOT NULL,
        -- what the KPI counts of the session (schemas.conversation_rows.KPI_COUNTERS)
        flagged BIGINT NOT NULL,
        feedback_up BIGINT NOT NULL,
        feedback_down BIGINT NOT NULL,
        clicks HUGEINT NOT NULL,
        clarifications BIGINT NOT NULL,
        reviewed_turns BIGINT NOT NULL,
        review_score_sum HUGEINT NOT NULL,
        hallucinated_turns BIGINT NOT NULL,
        review_input_tokens HUGEINT NOT NULL,
        review_output_tokens HUGEINT NOT NULL,
        users VARCHAR[] NOT NULL,               -- its distinct non-empty user_slugs, in order
        -- its turns per created day and severity, in day order
        days STRUCT(day DATE, "none" BIGINT, low BIGINT, medium BIGINT, high BIGINT, critical BIGINT)[] NOT NULL,
        intents VARCHAR[] NOT NULL,             -- the intent of each reviewed turn that has one, in order
        body VARCHAR NOT NULL                   -- the row's JSON object, as /conversations/ serves it
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS user_stats (
        user_slug VARCHAR PRIMARY KEY,
        last_seen TIMESTAMP NOT NULL,
        total_interactions BIGINT NOT NULL,
        session_count BIGINT NOT NULL,
        positive_feedback BIGINT NOT NULL,
        negative_feedback BIGINT NOT NULL,
        no_feedback BIGINT NOT NULL,
        injection_strikes BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS daily_counters (
        day DATE PRIMARY KEY,
        turns BIGINT NOT NULL,
        sessions_started BIGINT NOT NULL,       -- sessions whose first turn is on this day
        flagged BIGINT NOT NULL,
        severity_none BIGINT NOT NULL,
        severity_low BIGINT NOT NULL,
        severity_medium BIGINT NOT NULL,
        severity_high BIGINT NOT NULL,
        severity_critical BIGINT NOT NULL,
        clicks BIGINT NOT NULL,                 -- clicks on turns created this day
        feedback_up BIGINT NOT NULL,
        feedback_down BIGINT NOT NULL,
        clarifications BIGINT NOT NULL,
        -- token sums are HUGEINT: each event's count is a BIGINT, so a day of them can pass 2^63
        turn_input_tokens HUGEINT NOT NULL,
        turn_output_tokens HUGEINT NOT NULL,
        usage_input_tokens HUGEINT NOT NULL,     -- assistant.usage.recorded, by its occurred_at day
        usage_output_tokens HUGEINT NOT NULL,
        usage_events BIGINT NOT NULL,
        reviewed BIGINT NOT NULL,               -- reviewed turns created this day
        review_score_sum BIGINT NOT NULL,
        hallucinations BIGINT NOT NULL,
        review_input_tokens HUGEINT NOT NULL,
        review_output_tokens HUGEINT NOT NULL,
        -- tokens and turns of erased turns: they stay in the daily token budget (docs/api.md)
        erased_tokens HUGEINT NOT NULL DEFAULT 0,
        erased_turns BIGINT NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS clicks (
        event_id UUID NOT NULL,
        interaction_uuid UUID NOT NULL,
        offering_uuid UUID NOT NULL,
        session_id VARCHAR NOT NULL,
        occurred_at TIMESTAMP NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS usage_events (
        event_id UUID NOT NULL,
        occurred_at TIMESTAMP NOT NULL,
        day DATE NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        source VARCHAR NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS applied_events (
        event_id UUID NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS applied_counts (
        type VARCHAR PRIMARY KEY,
        events BIGINT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS pending_events (
        seq BIGINT NOT NULL,                    -- arrival order, so waiting events apply in log order
        interaction_uuid UUID NOT NULL,
        event_id UUID NOT NULL,
        type VARCHAR NOT NULL,
        topic VARCHAR NOT NULL,
        partition INTEGER NOT NULL,
        "offset" BIGINT NOT NULL,
        key BLOB,
        value BLOB NOT NULL,
        record_timestamp TIMESTAMP,             -- the Kafka record's own timestamp, for a later dead letter
        occurred_at TIMESTAMP NOT NULL          -- the event's own, for retention
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        topic VARCHAR NOT NULL,
        partition INTEGER NOT NULL,
        "offset" BIGINT NOT NULL,
        key BLOB,
        value BLOB,
        reason VARCHAR NOT NULL,
        detail VARCHAR NOT NULL,
        event_id VARCHAR,
        type VARCHAR,
        record_timestamp TIMESTAMP,             -- the Kafka record's own timestamp
        dead_lettered_at TIMESTAMP NOT NULL,    -- wall clock when the fold set it aside
        occurred_at TIMESTAMP                   -- the event's own, when readable: for retention
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS erasures (
        event_id UUID NOT NULL,
        key_kind VARCHAR NOT NULL,              -- user_slug | session_id
        key VARCHAR NOT NULL,
        occurred_at TIMESTAMP NOT NULL,         -- turns up to this instant are erased
        reason VARCHAR NOT NULL,
        rows_removed BIGINT NOT NULL            -- turns (with all attached) this erasure removed or dropped
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS erased_interactions (
        uuid UUID NOT NULL                      -- a random id, nothing else of the turn
    )
    """,
)

# Which turns have a row in `feedback_records`, and the columns it copies from `interactions` (under the
# same names, so one SQL renders a record from either table).
IS_FEEDBACK_RECORD = "(fb_score IS NOT NULL OR llm_reviewed_at IS NOT NULL)"
FEEDBACK_RECORD_COLUMNS: tuple[str, ...] = ("uuid", *re.findall(r"^\s*(\w+) ", _RECORD_COLUMNS, re.MULTILINE))
# The same columns of a turn no feedback or review has reached (SQL literals): what a new turn is inserted
# with, and so what a turn without a `feedback_records` row holds (a feedback's score and a review's time are
# never NULL, so a turn keeps its record from its first feedback or review on).
RECORD_DEFAULTS: dict[str, str] = {
    "fb_score": "NULL",
    "fb_category": "NULL",
    "fb_comment": "''",
    "fb_ip": "NULL",
    "fb_submitted_at": "NULL",
    "llm_resolution_score": "NULL",
    "llm_intent_category": "''",
    "llm_hallucination_detected": "false",
    "llm_hallucination_details": "''",
    "llm_summary": "''",
    "llm_judge_model": "''",
    "llm_input_tokens": "0",
    "llm_output_tokens": "0",
    "llm_reviewed_at": "NULL",
}
assert tuple(RECORD_DEFAULTS) == FEEDBACK_RECORD_COLUMNS[1:], "a record column without its default, or out of order"

# Every table that holds rows of one turn, with the column naming the turn: an erasure or a retention
# purge deletes a turn from each of them (projector/forget.py). A new per-turn table must be listed
# here, or tests/projector/test_forget.py fails; every other table is in OTHER_TABLES, saying why it is not.
TURN_TABLES: dict[str, str] = {
    "interactions": "uuid",
    "feedback_records": "uuid",
    "clicks": "interaction_uuid",
    "pending_events": "interaction_uuid",
}
OTHER_TABLES: dict[str, str] = {
    "meta": "facts about the file",
    "offsets": "positions in the log",
    "sessions": "aggregate: recomputed for the sessions of removed turns",
    "conversations": "aggregate: recomputed for the sessions of removed turns (projector.conversations)",
    "user_stats": "aggregate: recomputed for the users of removed turns",
    "daily_counters": "aggregate: recomputed for the days of removed turns",
    "usage_events": "tokens outside the anonymous chat: no visitor data (purged by age only)",
    "applied_events": "event ids only, so a re-published copy is never applied again",
    "applied_counts": "counts by event type",
    "dead_letters": "raw events: erased by key and time, purged by age (projector/forget.py)",
    "erasures": "the erasure records themselves",
    "erased_interactions": "random ids of erased turns",
}

# Tables that hold the projection itself: equal, row for row, for any two folds of the same log.
PROJECTION_TABLES: tuple[str, ...] = (
    "interactions",
    "feedback_records",
    "sessions",
    "conversations",
    "user_stats",
    "daily_counters",
    "clicks",
    "usage_events",
    "applied_events",
    "applied_counts",
    "pending_events",
    "dead_letters",
    "erasures",
    "erased_interactions",
    "offsets",
)


# Rows per row group in what a writer appends (DuckDB's default: 122,880). A checkpoint rewrites whole
# each row group that filled up since the one before (its rows already in the file too): at the default
# size, `interactions` fills one every ~3.4 min at 1,000 events/s, and a checkpoint that saw one took
# 1.4-4 s against 0.1-0.3 s without; at 16,384 rows such checkpoints took 0.3-0.5 s
# (docs/architecture.md, "Checkpoints and freshness"). A served file's
# checkpoint holds the projector's next commit and the reads begun meanwhile, so its length is the
# tail of freshness. It applies to rows appended by small transactions, as the live fold's: a
# rebuild's transactions of 40,000 events are still written in row groups of 122,880 rows (measured:
# the same file, at the same speed), and rows already in the file keep theirs.
ROW_GROUP_SIZE = 16_384
# The name the file is attached under in a writer's DuckDB instance (its only database).
CATALOG = "readmodel"


def sql_text(value: str) -> str:
    """`value` as an SQL string literal, for the statements DuckDB takes no parameter in (ATTACH's path,
    a setting's value). Only for the operator's paths, never a request's text."""
    return "'" + value.replace("'", "''") + "'"


def connect(path: str | os.PathLike[str], *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Opens (and, for a writer, creates) a read-model file. Readers in the writer's process should
    use `con.cursor()` of the writer's connection instead: DuckDB allows one writing process per file.

    A writer attaches the file with `ROW_GROUP_SIZE` (an option of ATTACH only) as the only database of
    its instance, so that every cursor of the connection reads and writes it without naming it, as a
    file opened by `duckdb.connect(path)` would be; spills go beside it as they would then."""
    path = Path(path)
    if read_only:
        return duckdb.connect(str(path), read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"ATTACH {sql_text(str(path))} AS {CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
    con.execute(f"USE {CATALOG}")
    con.execute("DETACH memory")  # new cursors then start in the file, not in an empty in-memory database
    con.execute(f"SET temp_directory = {sql_text(f'{path}.tmp')}")
    create_tables(con)
    return con


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("BEGIN")
    for statement in DDL:
        con.execute(statement)
    con.execute(
        "INSERT INTO meta VALUES ('readmodel_version', ?) ON CONFLICT (key) DO NOTHING",
        [str(READMODEL_VERSION)],
    )
    con.execute("COMMIT")


def file_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The read-model version the file was built with, or None for a file without one."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'readmodel_version'").fetchone()
    except duckdb.CatalogException:
        return None
    return int(row[0]) if row else None


def stored_offsets(con: duckdb.DuckDBPyConnection, topic: str) -> dict[int, int]:
    rows = con.execute("SELECT partition, next_offset FROM offsets WHERE topic = ?", [topic]).fetchall()
    return {int(p): int(o) for p, o in rows}


def other_topics(con: duckdb.DuckDBPyConnection, topic: str) -> list[str]:
    """The topics other than `topic` the file stores offsets of (a file built from another topic)."""
    rows = con.execute("SELECT DISTINCT topic FROM offsets WHERE topic <> ? ORDER BY topic", [topic]).fetchall()
    return [str(t) for (t,) in rows]


# Indexes for the API's point lookups, made only where a file is served (see `serving_settings`): an
# offline rebuild inserts every row once and would pay to keep them up to date for nobody.
# - session_id: by-session/{id} reads a session's few turns through it instead of scanning the table.
# - user_slug: so do a visitor's pages and transcript, for a visitor with up to ~2,000 turns (DuckDB's
#   `index_scan_max_count`; past it, a scan is cheaper than that many scattered reads), and the count
#   of a visitor's turns in a date range. About 0.5 s more to make on a million turns, and ~0.6 ms more
#   for the fold to insert 500 turns.
SERVING_INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS interactions_session_id ON interactions (session_id)",
    "CREATE INDEX IF NOT EXISTS interactions_user_slug ON interactions (user_slug)",
)


SERVING_CHECKPOINT_THRESHOLD = "256MiB"


_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?\s*([KMGT]i?)?B$")


_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def checked_size(text: str) -> str:
    """A size such as '256MiB' or '1GB'; raises ValueError for anything else."""
    if not _SIZE.match(text.strip()):
        raise ValueError(f"{text!r} is not a size such as 256MiB or 1GB")
    return text.strip()


def size_bytes(text: str) -> int:
    """'256MiB' -> 268435456, '1GB' -> 10**9 (as DuckDB reads its size settings)."""
    match = _SIZE.match(checked_size(text))
    assert match is not None
    number = float(text.strip()[: match.start(2) if match.group(2) else -1])
    unit = match.group(2) or ""
    factor = 1024 ** (" KMGT".index(unit[0])) if unit.endswith("i") else _UNITS[unit[:1]]
    return int(number * factor)


# DuckDB's own checkpoint-on-commit is kept out of the way of a served file: when a commit triggers it,
# DuckDB skips writing that transaction to the write-ahead log and relies on the checkpoint, so a
# checkpoint that fails (a full disk) loses a commit that readers have already seen. The projector
# checkpoints by itself instead, after the batch is durable in the log (ProjectorService.checkpoint_bytes).
_NO_AUTOMATIC_CHECKPOINT = "1000GB"


def serving_settings(con: duckdb.DuckDBPyConnection, checkpoint_threshold: str | None = None) -> None:
    """Settings of a file that a server reads while its projector writes small batches.

    One thread per statement: the API's statements are small and many run at once (one per request
    thread); splitting each over DuckDB's worker threads as well cost more CPU than it saved time
    (a list page miss: 10.2 -> 7.8 ms of CPU, a filtered KPI: 33 -> 26 ms, at about the same latency).
    A checkpoint of the served file holds the projector's next commit until it ends and competes with
    the requests for the two cores meanwhile (it rewrites the row groups the fold touched, and the
    indexes; docs/architecture.md, "Checkpoints and freshness"). DuckDB's default threshold (16 MiB)
    meant one every ~14 s at 1,000 events/s; 256 MiB means one every ~3.5 min under traffic that never
    pauses (about 1.2 KiB of log per event, measured on `serve` folding demo traffic at 1,000 events/s
    in batches of ~270; the projector checkpoints earlier when the topic is quiet), for a longer log to
    replay at start-up after a crash (139 MiB: 2.5 s) and up to that much more memory.
    The serving indexes are made on a writable file (about 1 s for a million events), then kept up
    to date by the projector's inserts."""
    con.execute("SET threads = 1")
    checked_size(checkpoint_threshold or SERVING_CHECKPOINT_THRESHOLD)  # applied by the projector
    con.execute(f"SET checkpoint_threshold = '{_NO_AUTOMATIC_CHECKPOINT}'")
    (read_only,) = con.execute(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone() or (True,)
    if not read_only:
        add_serving_indexes(con)


def add_serving_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """Makes the SERVING_INDEXES on a writable file that lacks them (about 1 s for a million events)."""
    for statement in SERVING_INDEXES:
        con.execute(statement)
