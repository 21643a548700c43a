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
  (tests/projector/test_sqlprepare.py checks that, and that the rows are equal, on generated events).
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
# --------------------------------------------------------------------------------------------------

_UUID = "'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'"
_TIMESTAMP = (
    r"'(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])'"
)
# Text both JSON parsers might read differently: DuckDB's reader takes trailing commas; lone
# surrogates and NUL or control characters by escape. (NaN and Infinity, which DuckDB and Pydantic
# take but orjson does not, can only hide in a field nobody checks: an unknown field is not claimed.)
_LENIENT = r"',\s*[\]}]|\\u[dD][89a-fA-F]|\\u00[01]'"
# A character JSON writes as an escape: a string without any is stored between quotes as it is.
_NEEDS_ESCAPE = r"""'["\\\x00-\x1f]'"""
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


def _string(j: str) -> str:
    return f"(json_type({j}) = 'VARCHAR')"


def _count(j: str, limit: int) -> str:
    # A non-negative JSON integer within the column's range.
    return f"(json_type({j}) = 'UBIGINT' AND {j}::UBIGINT <= {limit})"


def _optional(j: str, check: str) -> str:
    """Absent, or `check`."""
    return f"({j} IS NULL OR {check})"


def _known_keys(keys: str, known: list[str]) -> str:
    # Only known fields, each once: Pydantic keeps the last of a duplicated key, DuckDB's paths find the
    # first; and an unknown field, which both ignore, is not worth reading to see whether it parses alike.
    names = ", ".join(f"'{k}'" for k in known)
    return f"(len({keys}) = len(list_distinct({keys})) AND list_has_all([{names}], {keys}))"


def _ts(text: str) -> str:
    return f"timezone('UTC', try_cast({text} AS TIMESTAMPTZ))"


def _ts_ok(j: str) -> str:
    text = f"{j}->>'$'"
    return f"({_string(j)} AND regexp_full_match({text}, {_TIMESTAMP}) AND {_ts(text)} IS NOT NULL)"


def _uuid_ok(j: str) -> str:
    return f"({_string(j)} AND regexp_full_match({j}->>'$', {_UUID}))"


def _chars(j: str, low: int, high: int) -> str:
    return f"({_string(j)} AND length({j}->>'$') BETWEEN {low} AND {high})"


def _ip_ok(j: str) -> str:
    # Any string: its normal form (or its rejection) is Python's `ipaddress`, see `_normal_ip`.
    return f"({j} IS NULL OR json_type({j}) = 'NULL' OR {_string(j)})"


def _ip(j: str) -> str:
    return f"CASE WHEN {_string(j)} THEN {j}->>'$' END"


def _plain_strings(j: str) -> str:
    # An array of strings that JSON writes without escapes (so its stored text is built below).
    return (
        f"(json_type({j}) = 'ARRAY' AND coalesce(list_bool_and(list_transform(json_extract({j}, '$[*]'),"
        f" lambda x: json_type(x) = 'VARCHAR' AND NOT regexp_matches(x->>'$', {_NEEDS_ESCAPE}))), true))"
    )


def _strings_text(j: str) -> str:
    return (
        f"CASE WHEN {j} IS NULL OR json_array_length({j}) = 0 THEN '[]' ELSE"
        f" '[\"' || array_to_string(list_transform(json_extract({j}, '$[*]'), lambda x: x->>'$'), '\",\"') || '\"]' END"
    )


def _uuid_list_ok(j: str) -> str:
    return (
        f"(json_type({j}) = 'ARRAY' AND coalesce(list_bool_and(list_transform(json_extract({j}, '$[*]'),"
        f" lambda x: json_type(x) = 'VARCHAR' AND regexp_full_match(x->>'$', {_UUID}))), true))"
    )


_ENVELOPE_KEYS = ["event_id", "type", "version", "occurred_at", "data"]
_TYPES = (TURN_RECORDED, FEEDBACK_SUBMITTED, OFFERING_CLICKED, SESSION_REVIEWED, USAGE_RECORDED, ERASURE_REQUESTED)

# The envelope of every value that may be claimed: which type, which event, when; and its `data`.
_ENVELOPE = f"""
WITH src AS (
    SELECT pos, try(decode(value)) AS v FROM raw_values
), syntax AS (
    SELECT pos, v FROM src
    WHERE v IS NOT NULL AND left(v, 1) = '{{' AND right(v, 1) = '}}' AND NOT regexp_matches(v, {_LENIENT})
), env AS MATERIALIZED (
    SELECT pos, try(json_extract(v, ['$.event_id', '$.type', '$.version', '$.occurred_at', '$.data'])) AS e,
           try(json_keys(v)) AS keys
    FROM syntax
)
SELECT pos, e[2]->>'$' AS type, e[1]->>'$' AS event_id, {_ts("e[4]->>'$'")} AS occurred_at, e[5] AS data
FROM env
WHERE e IS NOT NULL AND {_known_keys("keys", _ENVELOPE_KEYS)}
  AND {_uuid_ok("e[1]")}
  AND {_string("e[2]")} AND e[2]->>'$' IN ({", ".join(f"'{t}'" for t in _TYPES)})
  AND e[3]::VARCHAR = '1'
  AND {_ts_ok("e[4]")}
  AND json_type(e[5]) = 'OBJECT'
"""


def _select(type_: str, fields: list[str], columns: str, checks: str) -> str:
    """The claimed events of one type: `d[i]` is data's field `fields[i - 1]` (NULL when absent)."""
    paths = ", ".join(f"'$.{f}'" for f in fields)
    # Materialized: each `d[i]` would otherwise extract every path again.
    return f"""
WITH fields AS MATERIALIZED (
    SELECT pos, event_id, occurred_at, json_extract(data, [{paths}]) AS d, json_keys(data) AS keys
    FROM envelopes WHERE type = '{type_}'
)
SELECT pos, event_id, {columns}
FROM fields
WHERE {_known_keys("keys", fields)} AND {checks}
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
_TURNS = _select(
    TURN_RECORDED,
    _TURN_FIELDS,
    f"""
    d[1]->>'$' AS uuid,
    d[2]->>'$' AS session_id,
    d[3]->>'$' AS user_slug,
    left(d[5]->>'$', 2000) AS user_input,
    coalesce(d[6]::VARCHAR, '[]') AS assistant_blocks,
    {_strings_text("d[7]")} AS offering_uuids,
    coalesce(d[8]::BIGINT, coalesce(json_array_length(d[7]), 0))::INTEGER AS result_count,
    coalesce(d[9]::BOOLEAN, false) AS is_flagged,
    CASE WHEN d[10] IS NULL OR d[10]->>'$' = '' THEN 'none' ELSE d[10]->>'$' END AS severity,
    {_strings_text("d[11]")} AS injection_categories,
    {_strings_text("d[12]")} AS pii_categories,
    coalesce(d[13]->>'$', '') AS action_taken,
    coalesce(d[14]->>'$', '') AS warning,
    {_ip("d[4]")} AS ip_address,
    CASE WHEN d[17] IS NULL OR json_type(d[17]) = 'NULL' THEN occurred_at ELSE {_ts("d[17]->>'$'")} END
        AS last_active_at,
    occurred_at AS created,
    occurred_at::DATE AS created_date,
    coalesce(d[15]::BIGINT, 0) AS input_tokens,
    coalesce(d[16]::BIGINT, 0) AS output_tokens,
    coalesce(d[18]->>'$', '') AS model
    """,
    f"""
    {_uuid_ok("d[1]")} AND {_chars("d[2]", 1, 64)} AND {_chars("d[3]", 0, 128)} AND {_ip_ok("d[4]")}
    AND {_string("d[5]")}
    AND (d[6] IS NULL OR json_type(d[6]) = 'ARRAY')
    AND (d[7] IS NULL OR {_uuid_list_ok("d[7]")})
    AND (d[8] IS NULL OR json_type(d[8]) = 'NULL' OR {_count("d[8]", _INT32_MAX)})
    AND {_optional("d[9]", "json_type(d[9]) = 'BOOLEAN'")}
    AND {_optional("d[10]", _string("d[10]") + " AND d[10]->>'$' IN ('', 'none', 'low', 'medium', 'high', 'critical')")}
    AND {_optional("d[11]", _plain_strings("d[11]"))}
    AND {_optional("d[12]", _plain_strings("d[12]"))}
    AND {_optional("d[13]", _string("d[13]") + " AND d[13]->>'$' IN ('', 'allow', 'flag', 'warn', 'redact', 'block')")}
    AND {_optional("d[14]", _string("d[14]"))}
    AND {_optional("d[15]", _count("d[15]", _INT64_MAX))}
    AND {_optional("d[16]", _count("d[16]", _INT64_MAX))}
    AND (d[17] IS NULL OR json_type(d[17]) = 'NULL' OR {_ts_ok("d[17]")})
    AND {_optional("d[18]", _chars("d[18]", 0, 150))}
    """,
)

_FEEDBACK = _select(
    FEEDBACK_SUBMITTED,
    ["interaction_uuid", "session_id", "score", "category", "comment", "ip_address"],
    f"""
    d[1]->>'$' AS uuid, d[2]->>'$' AS session_id, d[3]::TINYINT AS score,
    CASE WHEN {_string("d[4]")} THEN d[4]->>'$' END AS category,
    coalesce(d[5]->>'$', '') AS comment, {_ip("d[6]")} AS ip, occurred_at AS submitted_at
    """,
    f"""
    {_uuid_ok("d[1]")} AND {_chars("d[2]", 1, 64)}
    AND ((d[3]::VARCHAR = '1' AND (d[4] IS NULL OR json_type(d[4]) = 'NULL'))
      OR (d[3]::VARCHAR = '-1' AND {_string("d[4]")}
          AND d[4]->>'$' IN ('inaccurate', 'incomplete', 'misunderstood', 'slow_or_failed', 'other')))
    AND {_optional("d[5]", _string("d[5]"))} AND {_ip_ok("d[6]")}
    """,
)

_CLICKS = _select(
    OFFERING_CLICKED,
    ["interaction_uuid", "session_id", "offering_uuid"],
    "d[1]->>'$' AS uuid, d[2]->>'$' AS session_id, d[3]->>'$' AS offering_uuid, occurred_at",
    f"{_uuid_ok('d[1]')} AND {_chars('d[2]', 1, 64)} AND {_uuid_ok('d[3]')}",
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
    d[2]->>'$' AS uuid, d[1]->>'$' AS session_id, d[3]::TINYINT AS resolution_score,
    d[4]->>'$' AS intent_category, d[5]::BOOLEAN AS hallucination_detected,
    coalesce(d[6]->>'$', '') AS hallucination_details, coalesce(d[7]->>'$', '') AS summary,
    coalesce(d[8]->>'$', '') AS judge_model, coalesce(d[9]::BIGINT, 0) AS input_tokens,
    coalesce(d[10]::BIGINT, 0) AS output_tokens, occurred_at AS reviewed_at
    """,
    f"""
    {_chars("d[1]", 1, 64)} AND {_uuid_ok("d[2]")}
    AND d[3]::VARCHAR IN ('1', '2', '3', '4', '5')
    AND {_chars("d[4]", 0, 32)} AND regexp_full_match(d[4]->>'$', '[-a-zA-Z0-9_]*')
    AND json_type(d[5]) = 'BOOLEAN'
    AND {_optional("d[6]", _string("d[6]"))} AND {_optional("d[7]", _string("d[7]"))}
    AND {_optional("d[8]", _string("d[8]"))}
    AND {_optional("d[9]", _count("d[9]", _INT64_MAX))} AND {_optional("d[10]", _count("d[10]", _INT64_MAX))}
    """,
)

_USAGE = _select(
    USAGE_RECORDED,
    ["input_tokens", "output_tokens", "source"],
    """
    occurred_at, occurred_at::DATE AS day, d[1]::BIGINT AS input_tokens, d[2]::BIGINT AS output_tokens,
    coalesce(d[3]->>'$', '') AS source
    """,
    f"{_count('d[1]', _INT64_MAX)} AND {_count('d[2]', _INT64_MAX)} AND {_optional('d[3]', _string('d[3]'))}",
)

_ERASURES = _select(
    ERASURE_REQUESTED,
    ["user_slug", "session_id", "reason"],
    """
    CASE WHEN json_type(d[2]) = 'VARCHAR' THEN 'session_id' ELSE 'user_slug' END AS key_kind,
    CASE WHEN json_type(d[2]) = 'VARCHAR' THEN d[2]->>'$' ELSE d[1]->>'$' END AS key,
    occurred_at, coalesce(d[3]->>'$', '') AS reason,
    CASE WHEN json_type(d[2]) = 'VARCHAR' THEN d[2]->>'$' END AS session_id
    """,
    f"""
    (d[1] IS NULL OR json_type(d[1]) = 'NULL' OR {_chars("d[1]", 1, 128)})
    AND (d[2] IS NULL OR json_type(d[2]) = 'NULL' OR {_chars("d[2]", 1, 64)})
    AND (coalesce(json_type(d[1]) = 'VARCHAR', false) != coalesce(json_type(d[2]) = 'VARCHAR', false))
    AND {_optional("d[3]", _chars("d[3]", 0, 500))}
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
