"""The response bodies, as Pydantic models: the one description of what every endpoint returns.

The OpenAPI document (`api.openapi`) is assembled from these classes' JSON Schemas, and the queries
(`api.interactions_sql`, `api.aggregates_sql`) select exactly these fields (checked at import), so the
schema, the SQL and the bodies cannot drift apart. Bodies are not built through Pydantic on the hot
path: rows are serialised once with orjson.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, RootModel

from schemas.events import ActionTaken, FeedbackCategory, Severity

# Exactly `2026-11-26T09:15:02.123456Z`: always six fraction digits and `Z` (the SQL formats it so).
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"
UtcTimestamp = Annotated[str, Field(pattern=TIMESTAMP_PATTERN, json_schema_extra={"format": "date-time"})]
IsoDate = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", json_schema_extra={"format": "date"})]
Count = Annotated[int, Field(ge=0)]


class _Body(BaseModel):
    # `additionalProperties: false` in the schema: a response with a field not described here is a bug.
    model_config = ConfigDict(extra="forbid")


class Feedback(_Body):
    """The visitor's current feedback and the LLM judge's current review of one interaction."""

    interaction_uuid: UUID
    score: Literal[1, -1] | None = Field(description="the visitor's score; null when there is only a review")
    category: FeedbackCategory | Literal[""] = Field(description='set with a -1 score; "" otherwise (never null)')
    comment: str
    submitted_from_ip: str | None
    submitted_at: UtcTimestamp | None
    llm_resolution_score: Annotated[int, Field(ge=1, le=5)] | None
    llm_intent_category: str = Field(description='"" when not reviewed')
    llm_hallucination_detected: bool = Field(description="false when not reviewed")
    llm_hallucination_details: str
    llm_summary: str
    llm_reviewed_at: UtcTimestamp | None
    llm_judge_model: str
    llm_judge_input_tokens: Count
    llm_judge_output_tokens: Count
    modified_at: UtcTimestamp = Field(description="the later of submitted_at and llm_reviewed_at")


class Interaction(_Body):
    """One anonymous chat turn."""

    uuid: UUID
    user_slug: str
    user_input: str
    assistant_blocks: list[Any]
    offering_uuids: list[UUID]
    result_count: Count
    is_flagged: bool
    severity: Severity
    injection_categories: list[str]
    pii_categories: list[str]
    action_taken: ActionTaken
    warning: str
    ip_address: str | None = Field(description="An IPv4 or IPv6 address.")
    session_id: str
    last_active_at: UtcTimestamp
    created: UtcTimestamp
    feedback: Feedback | None = Field(description="null when there is neither human feedback nor an LLM review")
    click_count: Count = Field(description="clicks on the offerings of this turn; repeat clicks count")
    input_tokens: Count
    output_tokens: Count


class Conversation(_Body):
    """One conversation (session), built from its turns that pass the turn-level filters."""

    session_id: str
    user_slug: str = Field(description='the greatest user_slug of its turns (a non-empty one wins over "")')
    message_count: Count
    is_flagged: bool = Field(description="some turn is flagged")
    max_severity: Severity = Field(description="the label of max_severity_rank")
    max_severity_rank: Annotated[int, Field(ge=0, le=4)] = Field(
        description="the highest severity of its turns: none 0, low 1, medium 2, high 3, critical 4"
    )
    has_feedback: bool = Field(description="some turn has a human score (a review alone does not count)")
    offerings_shown: Count = Field(description="result_count summed over its turns")
    offerings_clicked: Count = Field(description="clicks on its turns' offerings; repeat clicks count")
    models_used: str = Field(description='its turns\' distinct non-empty chat models, ascending, joined by ", "')
    is_reviewed: bool = Field(description="some turn has an LLM review")
    input_tokens: Count
    output_tokens: Count
    total_tokens: Count = Field(description="input_tokens + output_tokens (judge tokens excluded)")
    started: UtcTimestamp = Field(description="created of its first turn")
    last_active: UtcTimestamp = Field(description="created of its last turn")


class UserAggregate(_Body):
    """One pseudonymous user's counters over the filtered turns."""

    user_slug: str
    last_seen: UtcTimestamp
    total_interactions: Count
    session_count: Count
    positive_feedback: Count
    negative_feedback: Count
    no_feedback: Count
    injection_strikes: Count = Field(description="turns whose action_taken is block or redact")


class DailyVolume(_Body):
    date: IsoDate
    count: Count


class SeveritySeries(_Body):
    NONE: list[Count]
    LOW: list[Count]
    MEDIUM: list[Count]
    HIGH: list[Count]
    CRITICAL: list[Count]


class SeverityByDay(_Body):
    labels: list[IsoDate] = Field(description="14 UTC dates, oldest first, ending today")
    series: SeveritySeries


class Kpi(_Body):
    """Counters and rates over the filtered turns. Rates are plain floats, null when undefined."""

    interactions_total: Count
    sessions_total: Count
    unique_users: Count = Field(description="distinct non-empty user_slug values")
    flagged_total: Count
    feedback_positive: Count
    feedback_negative: Count
    satisfaction_rate: float | None = Field(description="positive / (positive + negative); null when no feedback")
    clicks_total: Count
    click_through_rate: float | None = Field(description="clicks_total / interactions_total; null when no turns")
    avg_llm_resolution_score: float | None = Field(description="mean resolution score of reviewed turns")
    llm_intent_distribution: dict[str, Count] = Field(description="reviewed turns by non-empty intent category")
    hallucination_rate: float | None = Field(
        description="sessions with a reviewed turn whose review found a hallucination / reviewed_total"
    )
    review_coverage: float | None = Field(description="sessions with a reviewed turn / sessions_total")
    daily_volume: list[DailyVolume] = Field(description="turns per UTC day, window_days days ending today")
    clarification_requests_total: Count = Field(
        description='turns where the assistant asked instead of recommending: a block with "type": "ask_user" or '
        '"key": "ask_user_form", or a tool block calling `ask_user` or returning an `ask_user_form`'
    )
    clarification_rate: float | None
    input_tokens_total: Count
    output_tokens_total: Count
    reviewed_total: Count = Field(description="sessions with a reviewed turn")
    review_input_tokens_total: Count
    review_output_tokens_total: Count
    severity_by_day: SeverityByDay


class Budget(_Body):
    """Today's global token budget (UTC day of the server clock)."""

    tokens_today: Count = Field(description="turn and usage tokens that occurred today; judge tokens excluded")
    tokens_limit: Count = Field(description="the configured daily budget; 0 means unlimited")
    resets_at: UtcTimestamp = Field(description="the next 00:00 UTC")
    requests_today: Count = Field(description="turns plus usage events that occurred today")


class Detail(_Body):
    detail: str


class ParameterErrors(RootModel[dict[str, list[str]]]):
    """400: one key per bad query parameter, each with its messages."""


class Health(_Body):
    status: Literal["ok", "failed"]
    detail: str | None = Field(default=None, description="present when the process can no longer serve")


class PartitionLag(_Body):
    partition: int
    end_offset: int | None
    position: int | None
    lag: int | None


class Freshness(_Body):
    lag: Count = Field(description="records between the folded position and the topic's end, as last known")
    max_lag: int | None = Field(description="the lag above which /readyz answers 503 (None: no limit)")
    lag_s: float | None = Field(
        description="seconds the file has lacked records the projector knew of: it holds every record the "
        "topic had that long ago (0: all it knows of; None: no projector in this process)",
    )
    stale_after_s: float | None = Field(
        description="the lag_s above which the answers are stale (None: lag_s never makes them)"
    )
    last_batch_at: str | None = Field(description="when the projector last committed a batch")
    newest_event_at: str | None = Field(description="Kafka timestamp of the newest record folded since start-up")
    newest_event_age_s: float | None
    projector: str = Field(
        description="ok, or what keeps the projector from folding: broker_unreachable, database_write_failed, "
        "database_invalidated, projector_failed, not_running"
    )
    stale: bool = Field(
        description="the answers miss more than live ingest's moment of lag: the projector is not folding, "
        "has not caught up since start-up, is over max_lag, or lag_s is over stale_after_s"
    )


class Readiness(_Body):
    ready: bool = Field(
        description="serving: the file answers queries, the projector caught up once since start-up, "
        "and its lag is within max_lag"
    )
    serving: bool = Field(description="the read model answers queries (false: 503 on the data endpoints)")
    caught_up: bool
    partitions: list[PartitionLag]
    pending_events: Count
    error: str | None = Field(description="what failed, as a word (details in the server log and admin status)")
    freshness: Freshness
    serving_previous_file: bool | None = Field(
        default=None, description="present while a start-up rebuild runs and the previous file is served"
    )
    rebuild: dict[str, Any] | None = Field(
        default=None, description="present while a rebuild runs or after one: state, phase, events done and due"
    )


def field_names(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(model.model_fields)
