"""`chat-analytics topic create` and `retention_warning` against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, OffsetSpec

from broker.topics import partition_count, retention_warning, topic_retention
from loopback.ports import refusing_port
from tests.support import REPO


def topic_create(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "topic", "create", *args],
        env={**os.environ, **(extra_env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def own_retention(admin: KafkaAdminClient, topic: str) -> dict[str, tuple[str, str]]:
    """(value, where it comes from) per retention key; DYNAMIC_TOPIC_CONFIG means set on the topic itself."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["retention.ms", "retention.bytes"])
    configs = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    return {key: (entry["value"], entry["config_source"]) for key, entry in configs.items()}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_creates_the_topic_with_infinite_retention_of_its_own_and_is_idempotent(
    bootstrap_servers: str, kafka_admin: KafkaAdminClient
) -> None:
    name = unique("events")
    first = topic_create("--bootstrap-servers", bootstrap_servers, "--topic", name, "--partitions", "4")
    assert first.returncode == 0, first.stderr
    assert partition_count(kafka_admin, name) == 4
    # Set on the topic, not inherited: it must hold on a broker whose default retention is 7 days.
    assert own_retention(kafka_admin, name) == {
        "retention.ms": ("-1", "DYNAMIC_TOPIC_CONFIG"),
        "retention.bytes": ("-1", "DYNAMIC_TOPIC_CONFIG"),
    }

    second = topic_create("--bootstrap-servers", bootstrap_servers, "--topic", name, "--partitions", "8")
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout
    assert partition_count(kafka_admin, name) == 4, "an existing topic keeps its partitions"


def test_defaults_come_from_the_environment_and_give_six_partitions(
    bootstrap_servers: str, kafka_admin: KafkaAdminClient
) -> None:
    name = unique("chat.events")
    result = topic_create(
        extra_env={"CHAT_ANALYTICS_BOOTSTRAP_SERVERS": bootstrap_servers, "CHAT_ANALYTICS_TOPIC": name}
    )
    assert result.returncode == 0, result.stderr
    assert partition_count(kafka_admin, name) == 6


@pytest.mark.parametrize(
    ("key", "value"),
    [("retention.ms", "604800000"), ("retention.bytes", "1073741824"), ("cleanup.policy", "compact")],
)
def test_refuses_a_topic_with_finite_retention_unless_forced(
    bootstrap_servers: str, kafka_admin: KafkaAdminClient, key: str, value: str
) -> None:
    name = unique("finite")
    kafka_admin.create_topics({name: {"num_partitions": 2, "configs": {key: value}}}, wait_for_metadata=True)

    refused = topic_create("--bootstrap-servers", bootstrap_servers, "--topic", name)
    assert refused.returncode == 2
    assert f"{key}={value}" in refused.stderr
    assert "rebuild" in refused.stderr and "--force" in refused.stderr
    assert topic_retention(kafka_admin, name)[key] == value, "a refusal changes nothing"
    assert retention_warning(bootstrap_servers, name) is not None

    forced = topic_create("--bootstrap-servers", bootstrap_servers, "--topic", name, "--force")
    assert forced.returncode == 0, forced.stderr
    assert {k: v for k, (v, _source) in own_retention(kafka_admin, name).items()} == {
        "retention.ms": "-1",
        "retention.bytes": "-1",
    }
    assert topic_retention(kafka_admin, name)["cleanup.policy"] == "delete"  # compaction would keep one per key
    assert partition_count(kafka_admin, name) == 2
    assert retention_warning(bootstrap_servers, name) is None


def test_retention_warning_names_the_problem(bootstrap_servers: str, kafka_admin: KafkaAdminClient) -> None:
    good = unique("good")
    assert topic_create("--bootstrap-servers", bootstrap_servers, "--topic", good).returncode == 0
    assert retention_warning(bootstrap_servers, good) is None

    short = unique("short")
    kafka_admin.create_topics(
        {short: {"num_partitions": 1, "configs": {"retention.ms": "3600000"}}}, wait_for_metadata=True
    )
    warning = retention_warning(bootstrap_servers, short)
    assert warning is not None and short in warning and "retention.ms=3600000" in warning

    missing = unique("missing")
    warning = retention_warning(bootstrap_servers, missing)
    assert warning is not None and "does not exist" in warning
    assert missing not in kafka_admin.list_topics(), "checking must not auto-create the topic"

    with refusing_port() as port:
        nobody = f"127.0.0.1:{port}"
        warning = retention_warning(nobody, good)
    assert warning is not None and nobody in warning


def test_without_any_broker_topic_create_says_so(tmp_path: Path) -> None:
    environment = {"CHAT_ANALYTICS_HOME": str(tmp_path), "CHAT_ANALYTICS_BOOTSTRAP_SERVERS": ""}
    result = topic_create(extra_env=environment)
    assert result.returncode == 1
    assert "broker start" in result.stderr


@pytest.mark.partitions(1)
def test_the_partitions_marker_shapes_the_topic_fixture(topic: str, kafka_admin: KafkaAdminClient) -> None:
    assert partition_count(kafka_admin, topic) == 1


def test_make_topic_gives_fresh_distinct_topics(make_topic: Callable[..., str], kafka_admin: KafkaAdminClient) -> None:
    first, second = make_topic(partitions=2), make_topic()
    assert first != second
    assert (partition_count(kafka_admin, first), partition_count(kafka_admin, second)) == (2, 3)
    for name in (first, second):
        offsets = kafka_admin.list_partition_offsets({TopicPartition(name, p): OffsetSpec.LATEST for p in range(2)})
        assert all(info.offset == 0 for info in offsets.values()), "a fresh topic is empty"
