"""The event topic: created with infinite retention, because it is the source of truth.

The read model can always be rebuilt by folding the topic from offset 0, but only while the topic
still holds every event: a finite `retention.ms` or `retention.bytes` makes Kafka delete old
segments, and a rebuild after that silently loses them. Hence `ensure_topic` refuses to accept an
existing topic with finite retention (unless told to fix it), and `retention_warning` lets `serve`
and `project` say so at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import TopicAlreadyExistsError

from broker.probe import port_open

DEFAULT_PARTITIONS = 6
INFINITE = "-1"
RETENTION_KEYS = ("retention.ms", "retention.bytes")
TOPIC_CONFIG = {key: INFINITE for key in RETENTION_KEYS}
ADMIN_TIMEOUT_MS = 30_000


class FiniteRetentionError(Exception):
    """The topic exists and Kafka would delete some of its events."""

    def __init__(self, topic: str, retention: dict[str, str]) -> None:
        self.topic = topic
        self.retention = retention
        super().__init__(
            f"topic {topic!r} exists with finite retention ({_describe(retention)}): Kafka will delete older "
            "events, and a rebuild of the read model from the topic would silently lose them. "
            "Re-run with --force to set retention.ms=-1 and retention.bytes=-1 on it."
        )


@dataclass(frozen=True)
class TopicResult:
    topic: str
    partitions: int
    created: bool  # False: it existed already
    retention_fixed: bool = False  # True: --force switched an existing topic to infinite retention


def _describe(retention: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in retention.items())


def _admin(bootstrap_servers: str, timeout_ms: int = ADMIN_TIMEOUT_MS) -> KafkaAdminClient:
    return KafkaAdminClient(
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
    """The retention settings that would delete events (any value but -1)."""
    return {key: value for key, value in retention.items() if value != INFINITE}


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
    force: bool = False,
) -> TopicResult:
    """Create `topic` with infinite retention; accept it if it exists with infinite retention.

    An existing topic with finite retention raises `FiniteRetentionError`, unless `force`, which
    switches it to infinite retention. An existing topic keeps its partition count: changing it
    would move keys to other partitions and break the per-session order.
    """
    admin = _admin(bootstrap_servers)
    try:
        try:
            admin.create_topics(
                {topic: {"num_partitions": partitions, "configs": dict(TOPIC_CONFIG)}},
                wait_for_metadata=True,
            )
            return TopicResult(topic, partitions, created=True)
        except TopicAlreadyExistsError:
            pass
        existing = partition_count(admin, topic) or 0
        too_short = finite(topic_retention(admin, topic))
        if not too_short:
            return TopicResult(topic, existing, created=False)
        if not force:
            raise FiniteRetentionError(topic, too_short)
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, dict(TOPIC_CONFIG))
        admin.alter_configs([resource])
        remaining = finite(topic_retention(admin, topic))
        if remaining:
            raise RuntimeError(f"could not set infinite retention on {topic!r}: still {_describe(remaining)}")
        return TopicResult(topic, existing, created=False, retention_fixed=True)
    finally:
        admin.close()


def retention_warning(bootstrap: str, topic: str) -> str | None:
    """A warning for the start-up log of `serve` and `project`, or None when the topic keeps every event.

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
        too_short = finite(topic_retention(admin, topic))
        if too_short:
            return (
                f"topic {topic!r} has finite retention ({_describe(too_short)}): Kafka will delete older events "
                "and a rebuild of the read model would lose them. Fix it with `chat-analytics topic create --force`."
            )
        return None
    except Exception as exc:
        return f"could not check the retention of topic {topic!r} at {bootstrap}: {exc}"
    finally:
        admin.close()
