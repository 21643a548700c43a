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
from functools import lru_cache
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from projector.arrow_views import registered
from projector.prepare import (
    TURN_SCHEMA_WITH_POS,
    ClickRow,
    ErasureRow,
    FeedbackRow,
    Prepared,
    PreparedBatch,
    Rejected,
    ReviewRow,
    TurnRef,
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
# Each value is parsed a few times at most: the JSON types of all the fields of a level in one call
# (`t[i]`, NULL when absent), their values as text in another (`s[i]`), and the arrays' JSON (`j[i]`).
# --------------------------------------------------------------------------------------------------

_UUID = "'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'"
_TIMESTAMP = (
    r"'(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])'"
)
# Text both JSON parsers might read differently: DuckDB's reader takes trailing commas; lone
# surrogates and NUL or control characters by escape. (NaN and Infinity, which DuckDB and Pydantic
# take but orjson does not, can only hide in a field nobody checks: an unknown field is not claimed.)
_TRAILING_COMMA = r"',\s*[\]}]'"
_ODD_ESCAPE = r"'\\u[dD][89a-fA-F]|\\u00[01]'"  # looked for only in values with an escape at all
# A character JSON writes as an escape: a string without any is stored between quotes as it is.
_NEEDS_ESCAPE = r"""'["\\\x00-\x1f]'"""
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


def _string(i: int) -> str:
    return f"(t[{i}] = 'VARCHAR')"


def _count(i: int, limit: int) -> str:
    # A non-negative JSON integer within the column's range.
    return f"(t[{i}] = 'UBIGINT' AND s[{i}]::UBIGINT <= {limit})"


def _optional(i: int, check: str) -> str:
    """Absent, or `check`."""
    return f"(t[{i}] IS NULL OR {check})"


def _nullable(i: int, check: str) -> str:
    """Absent, JSON null, or `check`."""
    return f"(t[{i}] IS NULL OR t[{i}] = 'NULL' OR {check})"


def _known_keys() -> str:
    # Only known fields, each once: Pydantic keeps the last of a duplicated key, DuckDB's paths find the
    # first; and an unknown field, which both ignore, is not worth reading to see whether it parses alike.
    # As many keys as known fields found (`t[i]` not NULL) says both at once.
    return "(len(keys) = list_count(t))"


def _ts(text: str) -> str:
    return f"timezone('UTC', try_cast({text} AS TIMESTAMPTZ))"


def _ts_ok(i: int) -> str:
    return f"({_string(i)} AND regexp_full_match(s[{i}], {_TIMESTAMP}) AND {_ts(f's[{i}]')} IS NOT NULL)"


def _uuid_ok(i: int) -> str:
    return f"({_string(i)} AND regexp_full_match(s[{i}], {_UUID}))"


def _chars(i: int, low: int, high: int) -> str:
    return f"({_string(i)} AND length(s[{i}]) BETWEEN {low} AND {high})"


def _ip(i: int) -> str:
    # Any string passes here: its normal form (or its rejection) is Python's `ipaddress`, see `_normal_ip`.
    return f"CASE WHEN {_string(i)} THEN s[{i}] END"


def _plain_strings(j: str) -> str:
    # An array of strings that JSON writes without escapes (so its stored text is built below).
    return (
        f"(json_type({j}) = 'ARRAY' AND coalesce(list_bool_and(list_transform(json_extract({j}, '$[*]'),"
        f" lambda x: json_type(x) = 'VARCHAR' AND NOT regexp_matches(x->>'$', {_NEEDS_ESCAPE}))), true))"
    )


def _strings_text(j: str) -> str:
    return (
        f"CASE WHEN {j} IS NULL OR json_array_length({j}) = 0 THEN '[]' ELSE"
        f" '[\"' || array_to_string(list_transform(json_extract_string({j}, '$[*]'), lambda x: x), '\",\"')"
        " || '\"]' END"
    )


def _uuid_list_ok(j: str) -> str:
    return (
        f"(json_type({j}) = 'ARRAY' AND coalesce(list_bool_and(list_transform(json_extract({j}, '$[*]'),"
        f" lambda x: json_type(x) = 'VARCHAR' AND regexp_full_match(x->>'$', {_UUID}))), true))"
    )


_ENVELOPE_KEYS = ["event_id", "type", "version", "occurred_at", "data"]
_TYPES = (TURN_RECORDED, FEEDBACK_SUBMITTED, OFFERING_CLICKED, SESSION_REVIEWED, USAGE_RECORDED, ERASURE_REQUESTED)
_ENVELOPE_PATHS = "[" + ", ".join(f"'$.{k}'" for k in _ENVELOPE_KEYS) + "]"

# The envelope of every value that may be claimed: which type, which event, when; and its `data`.
_ENVELOPE = f"""
WITH src AS (
    SELECT pos, try(decode(value)) AS v FROM raw_values
), syntax AS (
    SELECT pos, v FROM src
    WHERE v IS NOT NULL AND left(v, 1) = '{{' AND right(v, 1) = '}}'
      AND NOT regexp_matches(v, {_TRAILING_COMMA})
      AND NOT (contains(v, '\\u') AND regexp_matches(v, {_ODD_ESCAPE}))
), env AS MATERIALIZED (
    SELECT pos, try(json_type(v, {_ENVELOPE_PATHS})) AS t, try(json_extract_string(v, {_ENVELOPE_PATHS})) AS s,
           try(json_keys(v)) AS keys, v
    FROM syntax
)
SELECT pos, s[2] AS type, s[1] AS event_id, {_ts("s[4]")} AS occurred_at, json_extract(v, '$.data') AS data
FROM env
WHERE t IS NOT NULL AND {_known_keys()}
  AND {_uuid_ok(1)}
  AND {_string(2)} AND s[2] IN ({", ".join(f"'{t}'" for t in _TYPES)})
  AND t[3] = 'UBIGINT' AND s[3] = '1'
  AND {_ts_ok(4)}
  AND t[5] = 'OBJECT'
"""


def _select(type_: str, fields: list[str], columns: str, checks: str, arrays: tuple[str, ...] = ()) -> str:
    """The claimed events of one type: `t[i]`/`s[i]` are the type and text of data's field `fields[i - 1]`
    (NULL when absent), `j[k]` the JSON of the array field `arrays[k - 1]`."""
    paths = "[" + ", ".join(f"'$.{f}'" for f in fields) + "]"
    array_paths = "[" + ", ".join(f"'$.{f}'" for f in arrays) + "]"
    extract_arrays = f", json_extract(data, {array_paths}) AS j" if arrays else ""
    # Materialized: each `t[i]` would otherwise parse the value again.
    return f"""
WITH fields AS MATERIALIZED (
    SELECT pos, event_id, occurred_at, json_type(data, {paths}) AS t, json_extract_string(data, {paths}) AS s,
           json_keys(data) AS keys {extract_arrays}
    FROM envelopes WHERE type = '{type_}'
)
SELECT pos, event_id, {columns}
FROM fields
WHERE {_known_keys()} AND {checks}
ORDER BY pos
"""


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
_TURN_ARRAYS = ("assistant_blocks", "offering_uuids", "injection_categories", "pii_categories")
_TURNS = _select(
    TURN_RECORDED,
    _TURN_FIELDS,
    f"""
    s[1] AS uuid,
    s[2] AS session_id,
    s[3] AS user_slug,
    left(s[5], 2000) AS user_input,
    coalesce(j[1]::VARCHAR, '[]') AS assistant_blocks,
    {_strings_text("j[2]")} AS offering_uuids,
    coalesce(CASE WHEN t[8] = 'UBIGINT' THEN s[8]::BIGINT END, coalesce(json_array_length(j[2]), 0))::INTEGER
        AS result_count,
    coalesce(s[9]::BOOLEAN, false) AS is_flagged,
    CASE WHEN t[10] IS NULL OR s[10] = '' THEN 'none' ELSE s[10] END AS severity,
    {_strings_text("j[3]")} AS injection_categories,
    {_strings_text("j[4]")} AS pii_categories,
    coalesce(s[13], '') AS action_taken,
    coalesce(s[14], '') AS warning,
    {_ip(4)} AS ip_address,
    CASE WHEN t[17] IS NULL OR t[17] = 'NULL' THEN occurred_at ELSE {_ts("s[17]")} END AS last_active_at,
    occurred_at AS created,
    occurred_at::DATE AS created_date,
    coalesce(s[15]::BIGINT, 0) AS input_tokens,
    coalesce(s[16]::BIGINT, 0) AS output_tokens,
    coalesce(s[18], '') AS model
    """,
    f"""
    {_uuid_ok(1)} AND {_chars(2, 1, 64)} AND {_chars(3, 0, 128)} AND {_nullable(4, _string(4))}
    AND {_string(5)}
    AND {_optional(6, "t[6] = 'ARRAY'")}
    AND {_optional(7, _uuid_list_ok("j[2]"))}
    AND {_nullable(8, _count(8, _INT32_MAX))}
    AND {_optional(9, "t[9] = 'BOOLEAN'")}
    AND {_optional(10, _string(10) + " AND s[10] IN ('', 'none', 'low', 'medium', 'high', 'critical')")}
    AND {_optional(11, _plain_strings("j[3]"))}
    AND {_optional(12, _plain_strings("j[4]"))}
    AND {_optional(13, _string(13) + " AND s[13] IN ('', 'allow', 'flag', 'warn', 'redact', 'block')")}
    AND {_optional(14, _string(14))}
    AND {_optional(15, _count(15, _INT64_MAX))}
    AND {_optional(16, _count(16, _INT64_MAX))}
    AND {_nullable(17, _ts_ok(17))}
    AND {_optional(18, _chars(18, 0, 150))}
    """,
    _TURN_ARRAYS,
)

_FEEDBACK = _select(
    FEEDBACK_SUBMITTED,
    ["interaction_uuid", "session_id", "score", "category", "comment", "ip_address"],
    f"""
    s[1] AS uuid, s[2] AS session_id, s[3]::TINYINT AS score,
    CASE WHEN {_string(4)} THEN s[4] END AS category,
    coalesce(s[5], '') AS comment, {_ip(6)} AS ip, occurred_at AS submitted_at
    """,
    f"""
    {_uuid_ok(1)} AND {_chars(2, 1, 64)}
    AND ((t[3] = 'UBIGINT' AND s[3] = '1' AND (t[4] IS NULL OR t[4] = 'NULL'))
      OR (t[3] = 'BIGINT' AND s[3] = '-1' AND {_string(4)}
          AND s[4] IN ('inaccurate', 'incomplete', 'misunderstood', 'slow_or_failed', 'other')))
    AND {_optional(5, _string(5))} AND {_nullable(6, _string(6))}
    """,
)

_CLICKS = _select(
    OFFERING_CLICKED,
    ["interaction_uuid", "session_id", "offering_uuid"],
    "s[1] AS uuid, s[2] AS session_id, s[3] AS offering_uuid, occurred_at",
    f"{_uuid_ok(1)} AND {_chars(2, 1, 64)} AND {_uuid_ok(3)}",
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
    s[2] AS uuid, s[1] AS session_id, s[3]::TINYINT AS resolution_score,
    s[4] AS intent_category, s[5]::BOOLEAN AS hallucination_detected,
    coalesce(s[6], '') AS hallucination_details, coalesce(s[7], '') AS summary,
    coalesce(s[8], '') AS judge_model, coalesce(s[9]::BIGINT, 0) AS input_tokens,
    coalesce(s[10]::BIGINT, 0) AS output_tokens, occurred_at AS reviewed_at
    """,
    f"""
    {_chars(1, 1, 64)} AND {_uuid_ok(2)}
    AND t[3] = 'UBIGINT' AND s[3] IN ('1', '2', '3', '4', '5')
    AND {_chars(4, 0, 32)} AND regexp_full_match(s[4], '[-a-zA-Z0-9_]*')
    AND t[5] = 'BOOLEAN'
    AND {_optional(6, _string(6))} AND {_optional(7, _string(7))} AND {_optional(8, _string(8))}
    AND {_optional(9, _count(9, _INT64_MAX))} AND {_optional(10, _count(10, _INT64_MAX))}
    """,
)

_USAGE = _select(
    USAGE_RECORDED,
    ["input_tokens", "output_tokens", "source"],
    """
    occurred_at, occurred_at::DATE AS day, s[1]::BIGINT AS input_tokens, s[2]::BIGINT AS output_tokens,
    coalesce(s[3], '') AS source
    """,
    f"{_count(1, _INT64_MAX)} AND {_count(2, _INT64_MAX)} AND {_optional(3, _string(3))}",
)

_ERASURES = _select(
    ERASURE_REQUESTED,
    ["user_slug", "session_id", "reason"],
    """
    CASE WHEN t[2] = 'VARCHAR' THEN 'session_id' ELSE 'user_slug' END AS key_kind,
    CASE WHEN t[2] = 'VARCHAR' THEN s[2] ELSE s[1] END AS key,
    occurred_at, coalesce(s[3], '') AS reason,
    CASE WHEN t[2] = 'VARCHAR' THEN s[2] END AS session_id
    """,
    f"""
    {_nullable(1, _chars(1, 1, 128))} AND {_nullable(2, _chars(2, 1, 64))}
    AND (coalesce(t[1] = 'VARCHAR', false) != coalesce(t[2] = 'VARCHAR', false))
    AND {_optional(3, _chars(3, 0, 500))}
    """,
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
        with registered(con, "raw_values", indexed):
            envelopes = con.sql(_ENVELOPE).to_arrow_table()
        with registered(con, "envelopes", envelopes):
            turns, turn_events = _turns(con, raw, ip_policy() == "drop")
            events = turn_events + _dependents(con, ip_policy() == "drop")
        events.sort(key=lambda e: e.pos)
    claimed = {e.pos for e in events}
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


def _turns(con: duckdb.DuckDBPyConnection, raw: pa.Table, drop_ip: bool) -> tuple[pa.Table, list[Prepared]]:
    table = con.sql(_TURNS).to_arrow_table()
    if not table.num_rows:
        return _empty_turns(), []
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
    turns = pa.table(columns).cast(TURN_SCHEMA_WITH_POS)
    events = [
        Prepared(p, TURN_RECORDED, event_id, uuid, session_id, TurnRef(slug))
        for p, event_id, uuid, session_id, slug in zip(
            pos,
            turns["event_id"].to_pylist(),
            turns["uuid"].to_pylist(),
            turns["session_id"].to_pylist(),
            turns["user_slug"].to_pylist(),
            strict=True,
        )
    ]
    return turns, events


def _dependents(con: duckdb.DuckDBPyConnection, drop_ip: bool) -> list[Prepared]:
    events: list[Prepared] = []
    for pos, event_id, uuid, session_id, score, category, comment, ip, at in con.execute(_FEEDBACK).fetchall():
        if ip is not None:
            ip = _normal_ip(ip)
            if ip is _NOT_AN_IP:
                continue
        row = FeedbackRow(uuid, score, category, comment, None if drop_ip else ip, at)
        events.append(Prepared(pos, FEEDBACK_SUBMITTED, event_id, uuid, session_id, row))
    for pos, event_id, uuid, session_id, offering, at in con.execute(_CLICKS).fetchall():
        row_c = ClickRow(event_id, uuid, offering, session_id, at)
        events.append(Prepared(pos, OFFERING_CLICKED, event_id, uuid, session_id, row_c))
    for pos, event_id, uuid, session_id, *fields in con.execute(_REVIEWS).fetchall():
        events.append(Prepared(pos, SESSION_REVIEWED, event_id, uuid, session_id, ReviewRow(uuid, *fields)))
    for pos, event_id, at, day, tokens_in, tokens_out, source in con.execute(_USAGE).fetchall():
        row_u = UsageRow(event_id, at, day, tokens_in, tokens_out, source)
        events.append(Prepared(pos, USAGE_RECORDED, event_id, None, None, row_u))
    for pos, event_id, kind, key, at, reason, session_id in con.execute(_ERASURES).fetchall():
        row_e = ErasureRow(event_id, kind, key, at, reason)
        events.append(Prepared(pos, ERASURE_REQUESTED, event_id, None, session_id, row_e))
    return events


__all__ = ["RAW_SCHEMA", "Rejected", "handles", "prepare_columns", "raw_table"]
