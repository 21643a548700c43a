"""How one turn is served: each field of an interaction, and of its nested feedback, as SQL over
`interactions`, and the JSON object of the whole row rendered from them by DuckDB (`ROW_JSON`).

One definition for the projector, which keeps every turn's `ROW_JSON` in `interactions.body` (set-wise,
in the transaction that changes the turn: `projector.apply`), and the API, which serves that column
for list, retrieve, by-session and by-user/{slug}, and selects the same fields one by one for the CSV
export and the feedbacks endpoints (`api.interactions_sql`, which checks the field names against
`api.models`).

What is stored is byte for byte what orjson writes for the row object (its fields in this order, the
JSON-valued ones spliced in as they are stored, `"feedback": null` when the turn has neither feedback
nor review): `ROW_JSON` writes that for every row whose text then holds no backslash-u00 escape (`NEEDS_EXACT`),
`ROW_JSON_EXACT` for every row (see below why both).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson


def ts(column: str) -> str:
    """A stored UTC TIMESTAMP as `2026-11-26T09:15:02.123456Z` (always six fraction digits)."""
    return f"strftime({column}, '%Y-%m-%dT%H:%M:%S.%fZ')"


# Interaction fields, in the model's order, to the SQL that yields each. JSON-valued fields are stored
# as JSON text and spliced into the response as they are.
INTERACTION_SQL: dict[str, str] = {
    "uuid": "CAST(uuid AS VARCHAR)",
    "user_slug": "user_slug",
    "user_input": "user_input",
    "assistant_blocks": "assistant_blocks",
    "offering_uuids": "offering_uuids",
    "result_count": "result_count",
    "is_flagged": "is_flagged",
    "severity": "severity",
    "injection_categories": "injection_categories",
    "pii_categories": "pii_categories",
    "action_taken": "action_taken",
    "warning": "warning",
    "ip_address": "ip_address",
    "session_id": "session_id",
    "last_active_at": ts("last_active_at"),
    "created": ts("created"),
    "feedback": "(fb_score IS NOT NULL OR llm_reviewed_at IS NOT NULL)",
    "click_count": "click_count",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
}
JSON_FIELDS = frozenset({"assistant_blocks", "offering_uuids", "injection_categories", "pii_categories"})
HAS_FEEDBACK = INTERACTION_SQL["feedback"]

FEEDBACK_SQL: dict[str, str] = {
    "interaction_uuid": "CAST(uuid AS VARCHAR)",
    "score": "fb_score",
    "category": "coalesce(fb_category, '')",
    "comment": "fb_comment",
    "submitted_from_ip": "fb_ip",
    "submitted_at": ts("fb_submitted_at"),
    "llm_resolution_score": "llm_resolution_score",
    "llm_intent_category": "llm_intent_category",
    "llm_hallucination_detected": "llm_hallucination_detected",
    "llm_hallucination_details": "llm_hallucination_details",
    "llm_summary": "llm_summary",
    "llm_reviewed_at": ts("llm_reviewed_at"),
    "llm_judge_model": "llm_judge_model",
    "llm_judge_input_tokens": "llm_input_tokens",
    "llm_judge_output_tokens": "llm_output_tokens",
    # DuckDB's greatest() skips NULLs, so this is whichever of the two happened (last).
    "modified_at": ts("greatest(fb_submitted_at, llm_reviewed_at)"),
}

# DuckDB's to_json() writes a value as orjson does, but for the control characters of a string: it writes
# the hexadecimal digits of some in upper case (`\u001F` where orjson writes `\u001f`). So a row is
# rendered with to_json() (`ROW_JSON`), and a row whose text then holds a `\u00` escape anywhere (a
# control character in some string, or only a look-alike: either way rare) is rendered again
# (`NEEDS_EXACT`, `ROW_JSON_EXACT`) with each string escaped here, code point by code point, with
# orjson's own escapes. Two statements, not one CASE: DuckDB takes ~40 ms to bind the exact rendering,
# which a batch pays only when one of its rows needs it.
# orjson's escape of each control character, in code point order (a SQL list literal).
_CONTROL_ESCAPES = "[" + ", ".join("'" + orjson.dumps(chr(c)).decode()[1:-1] + "'" for c in range(32)) + "]"


def _escaped(text: str) -> str:
    """The JSON string of the VARCHAR `text`, escaped one code point at a time as orjson escapes it."""
    each = (
        "lambda c: CASE WHEN c = '\\' THEN '\\\\' WHEN c = '\"' THEN '\\\"'"
        f" WHEN ord(c) < 32 THEN {_CONTROL_ESCAPES}[ord(c) + 1] ELSE c END"
    )
    return f"concat('\"', array_to_string(list_transform(string_split({text}, ''), {each}), ''), '\"')"


def _fast_value(sql: str) -> str:
    return f"coalesce(CAST(to_json({sql}) AS VARCHAR), 'null')"


def json_value(sql: str) -> str:
    """The JSON text of the value of `sql` (a string, number, boolean, UUID or NULL) as orjson writes it,
    whatever the string. DuckDB folds `typeof()` when it binds the statement."""
    return (
        f"CASE WHEN {sql} IS NULL THEN 'null'"
        f" WHEN typeof({sql}) = 'VARCHAR' THEN {_escaped(f'CAST({sql} AS VARCHAR)')}"
        f" ELSE CAST(to_json({sql}) AS VARCHAR) END"
    )


def json_object(members: dict[str, str]) -> str:
    """The JSON object of `members` (name to the SQL of its JSON text), in order, as one VARCHAR. One
    concat() of every part: a chain of `||` copies the growing text once per part, ~25x slower here."""
    parts = []
    for i, (name, sql) in enumerate(members.items()):
        key = ("{" if i == 0 else ",") + orjson.dumps(name).decode() + ":"
        parts.append("'" + key.replace("'", "''") + "'")
        parts.append(sql)
    return "concat(" + ", ".join([*parts, "'}'"]) + ")"


def _row(value: Callable[[str], str]) -> str:
    """The row's object with each scalar field written by `value`."""
    feedback = json_object({name: value(sql) for name, sql in FEEDBACK_SQL.items()})
    members = {
        name: sql if name in JSON_FIELDS else f"CASE WHEN {HAS_FEEDBACK} THEN {feedback} ELSE 'null' END"
        if name == "feedback" else value(sql)
        for name, sql in INTERACTION_SQL.items()
    }  # fmt: skip
    return json_object(members)


# One turn's JSON object, as list, retrieve, by-session and by-user/{slug} serve it: exact unless the
# row's text holds `\u00` (NEEDS_EXACT, given the stored `body`), then ROW_JSON_EXACT is.
ROW_JSON = _row(_fast_value)
ROW_JSON_EXACT = _row(json_value)
NEEDS_EXACT = "contains(body, '\\u00')"
