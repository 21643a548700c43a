"""How a conversation row is computed from its turns: the SQL shared by the projector, which keeps the
`conversations` table (every session over all its turns), and the API, which groups filtered turns the
same way (`api.conversations_sql`). One definition, so both give the same row, byte for byte.

Every expression reads `interactions` grouped by `session_id`; sums of BIGINTs are HUGEINTs (no
overflow); models are in code-point order (DuckDB compares strings bytewise).
"""

from __future__ import annotations

SEVERITY_RANK = (
    "CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END"
)
RANKS = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_SEVERITY_LABEL = (
    "CASE max_severity_rank WHEN 4 THEN 'critical' WHEN 3 THEN 'high' WHEN 2 THEN 'medium' WHEN 1 THEN 'low'"
    " ELSE 'none' END"
)
_INPUT, _OUTPUT = "sum(input_tokens)", "sum(output_tokens)"

# The grouped columns, by name, over a group of turns.
GROUPED: dict[str, str] = {
    "session_id": "session_id",
    "user_slug": "max(user_slug)",
    "message_count": "count(*)",
    "is_flagged": "bool_or(is_flagged)",
    "max_severity_rank": f"max({SEVERITY_RANK})",
    "has_feedback": "count(fb_score) > 0",
    "offerings_shown": "coalesce(sum(result_count), 0)",
    "offerings_clicked": "coalesce(sum(click_count), 0)",
    "models_used": "coalesce(string_agg(DISTINCT model, ', ' ORDER BY model) FILTER (WHERE model <> ''), '')",
    "is_reviewed": "count(llm_reviewed_at) > 0",
    "input_tokens": _INPUT,
    "output_tokens": _OUTPUT,
    "total_tokens": f"{_INPUT} + {_OUTPUT}",
    "started": "min(created)",
    "last_active": "max(created)",
}

# Each response field, in the served order, from the grouped columns.
FIELDS: dict[str, str] = {
    "session_id": "session_id",
    "user_slug": "user_slug",
    "message_count": "message_count",
    "is_flagged": "is_flagged",
    "max_severity": _SEVERITY_LABEL,
    "max_severity_rank": "max_severity_rank",
    "has_feedback": "has_feedback",
    "offerings_shown": "offerings_shown",
    "offerings_clicked": "offerings_clicked",
    "models_used": "models_used",
    "is_reviewed": "is_reviewed",
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "total_tokens": "total_tokens",
    "started": "strftime(started, '%Y-%m-%dT%H:%M:%S.%fZ')",
    "last_active": "strftime(last_active, '%Y-%m-%dT%H:%M:%S.%fZ')",
}

# One row's JSON object, rendered by DuckDB over the grouped columns.
ROW_JSON = "json_object(" + ", ".join(f"'{name}', {sql}" for name, sql in FIELDS.items()) + ")::VARCHAR"


def grouped(condition: str, having: str = "TRUE") -> str:
    """The grouped rows of the turns passing `condition`, kept when they pass `having`."""
    columns = ", ".join(f"{sql} AS {name}" for name, sql in GROUPED.items())
    return f"SELECT {columns} FROM interactions WHERE {condition} GROUP BY session_id HAVING {having}"


# The kept table's row of each session in `?` (a list of session ids), from all its turns.
REFRESH = f"""
INSERT INTO conversations
SELECT session_id, started, last_active, message_count, max_severity_rank, is_reviewed, input_tokens,
       output_tokens, total_tokens, offerings_shown, {ROW_JSON} AS body
FROM ({grouped("session_id IN (SELECT unnest(?::VARCHAR[]))")})
"""
