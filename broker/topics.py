"""The event topic: its retention follows the read model's (docs/privacy.md).

The read model can always be rebuilt by folding the topic from offset 0, but only while the topic
still holds every event the read model keeps: `retention.ms` is the retention policy
(CHAT_ANALYTICS_RETENTION_DAYS) plus one day of margin, infinite for -1, and `retention.bytes` is
always infinite (a size limit would delete events of any age), and `cleanup.policy` is `delete` (compaction
would keep only the newest event of each key, a session's). Keeping more than that would keep
visitors' raw chat events in Kafka after the read model forgot them. Hence `ensure_topic` refuses an
existing topic whose retention differs from the policy (unless told to set it), and
`retention_warning` lets `serve`, `project` and `status` say so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import TopicAlreadyExistsError

from broker.clients import made
from broker.probe import port_open
from schemas.settings import KEEP_FOREVER

DEFAULT_PARTITIONS = 6
INFINITE = "-1"
RETENTION_KEYS = ("retention.ms", "retention.bytes", "cleanup.policy")
DAY_MS = 86_400_000
ADMIN_TIMEOUT_MS = 30_000
# How long an altered retention may take to show in the broker's own view of the topic (see ensure_topic).
APPLIED_TIMEOUT_S = 30.0


def retention_ms(retention_days: int) -> str:
    """The topic's retention.ms for a read-model retention of `retention_days`: one day of margin, so a
    rebuild still finds every event of the oldest day kept; -1 (infinite) to keep everything."""
    return INFINITE if retention_days == KEEP_FOREVER else str((retention_days + 1) * DAY_MS)


def topic_config(retention_days: int) -> dict[str, str]:
    return {"retention.ms": retention_ms(retention_days), "retention.bytes": INFINITE, "cleanup.policy": "delete"}


TOPIC_CONFIG = topic_config(KEEP_FOREVER)  # infinite: what tests use, and -1 asks for


def retention_problem(retention: dict[str, str], retention_days: int) -> tuple[str, str] | None:
    """("short" | "long", what is wrong) when the topic keeps less than the read model needs or more
    than the policy allows; None when it keeps exactly what the policy says."""
    wanted = retention_ms(retention_days)
    size, ms = retention.get("retention.bytes", INFINITE), retention.get("retention.ms", INFINITE)
    policy = "keep everything" if retention_days == KEEP_FOREVER else f"{retention_days} days"
    cleanup = retention.get("cleanup.policy", "delete")
    if "compact" in cleanup:
        return "short", (
            f"cleanup.policy={cleanup}: Kafka keeps only the newest event of each key (a session's), not every "
            "event the read model keeps (cleanup.policy=delete)"
        )
    if size != INFINITE or (ms != INFINITE and (wanted == INFINITE or int(ms) < int(wanted))):
        finite_keys = finite(retention)
        return "short", (
            f"finite retention ({_describe(finite_keys)}), less than the read model needs "
            f"(CHAT_ANALYTICS_RETENTION_DAYS: {policy}, retention.ms={wanted}, retention.bytes=-1)"
        )
    if ms != wanted:
        return "long", (
            f"retention.ms={ms}, longer than CHAT_ANALYTICS_RETENTION_DAYS ({policy}) allows (retention.ms={wanted}):"
            " visitors' raw chat events stay in Kafka after the read model has forgotten them"
        )
    return None


class FiniteRetentionError(Exception):
    """The topic exists with another retention than the policy's (too short or too long)."""

    def __init__(self, topic: str, retention: dict[str, str], problem: tuple[str, str]) -> None:
        self.topic = topic
        self.retention = retention
        self.kind = problem[0]
        consequence = (
            "Kafka will delete events the read model keeps, and a rebuild of the read model from the topic "
            "would silently lose them."
            if self.kind == "short"
            else "The topic keeps raw events the read model is meant to forget."
        )
        super().__init__(
            f"topic {topic!r} exists with {problem[1]}. {consequence} "
            "Re-run with --update (or --force) to set the policy's retention on it."
        )


RetentionMismatch = FiniteRetentionError


@dataclass(frozen=True)
class TopicResult:
    topic: str
    partitions: int
    created: bool  # False: it existed already
    retention_fixed: bool = False  # True: --update set the policy's retention on an existing topic
    retention: dict[str, str] | None = None  # as the topic has it now


def _describe(retention: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in retention.items())


def _admin(bootstrap_servers: str, timeout_ms: int = ADMIN_TIMEOUT_MS) -> KafkaAdminClient:
    return made(
        KafkaAdminClient,
        bootstrap_servers=bootstrap_servers,
        client_id="chat-analytics-topic",
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )


def topic_retention(admin: KafkaAdminClient, topic: str) -> dict[str, str]:
    """The effective retention settings of the topic (its own, or inherited from the broker)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, list(RETENTION_KEYS))
    described = admin.describe_configs([resource], config_filter="all")
    configs = described.get("topic", {}).get(topic, {})
    return {key: str(configs[key]["value"]) for key in RETENTION_KEYS if key in configs}


def finite(retention: dict[str, str]) -> dict[str, str]:
    """The time and size limits that would delete events (any value but -1)."""
    return {
        key: value for key in ("retention.ms", "retention.bytes") if (value := retention.get(key, INFINITE)) != INFINITE
    }


def partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    for described in admin.describe_topics([topic]):
        if described.get("name") == topic and described.get("error_code", 0) == 0:
            return len(described.get("partitions") or [])
    return None


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int = DEFAULT_PARTITIONS,
    *,
    retention_days: int = KEEP_FOREVER,
    force: bool = False,
) -> TopicResult:
    """Create `topic` with the retention of `retention_days` (see `topic_config`); accept it if it
    exists with that retention.

    An existing topic with another retention raises `FiniteRetentionError`, unless `force` (the
    command's --update), which sets the policy's. An existing topic keeps its partition count:
    changing it would move keys to other partitions and break the per-session order.
    """
    config = topic_config(retention_days)
    admin = _admin(bootstrap_servers)
    try:
        try:
            admin.create_topics(
                {topic: {"num_partitions": partitions, "configs": dict(config)}},
                wait_for_metadata=True,
            )
            return TopicResult(topic, partitions, created=True, retention=dict(config))
        except TopicAlreadyExistsError:
            pass
        existing = partition_count(admin, topic) or 0
        retention = topic_retention(admin, topic)
        problem = retention_problem(retention, retention_days)
        if problem is None:
            return TopicResult(topic, existing, created=False, retention=retention)
        if not force:
            raise FiniteRetentionError(topic, retention, problem)
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, dict(config))
        admin.alter_configs([resource])
        # The controller answers once it has committed the change; the broker that describes the topic
        # applies it when it replays the metadata log, a moment later: a describe right after the answer
        # can still give the old value. So the new value is waited for, not read once.
        deadline = time.monotonic() + APPLIED_TIMEOUT_S
        retention = topic_retention(admin, topic)
        while retention_problem(retention, retention_days) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not set {_describe(config)} on {topic!r}: it has {_describe(retention)}")
            time.sleep(0.05)
            retention = topic_retention(admin, topic)
        return TopicResult(topic, existing, created=False, retention_fixed=True, retention=retention)
    finally:
        admin.close()


def describe_retention(bootstrap: str, topic: str, retention_days: int) -> dict[str, object]:
    """What `status` shows: the topic's retention, the policy's, and the warning if they differ."""
    wanted = topic_config(retention_days)
    doc: dict[str, object] = {"policy_days": retention_days, "wanted": wanted, "topic": None, "warning": None}
    if not port_open(bootstrap.split(",")[0]):
        doc["warning"] = f"could not check the retention of topic {topic!r}: no Kafka broker answers at {bootstrap}"
        return doc
    try:
        admin = _admin(bootstrap, timeout_ms=10_000)
    except Exception as exc:
        doc["warning"] = f"could not check the retention of topic {topic!r} at {bootstrap}: {exc}"
        return doc
    try:
        if partition_count(admin, topic) is None:
            doc["warning"] = f"topic {topic!r} does not exist"
            return doc
        retention = topic_retention(admin, topic)
        doc["topic"] = retention
        problem = retention_problem(retention, retention_days)
        if problem is not None:
            doc["warning"] = f"topic {topic!r} has {problem[1]}; set it with `chat-analytics topic create --update`"
        return doc
    except Exception as exc:
        doc["warning"] = f"could not check the retention of topic {topic!r} at {bootstrap}: {exc}"
        return doc
    finally:
        admin.close()


def retention_warning(bootstrap: str, topic: str, retention_days: int = KEEP_FOREVER) -> str | None:
    """A warning for the start-up log of `serve` and `project`, or None when the topic keeps what the
    retention policy says (every event for -1).

    Never raises: a broker that cannot be asked is reported as a warning, since the caller's own
    connection handling decides whether that is fatal.
    """
    if not port_open(bootstrap.split(",")[0]):
        return f"could not check the retention of topic {topic!r}: no Kafka broker answers at {bootstrap}"
    try:
        admin = _admin(bootstrap, timeout_ms=10_000)
    except Exception as exc:
        return f"could not check the retention of topic {topic!r} at {bootstrap}: {exc}"
    try:
        if partition_count(admin, topic) is None:
            return (
                f"topic {topic!r} does not exist yet; if the broker auto-creates it, it gets the broker's default "
                "retention, which may delete events. Create it with `chat-analytics topic create`."
            )
        problem = retention_problem(topic_retention(admin, topic), retention_days)
        if problem is None:
            return None
        if problem[0] == "short":
            return (
                f"topic {topic!r} has {problem[1]}: Kafka will delete events the read model keeps and a rebuild "
                "of the read model would lose them. Fix it with `chat-analytics topic create --force`."
            )
        return f"topic {topic!r} has {problem[1]}. Set it with `chat-analytics topic create --update`."
    except Exception as exc:
        return f"could not check the retention of topic {topic!r} at {bootstrap}: {exc}"
    finally:
        admin.close()
