"""Step 1 of the fold, set-wise: a whole batch of raw values parsed, checked and shaped in DuckDB.

`prepare_columns(con, raw)` gives the same `PreparedBatch` as `projector.prepare.prepare` for the
same records, with the work on columns instead of one Pydantic validation per event:

- DuckDB's built-in JSON functions (bundled in the wheel, no extension to load) read every value of
  the batch in a few statements, check it against the rules of docs/events.md, and shape the rows
  of the events that are *certainly valid and ordinary*: the current version of their type, well-formed
  JSON that both parsers read alike, canonical UUIDs, RFC 3339 timestamps with an offset, every
  field of the right JSON type and within its limits.
- Everything else (invalid events, garbage bytes, an older version that needs an upcaster, a
  canonical-looking but unusual value) goes to the Pydantic path, `prepare`, which gives the
  dead-letter reason and message as always. The Pydantic models stay the one definition of the
  contract; this module only ever claims an event when the models would accept it unchanged
  (test_sqlprepare.py among the tests checks that, and that the rows are equal, on generated events).
- A turn's assistant blocks are read back into Python once (orjson, in C) for the three things
  computed from them: their stored JSON text, `is_clarification` and the search stems.

The raw batch is an Arrow table of `RAW_SCHEMA` (what a reader process ships, projector/pipeline.py).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from projector.arrow_views import arrow_with
from projector.prepare import (
    TURN_SCHEMA_WITH_POS,
    ClickRow,
    ErasureRow,
    FeedbackRow,
    Prepared,
    PreparedBatch,
    Rejected,
    ReviewRow,
    UsageRow,
    is_clarification,
    prepare,
    to_json,
)
from projector.records import Record
from schemas.events import (
    _DOTTED_QUAD,  # the models' own canonical IPv4 form
    ERASURE_REQUESTED,
    FEEDBACK_SUBMITTED,
    OFFERING_CLICKED,
    SESSION_REVIEWED,
    TURN_RECORDED,
    USAGE_RECORDED,
    V1_MODELS,
)
from schemas.fulltext import document_terms
from schemas.registry import DEFAULT_REGISTRY, EventRegistry
from schemas.settings import ip_policy

# The raw columns of a fetch, as a reader process ships them.
RAW_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("timestamp_ms", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
    ]
)


def raw_table(records: list[Record]) -> pa.Table:
    """Records as raw columns (for callers that hold `Record`s, such as tests and the live loop)."""
    return pa.table(
        [
            pa.array([r.topic for r in records], pa.string()),
            pa.array([r.partition for r in records], pa.int32()),
            pa.array([r.offset for r in records], pa.int64()),
            pa.array([r.timestamp_ms for r in records], pa.int64()),
            pa.array([r.key for r in records], pa.binary()),
            pa.array([r.value for r in records], pa.binary()),
        ],
        schema=RAW_SCHEMA,
    )


def handles(registry: EventRegistry | None) -> bool:
    """Whether the SQL checks below are this registry's rules: this release's v1 models, nothing else."""
    registry = registry or DEFAULT_REGISTRY
    return registry.models == V1_MODELS and all(v == 1 for v in registry.versions.values())


# --------------------------------------------------------------------------------------------------
# The SQL. Conservative on purpose: a condition that is not certain sends the event to Pydantic.
# One statement per event type reads the raw values of the batch that name the type, and parses each
# value once per way of reading it: `json_transform` into a STRUCT of the type's fields twice, as JSON
# text (`j`: its first character says the JSON type, and arrays keep their compact text) and as text
# (`s`: a string unescaped, a number as written), and `json_keys` of the envelope (`ek`) and of
# `data` (`dk`). A field absent and a field set to JSON null are both NULL in the structs: the keys
# tell them apart (`_known_keys`).
# --------------------------------------------------------------------------------------------------

_UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID = f"'{_UUID_PATTERN}'"
_TIMESTAMP = (
    r"'(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])'"
)
# Text both JSON parsers might read differently: DuckDB's reader takes trailing commas; lone
# surrogates and NUL or control characters by escape. (NaN and Infinity, which DuckDB and Pydantic
# take but orjson does not, can only hide in a field nobody checks: an unknown field is not claimed.)
_TRAILING_COMMA = r"',\s*[\]}]'"
_ODD_ESCAPE = r"'\\u[dD][89a-fA-F]|\\u00[01]'"  # looked for only in values with an escape at all
# Compact JSON arrays as DuckDB writes them back (`j`): of strings without any character JSON writes as
# an escape (so that text is also the stored text), and of canonical UUIDs.
_PLAIN_STRINGS = r"""'\[("[^"\\]*"(,"[^"\\]*")*)?\]'"""
_UUIDS = rf"""'\[("{_UUID_PATTERN}"(,"{_UUID_PATTERN}")*)?\]'"""
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1

_ENVELOPE_KEYS = ["event_id", "type", "version", "occurred_at", "data"]


def _path(field: str) -> str:
    """Where a field sits in the structs: the envelope's own, or inside `data` (no name is both)."""
    return field if field in _ENVELOPE_KEYS else f"data.{field}"


def _j(field: str) -> str:
    return f"j.{_path(field)}"


def _s(field: str) -> str:
    return f"s.{_path(field)}"


def _string(field: str) -> str:
    return f"starts_with({_j(field)}, '\"')"


def _count(field: str, limit: int) -> str:
    # A non-negative JSON integer (digits only: not 1.0, not 1e2) within the column's range.
    return f"(regexp_full_match({_j(field)}, '[0-9]+') AND try_cast({_s(field)} AS UBIGINT) <= {limit})"


def _boolean(field: str) -> str:
    return f"({_j(field)} IN ('true', 'false'))"


def _optional(field: str, check: str) -> str:
    """Absent (or JSON null, where `_select` lists the field as nullable), or `check`."""
    return f"({_j(field)} IS NULL OR {check})"


def _known_keys(fields: list[str], nullable: tuple[str, ...]) -> str:
    # Only known fields, each once, and JSON null only where the models take it: Pydantic keeps the
    # last of a duplicated key, DuckDB the first; and an unknown field, which both ignore, is not worth
    # reading to see whether it parses alike. Each key of `data` must be one field found not null, or a
    # nullable field found null: counting both says all of it at once.
    found = f"list_count([{', '.join(_j(f) for f in fields)}])"  # list_count counts what is not NULL
    nulls = "".join(f" + ({_j(f)} IS NULL AND list_contains(dk, '{f}'))::INTEGER" for f in nullable)
    return f"(len(dk) = {found}{nulls})"


def _ts(text: str) -> str:
    return f"timezone('UTC', try_cast({text} AS TIMESTAMPTZ))"


def _ts_ok(field: str) -> str:
    s = _s(field)
    return f"({_string(field)} AND regexp_full_match({s}, {_TIMESTAMP}) AND {_ts(s)} IS NOT NULL)"


def _uuid_ok(field: str) -> str:
    return f"({_string(field)} AND regexp_full_match({_s(field)}, {_UUID}))"


def _chars(field: str, low: int, high: int) -> str:
    return f"({_string(field)} AND length({_s(field)}) BETWEEN {low} AND {high})"


def _ip(field: str) -> str:
    # Any string passes here: its normal form (or its rejection) is Python's `ipaddress`, see `_normal_ip`.
    return f"CASE WHEN {_string(field)} THEN {_s(field)} END"


def _plain_strings(field: str) -> str:
    return f"regexp_full_match({_j(field)}, {_PLAIN_STRINGS})"


def _uuid_list_ok(field: str) -> str:
    return f"regexp_full_match({_j(field)}, {_UUIDS})"


def _strings_text(field: str) -> str:
    # The stored text of an array checked by `_plain_strings` or `_uuid_list_ok`: its compact JSON.
    return f"coalesce({_j(field)}::VARCHAR, '[]')"


_TYPES = (TURN_RECORDED, FEEDBACK_SUBMITTED, OFFERING_CLICKED, SESSION_REVIEWED, USAGE_RECORDED, ERASURE_REQUESTED)


def _structure(fields: list[str], as_: str) -> str:
    envelope = {k: as_ for k in _ENVELOPE_KEYS if k != "data"}
    return json.dumps({**envelope, "data": {f: as_ for f in fields}}, separators=(",", ":"))


def _select(type_: str, fields: list[str], columns: str, checks: str, nullable: tuple[str, ...] = ()) -> str:
    """The values of the batch that name the type anywhere, with `ok` saying whether the event is claimed (the
    parsed `type` decides) and `columns` its row. `columns` must not fail on a row that is not claimed (casts
    are `try_cast`): the checks are a column rather than a WHERE because DuckDB pushes a filter's terms down
    into the parse, each term parsing the value again. Every type has a required field, so a `data` that is
    not an object (all its fields NULL) is never claimed."""
    return f"""
WITH parsed AS (
    SELECT pos, try(json_transform(v, '{_structure(fields, "JSON")}')) AS j,
           try(json_transform(v, '{_structure(fields, "VARCHAR")}')) AS s,
           try(json_keys(v)) AS ek, try(json_keys(v, '$.data')) AS dk
    FROM (SELECT pos, try(decode(value)) AS v FROM raw_values)
    WHERE contains(v, '"{type_}"')
      AND NOT regexp_matches(v, {_TRAILING_COMMA})
      AND NOT (contains(v, '\\u') AND regexp_matches(v, {_ODD_ESCAPE}))
), fields AS (
    SELECT *, s.event_id AS event_id, {_ts("s.occurred_at")} AS occurred_at FROM parsed
)
SELECT pos, coalesce(
    len(ek) = {len(_ENVELOPE_KEYS)} AND list_has_all(ek, {_ENVELOPE_KEYS})
    AND {_uuid_ok("event_id")}
    AND {_string("type")} AND s.type = '{type_}'
    AND j.version = '1'
    AND {_string("occurred_at")} AND regexp_full_match(s.occurred_at, {_TIMESTAMP}) AND occurred_at IS NOT NULL
    AND {_known_keys(fields, nullable)} AND {checks}, false) AS ok,
    event_id, {columns}
FROM fields
ORDER BY pos
"""


def _claimed(con: duckdb.DuckDBPyConnection, statement: str, raw_values: pa.Table) -> pa.Table:
    """The rows of a `_select` statement over `raw_values` (`value`, `pos`) whose event SQL claims, without `ok`."""
    table = arrow_with(con, statement, raw_values=raw_values)
    return table.filter(table["ok"]).drop_columns(["ok"])


_TURN_FIELDS = [
    "interaction_uuid",
    "session_id",
    "user_slug",
    "ip_address",
    "user_input",
    "assistant_blocks",
    "offering_uuids",
    "result_count",
    "is_flagged",
    "severity",
    "injection_categories",
    "pii_categories",
    "action_taken",
    "warning",
    "input_tokens",
    "output_tokens",
    "last_active_at",
    "model",
]
_SEVERITIES = "('', 'none', 'low', 'medium', 'high', 'critical')"
_ACTIONS = "('', 'allow', 'flag', 'warn', 'redact', 'block')"
_TURNS = _select(
    TURN_RECORDED,
    _TURN_FIELDS,
    f"""
    s.data.interaction_uuid AS uuid,
    s.data.session_id AS session_id,
    s.data.user_slug AS user_slug,
    left(s.data.user_input, 2000) AS user_input,
    coalesce(j.data.assistant_blocks::VARCHAR, '[]') AS assistant_blocks,
    {_strings_text("offering_uuids")} AS offering_uuids,
    try_cast(coalesce(try_cast(s.data.result_count AS BIGINT), json_array_length(j.data.offering_uuids), 0) AS INTEGER)
        AS result_count,
    coalesce(try_cast(s.data.is_flagged AS BOOLEAN), false) AS is_flagged,
    CASE WHEN s.data.severity IS NULL OR s.data.severity = '' THEN 'none' ELSE s.data.severity END AS severity,
    {_strings_text("injection_categories")} AS injection_categories,
    {_strings_text("pii_categories")} AS pii_categories,
    coalesce(s.data.action_taken, '') AS action_taken,
    coalesce(s.data.warning, '') AS warning,
    {_ip("ip_address")} AS ip_address,
    CASE WHEN j.data.last_active_at IS NULL THEN occurred_at ELSE {_ts("s.data.last_active_at")} END AS last_active_at,
    occurred_at AS created,
    occurred_at::DATE AS created_date,
    coalesce(try_cast(s.data.input_tokens AS BIGINT), 0) AS input_tokens,
    coalesce(try_cast(s.data.output_tokens AS BIGINT), 0) AS output_tokens,
    coalesce(s.data.model, '') AS model
    """,
    f"""
    {_uuid_ok("interaction_uuid")} AND {_chars("session_id", 1, 64)} AND {_chars("user_slug", 0, 128)}
    AND {_optional("ip_address", _string("ip_address"))}
    AND {_string("user_input")}
    AND {_optional("assistant_blocks", "starts_with(j.data.assistant_blocks, '[')")}
    AND {_optional("offering_uuids", _uuid_list_ok("offering_uuids"))}
    AND {_optional("result_count", _count("result_count", _INT32_MAX))}
    AND {_optional("is_flagged", _boolean("is_flagged"))}
    AND {_optional("severity", _string("severity") + f" AND s.data.severity IN {_SEVERITIES}")}
    AND {_optional("injection_categories", _plain_strings("injection_categories"))}
    AND {_optional("pii_categories", _plain_strings("pii_categories"))}
    AND {_optional("action_taken", _string("action_taken") + f" AND s.data.action_taken IN {_ACTIONS}")}
    AND {_optional("warning", _string("warning"))}
    AND {_optional("input_tokens", _count("input_tokens", _INT64_MAX))}
    AND {_optional("output_tokens", _count("output_tokens", _INT64_MAX))}
    AND {_optional("last_active_at", _ts_ok("last_active_at"))}
    AND {_optional("model", _chars("model", 0, 150))}
    """,
    nullable=("ip_address", "result_count", "last_active_at"),
)

_FEEDBACK = _select(
    FEEDBACK_SUBMITTED,
    ["interaction_uuid", "session_id", "score", "category", "comment", "ip_address"],
    f"""
    s.data.interaction_uuid AS uuid, s.data.session_id AS session_id, try_cast(s.data.score AS TINYINT) AS score,
    CASE WHEN {_string("category")} THEN s.data.category END AS category,
    coalesce(s.data.comment, '') AS comment, {_ip("ip_address")} AS ip, occurred_at AS submitted_at
    """,
    f"""
    {_uuid_ok("interaction_uuid")} AND {_chars("session_id", 1, 64)}
    AND ((j.data.score = '1' AND j.data.category IS NULL)
      OR (j.data.score = '-1' AND {_string("category")}
          AND s.data.category IN ('inaccurate', 'incomplete', 'misunderstood', 'slow_or_failed', 'other')))
    AND {_optional("comment", _string("comment"))} AND {_optional("ip_address", _string("ip_address"))}
    """,
    nullable=("category", "ip_address"),
)

_CLICKS = _select(
    OFFERING_CLICKED,
    ["interaction_uuid", "session_id", "offering_uuid"],
    "s.data.interaction_uuid AS uuid, s.data.session_id AS session_id, s.data.offering_uuid AS offering_uuid,"
    " occurred_at",
    f"{_uuid_ok('interaction_uuid')} AND {_chars('session_id', 1, 64)} AND {_uuid_ok('offering_uuid')}",
)

_REVIEWS = _select(
    SESSION_REVIEWED,
    [
        "session_id",
        "interaction_uuid",
        "resolution_score",
        "intent_category",
        "hallucination_detected",
        "hallucination_details",
        "summary",
        "judge_model",
        "judge_input_tokens",
        "judge_output_tokens",
    ],
    """
    s.data.interaction_uuid AS uuid, s.data.session_id AS session_id,
    try_cast(s.data.resolution_score AS TINYINT) AS resolution_score, s.data.intent_category AS intent_category,
    try_cast(s.data.hallucination_detected AS BOOLEAN) AS hallucination_detected,
    coalesce(s.data.hallucination_details, '') AS hallucination_details, coalesce(s.data.summary, '') AS summary,
    coalesce(s.data.judge_model, '') AS judge_model,
    coalesce(try_cast(s.data.judge_input_tokens AS BIGINT), 0) AS input_tokens,
    coalesce(try_cast(s.data.judge_output_tokens AS BIGINT), 0) AS output_tokens, occurred_at AS reviewed_at
    """,
    f"""
    {_chars("session_id", 1, 64)} AND {_uuid_ok("interaction_uuid")}
    AND j.data.resolution_score IN ('1', '2', '3', '4', '5')
    AND {_chars("intent_category", 0, 32)} AND regexp_full_match(s.data.intent_category, '[-a-zA-Z0-9_]*')
    AND {_boolean("hallucination_detected")}
    AND {_optional("hallucination_details", _string("hallucination_details"))}
    AND {_optional("summary", _string("summary"))} AND {_optional("judge_model", _string("judge_model"))}
    AND {_optional("judge_input_tokens", _count("judge_input_tokens", _INT64_MAX))}
    AND {_optional("judge_output_tokens", _count("judge_output_tokens", _INT64_MAX))}
    """,
)

_USAGE = _select(
    USAGE_RECORDED,
    ["input_tokens", "output_tokens", "source"],
    """
    occurred_at, occurred_at::DATE AS day, try_cast(s.data.input_tokens AS BIGINT) AS input_tokens,
    try_cast(s.data.output_tokens AS BIGINT) AS output_tokens, coalesce(s.data.source, '') AS source
    """,
    f"""{_count("input_tokens", _INT64_MAX)} AND {_count("output_tokens", _INT64_MAX)}
    AND {_optional("source", _string("source"))}""",
)

_ERASURES = _select(
    ERASURE_REQUESTED,
    ["user_slug", "session_id", "reason"],
    f"""
    CASE WHEN {_string("session_id")} THEN 'session_id' ELSE 'user_slug' END AS key_kind,
    CASE WHEN {_string("session_id")} THEN s.data.session_id ELSE s.data.user_slug END AS key,
    occurred_at, coalesce(s.data.reason, '') AS reason,
    CASE WHEN {_string("session_id")} THEN s.data.session_id END AS session_id
    """,
    f"""
    {_optional("user_slug", _chars("user_slug", 1, 128))} AND {_optional("session_id", _chars("session_id", 1, 64))}
    AND (coalesce({_string("user_slug")}, false) != coalesce({_string("session_id")}, false))
    AND {_optional("reason", _chars("reason", 0, 500))}
    """,
    nullable=("user_slug", "session_id"),
)

# --------------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------------


_NOT_AN_IP = "?"  # never an address: `_normal_ip`'s answer for a string Pydantic rejects


@lru_cache(maxsize=65536)
def _normal_ip(text: str) -> str:
    """The address as the models store it (`schemas.events.IpAddress`): a canonical dotted quad as it
    is, any other form through `ipaddress` (IPv4, then IPv6, as Pydantic tries them)."""
    if _DOTTED_QUAD.fullmatch(text):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return _NOT_AN_IP


def prepare_columns(
    con: duckdb.DuckDBPyConnection, raw: pa.Table, registry: EventRegistry | None = None
) -> PreparedBatch:
    """The prepared batch of `raw` (RAW_SCHEMA, in log order per partition); see the module docstring.
    `con` only runs the JSON statements (any connection: nothing is read from or written to its tables)."""
    n = raw.num_rows
    indexed = raw.select(["value"]).append_column("pos", pa.array(range(n), pa.int64()))
    events: list[Prepared] = []
    turns = _empty_turns()
    if handles(registry) and n:
        turns = _turns(con, raw, indexed, ip_policy() == "drop")
        events = _dependents(con, indexed, ip_policy() == "drop")
        events.sort(key=lambda e: e.pos)
    claimed = {e.pos for e in events}.union(turns["pos"].to_pylist())
    rest = [p for p in range(n) if p not in claimed]
    batch = PreparedBatch(
        topics=raw["topic"].to_pylist(),
        partitions=raw["partition"].to_pylist(),
        offsets=raw["offset"].to_pylist(),
        keys=raw["key"].to_pylist(),
        values=raw["value"].to_pylist(),
        timestamps=raw["timestamp_ms"].to_pylist(),
        events=events,
        rejections=[],
        turns=turns,
    )
    if rest:
        _fall_back(batch, rest, registry)
    return batch


def _empty_turns() -> pa.Table:
    return TURN_SCHEMA_WITH_POS.empty_table()


def _fall_back(batch: PreparedBatch, positions: list[int], registry: EventRegistry | None) -> None:
    """The Pydantic path for the events SQL did not claim, merged into `batch` at their positions."""
    records = [
        Record(
            batch.topics[p], batch.partitions[p], batch.offsets[p], batch.keys[p], batch.values[p], batch.timestamps[p]
        )
        for p in positions
    ]
    slow = prepare(records, registry)
    events = [e._replace(pos=positions[e.pos]) for e in slow.events]
    batch.rejections = [r._replace(pos=positions[r.pos]) for r in slow.rejections]
    if events:
        batch.events = sorted(batch.events + events, key=lambda e: e.pos)
    if slow.turns.num_rows:
        table = slow.turns
        index = table.schema.get_field_index("pos")
        table = table.set_column(index, "pos", pc.take(pa.array(positions, pa.int64()), table["pos"]))
        batch.turns = pa.concat_tables([batch.turns, table]).sort_by("pos")


def _turns(con: duckdb.DuckDBPyConnection, raw: pa.Table, raw_values: pa.Table, drop_ip: bool) -> pa.Table:
    table = _claimed(con, _TURNS, raw_values)
    if not table.num_rows:
        return _empty_turns()
    pos = table["pos"].to_pylist()
    user_inputs = table["user_input"].to_pylist()
    blocks_texts = table["assistant_blocks"].to_pylist()
    keep: list[int] = []
    stored_blocks: list[str] = []
    terms: list[str] = []
    clarifications: list[bool] = []
    ips = table["ip_address"].to_pylist()
    for i, (text, user_input, ip) in enumerate(zip(blocks_texts, user_inputs, ips, strict=True)):
        if ip is not None:
            ip = ips[i] = _normal_ip(ip)
            if ip is _NOT_AN_IP:
                continue
        try:
            blocks = orjson.loads(text)
        except orjson.JSONDecodeError:  # an integer beyond 64 bits, say: Pydantic's path reads it
            continue
        keep.append(i)
        stored_blocks.append(to_json(blocks))
        terms.append(document_terms(user_input, blocks))
        clarifications.append(is_clarification(blocks))
    if len(keep) < table.num_rows:
        table = table.take(pa.array(keep, pa.int64()))
        pos = [pos[i] for i in keep]
        ips = [ips[i] for i in keep]
    positions = pa.array(pos, pa.int64())
    ip = pa.array(ips, pa.string()) if not drop_ip else pa.nulls(table.num_rows, pa.string())
    columns: dict[str, Any] = {
        "uuid": table["uuid"],
        "session_id": table["session_id"],
        "user_slug": table["user_slug"],
        "user_input": table["user_input"],
        "assistant_blocks": pa.array(stored_blocks, pa.string()),
        "search_terms": pa.array(terms, pa.string()),
        "offering_uuids": table["offering_uuids"],
        "result_count": table["result_count"],
        "is_flagged": table["is_flagged"],
        "severity": table["severity"],
        "injection_categories": table["injection_categories"],
        "pii_categories": table["pii_categories"],
        "action_taken": table["action_taken"],
        "warning": table["warning"],
        "ip_address": ip,
        "last_active_at": table["last_active_at"],
        "created": table["created"],
        "created_date": table["created_date"],
        "input_tokens": table["input_tokens"],
        "output_tokens": table["output_tokens"],
        "model": table["model"],
        "is_clarification": pa.array(clarifications, pa.bool_()),
        "event_id": table["event_id"],
        "source_partition": pc.take(raw["partition"], positions),
        "source_offset": pc.take(raw["offset"], positions),
        "pos": positions,
    }
    return pa.table(columns).cast(TURN_SCHEMA_WITH_POS)


def _rows(con: duckdb.DuckDBPyConnection, statement: str, raw_values: pa.Table) -> Iterator[tuple[Any, ...]]:
    table = _claimed(con, statement, raw_values)
    return zip(*(column.to_pylist() for column in table.columns), strict=True)


def _dependents(con: duckdb.DuckDBPyConnection, raw_values: pa.Table, drop_ip: bool) -> list[Prepared]:
    events: list[Prepared] = []
    for pos, event_id, uuid, session_id, score, category, comment, ip, at in _rows(con, _FEEDBACK, raw_values):
        if ip is not None:
            ip = _normal_ip(ip)
            if ip is _NOT_AN_IP:
                continue
        row = FeedbackRow(uuid, score, category, comment, None if drop_ip else ip, at)
        events.append(Prepared(pos, FEEDBACK_SUBMITTED, event_id, uuid, session_id, row))
    for pos, event_id, uuid, session_id, offering, at in _rows(con, _CLICKS, raw_values):
        row_c = ClickRow(event_id, uuid, offering, session_id, at)
        events.append(Prepared(pos, OFFERING_CLICKED, event_id, uuid, session_id, row_c))
    for pos, event_id, uuid, session_id, *fields in _rows(con, _REVIEWS, raw_values):
        events.append(Prepared(pos, SESSION_REVIEWED, event_id, uuid, session_id, ReviewRow(uuid, *fields)))
    for pos, event_id, at, day, tokens_in, tokens_out, source in _rows(con, _USAGE, raw_values):
        row_u = UsageRow(event_id, at, day, tokens_in, tokens_out, source)
        events.append(Prepared(pos, USAGE_RECORDED, event_id, None, None, row_u))
    for pos, event_id, kind, key, at, reason, session_id in _rows(con, _ERASURES, raw_values):
        row_e = ErasureRow(event_id, kind, key, at, reason)
        events.append(Prepared(pos, ERASURE_REQUESTED, event_id, None, session_id, row_e))
    return events


__all__ = ["RAW_SCHEMA", "Rejected", "handles", "prepare_columns", "raw_table"]
