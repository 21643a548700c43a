"""Every environment variable the service reads, with its default, in one place.

A command-line flag of the same meaning defaults to the variable named here. docs/operations.md
lists every variable with its default, and every flag of every command; tests/ops/test_docs.py fails
when a variable, a default or a flag is missing there, so the documentation cannot drift from this
module.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

N = TypeVar("N", int, float)

ENV_BOOTSTRAP_SERVERS = "CHAT_ANALYTICS_BOOTSTRAP_SERVERS"
ENV_TOPIC = "CHAT_ANALYTICS_TOPIC"
ENV_DB = "CHAT_ANALYTICS_DB"
ENV_GROUP_ID = "CHAT_ANALYTICS_GROUP_ID"
ENV_BATCH_SIZE = "CHAT_ANALYTICS_BATCH_SIZE"
ENV_API_TOKENS = "CHAT_ANALYTICS_API_TOKENS"
ENV_TOKENS_FILE = "CHAT_ANALYTICS_TOKENS_FILE"
ENV_DAILY_TOKEN_BUDGET = "CHAT_ANALYTICS_DAILY_TOKEN_BUDGET"
ENV_USER_SLUG_SALT = "CHAT_ANALYTICS_USER_SLUG_SALT"
ENV_HOME = "CHAT_ANALYTICS_HOME"
# Privacy (docs/privacy.md): how long chat data is kept, and whether visitors' IP addresses are.
ENV_RETENTION_DAYS = "CHAT_ANALYTICS_RETENTION_DAYS"
ENV_IP_POLICY = "CHAT_ANALYTICS_IP_POLICY"
ENV_MIN_POSITION_WAIT_MS = "CHAT_ANALYTICS_MIN_POSITION_WAIT_MS"
# For commands that talk to a running `serve` (rebuild --live, status --url, dead-letters --url).
ENV_URL = "CHAT_ANALYTICS_URL"
ENV_ADMIN_TOKEN = "CHAT_ANALYTICS_ADMIN_TOKEN"
# Fault tolerance of `serve` (docs/operations-failures.md).
ENV_INGEST_MAX_EVENTS = "CHAT_ANALYTICS_INGEST_MAX_EVENTS"
ENV_INGEST_RATE = "CHAT_ANALYTICS_INGEST_RATE"
ENV_READY_MAX_LAG = "CHAT_ANALYTICS_READY_MAX_LAG"
ENV_STALE_AFTER_S = "CHAT_ANALYTICS_STALE_AFTER_S"
ENV_DISK_WARN_BYTES = "CHAT_ANALYTICS_DISK_WARN_BYTES"
ENV_CHECKPOINT_THRESHOLD = "CHAT_ANALYTICS_CHECKPOINT_THRESHOLD"
# Logs of every command (docs/operations.md, "Logs").
ENV_LOG_LEVEL = "CHAT_ANALYTICS_LOG_LEVEL"
ENV_LOG_FORMAT = "CHAT_ANALYTICS_LOG_FORMAT"
ENV_KAFKA_LOG_LEVEL = "CHAT_ANALYTICS_KAFKA_LOG_LEVEL"

DEFAULT_TOPIC = "chat.events"
DEFAULT_DB = "./data/chat-analytics.duckdb"
DEFAULT_GROUP_ID = "chat-analytics-projector"
DEFAULT_BATCH_SIZE = 5000
DEFAULT_TOKENS_FILE = "./data/tokens.json"
DEFAULT_DAILY_TOKEN_BUDGET = 5_000_000
DEFAULT_HOME = "./.cache/chat-analytics"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_INGEST_MAX_EVENTS = 500
DEFAULT_INGEST_RATE = 1000.0  # events per second per token (a burst of one full request is always allowed)
DEFAULT_READY_MAX_LAG = 100_000  # records behind the topic's end above which /readyz answers 503
# Seconds the file may lack records the projector knew of before /readyz calls its answers stale. Live
# ingest keeps a lag of a batch or two (LIVE_BATCH_INTERVAL_S apart) all the time; that is not stale.
DEFAULT_STALE_AFTER_S = 30.0
DEFAULT_DISK_WARN_BYTES = 1024**3
DEFAULT_CHECKPOINT_THRESHOLD = "256MiB"
DEFAULT_LOG_LEVEL = "INFO"
LOG_FORMATS = ("text", "json")
DEFAULT_LOG_FORMAT = "text"
# kafka-python logs every connection it opens and closes at INFO: noise, unless one is debugging Kafka.
DEFAULT_KAFKA_LOG_LEVEL = "WARNING"
DEFAULT_RETENTION_DAYS = 90  # the reference's AI_ASSISTANT_SESSION_RETENTION_DAYS
KEEP_FOREVER = -1
IP_POLICIES = ("keep", "drop")
DEFAULT_IP_POLICY = "keep"
# How long a request with a `min_position` this replica has not reached waits for it before a 503.
DEFAULT_MIN_POSITION_WAIT_MS = 3000


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_number(name: str, default: N, parse: Callable[[str], N], kind: str) -> N:
    """The variable parsed, or `default` when unset; a ValueError naming the variable otherwise."""
    text = env(name)
    if text is None:
        return default
    try:
        return parse(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be {kind}, not {text!r}") from None


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def parse_retention_days(text: str) -> int:
    """Whole days, at least 0, or -1 (keep everything); raises ValueError otherwise."""
    try:
        days = int(text)
    except ValueError:
        raise ValueError(f"{ENV_RETENTION_DAYS} must be a whole number of days or -1, not {text!r}") from None
    if days < KEEP_FOREVER:
        raise ValueError(f"{ENV_RETENTION_DAYS} must be at least 0, or -1 to keep everything (got {days})")
    return days


def retention_days() -> int:
    return parse_retention_days(env(ENV_RETENTION_DAYS, str(DEFAULT_RETENTION_DAYS)) or "")


def ip_policy() -> str:
    value = (env(ENV_IP_POLICY, DEFAULT_IP_POLICY) or DEFAULT_IP_POLICY).strip().lower()
    if value not in IP_POLICIES:
        raise ValueError(f"{ENV_IP_POLICY} must be one of {', '.join(IP_POLICIES)}, not {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str | None
    topic: str
    db: str
    group_id: str
    batch_size: int
    api_tokens: str
    tokens_file: str
    daily_token_budget: int
    user_slug_salt: str
    home: str
    ingest_max_events: int = DEFAULT_INGEST_MAX_EVENTS
    ingest_rate: float = DEFAULT_INGEST_RATE
    ready_max_lag: int = DEFAULT_READY_MAX_LAG
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    disk_warn_bytes: int = DEFAULT_DISK_WARN_BYTES
    checkpoint_threshold: str = DEFAULT_CHECKPOINT_THRESHOLD
    retention_days: int = DEFAULT_RETENTION_DAYS
    ip_policy: str = DEFAULT_IP_POLICY
    min_position_wait_ms: int = DEFAULT_MIN_POSITION_WAIT_MS

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            bootstrap_servers=env(ENV_BOOTSTRAP_SERVERS),
            topic=env(ENV_TOPIC, DEFAULT_TOPIC) or DEFAULT_TOPIC,
            db=env(ENV_DB, DEFAULT_DB) or DEFAULT_DB,
            group_id=env(ENV_GROUP_ID, DEFAULT_GROUP_ID) or DEFAULT_GROUP_ID,
            batch_size=env_int(ENV_BATCH_SIZE, DEFAULT_BATCH_SIZE),
            api_tokens=env(ENV_API_TOKENS, "") or "",
            tokens_file=env(ENV_TOKENS_FILE, DEFAULT_TOKENS_FILE) or DEFAULT_TOKENS_FILE,
            daily_token_budget=env_int(ENV_DAILY_TOKEN_BUDGET, DEFAULT_DAILY_TOKEN_BUDGET),
            # An empty salt is meaningful (slugs become ""), so it is read as given.
            user_slug_salt=os.environ.get(ENV_USER_SLUG_SALT, ""),
            home=env(ENV_HOME, DEFAULT_HOME) or DEFAULT_HOME,
            ingest_max_events=env_int(ENV_INGEST_MAX_EVENTS, DEFAULT_INGEST_MAX_EVENTS),
            ingest_rate=env_float(ENV_INGEST_RATE, DEFAULT_INGEST_RATE),
            ready_max_lag=env_int(ENV_READY_MAX_LAG, DEFAULT_READY_MAX_LAG),
            stale_after_s=env_float(ENV_STALE_AFTER_S, DEFAULT_STALE_AFTER_S),
            disk_warn_bytes=env_int(ENV_DISK_WARN_BYTES, DEFAULT_DISK_WARN_BYTES),
            checkpoint_threshold=env(ENV_CHECKPOINT_THRESHOLD) or DEFAULT_CHECKPOINT_THRESHOLD,
            retention_days=retention_days(),
            ip_policy=ip_policy(),
            min_position_wait_ms=env_int(ENV_MIN_POSITION_WAIT_MS, DEFAULT_MIN_POSITION_WAIT_MS),
        )
