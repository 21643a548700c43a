"""docker-compose.yml and the Dockerfile hold together, checked without a Docker engine."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from broker.container import kafka_env
from broker.local import BROKER_SETTINGS
from tests.support import REPO


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose["services"]


def listener_ports(listeners: str) -> dict[str, int]:
    return {
        name: int(address.rsplit(":", 1)[1]) for name, _, address in (x.partition("://") for x in listeners.split(","))
    }


def test_kafka_is_a_kraft_apache_kafka_4_with_a_healthcheck(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["CLUSTER_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listener_ports(env["KAFKA_LISTENERS"])
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith(f":{listener_ports(env['KAFKA_LISTENERS'])[controller]}")
    healthcheck = kafka["healthcheck"]
    assert "9092" in " ".join(healthcheck["test"])
    assert healthcheck["retries"] >= 1


def test_kafka_settings_match_the_local_broker(services: dict[str, Any]) -> None:
    # The same broker behaviour with or without Docker: retention, replication, auto-creation.
    env = services["kafka"]["environment"]
    local = kafka_env(BROKER_SETTINGS)
    for key in (
        "KAFKA_LOG_RETENTION_MS",
        "KAFKA_LOG_RETENTION_BYTES",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
    ):
        assert str(env[key]) == local[key], key


def test_the_service_serves_on_8000_after_a_healthy_broker_and_the_topic(services: dict[str, Any]) -> None:
    app = services["chat-analytics"]
    assert app["build"] == "."
    assert app["command"][:2] == ["chat-analytics", "serve"]
    command = app["command"]
    assert command[command.index("--port") + 1] == "8000"
    assert command[command.index("--host") + 1] == "0.0.0.0", "inside a container the port must be reachable"
    assert any(str(port).endswith(":8000:8000") or str(port) == "8000:8000" for port in app["ports"])
    assert app["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert app["depends_on"]["topic"]["condition"] == "service_completed_successfully"
    assert any(str(volume).endswith(":/data") for volume in app["volumes"])


def test_every_app_container_reaches_the_broker_on_an_advertised_listener(services: dict[str, Any]) -> None:
    broker_env = services["kafka"]["environment"]
    advertised = broker_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name in ("topic", "chat-analytics", "publish-demo", "replica-1", "replica-2"):
        bootstrap = services[name]["environment"]["CHAT_ANALYTICS_BOOTSTRAP_SERVERS"]
        assert any(listener.endswith(f"://{bootstrap}") for listener in advertised), name


def test_the_topic_is_created_before_anything_publishes(services: dict[str, Any]) -> None:
    assert services["topic"]["command"] == ["chat-analytics", "topic", "create"]
    assert services["topic"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_demo_publisher_is_optional(services: dict[str, Any]) -> None:
    demo = services["publish-demo"]
    assert demo["profiles"] == ["demo"]
    assert demo["command"] == ["chat-analytics", "publish-demo", "--events", "20000", "--rate", "50"]
    assert demo["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "profiles" not in services["chat-analytics"] and "profiles" not in services["kafka"]


def test_the_dockerfile_installs_the_package_on_python_3_11_slim() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert "pip install ." in dockerfile
    assert "EXPOSE 8000" in lines
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".cache", "data"} <= set(ignored), "local state must not be baked into the image"


REPLICAS = ("replica-1", "replica-2")


def test_the_replicas_profile_runs_each_replica_on_its_own_volume_and_consumer_group(services: dict[str, Any]) -> None:
    volumes, groups = set(), set()
    for name in REPLICAS:
        replica = services[name]
        assert replica["profiles"] == ["replicas"]
        assert replica["command"][:2] == ["chat-analytics", "serve"]
        assert replica["command"][replica["command"].index("--host") + 1] == "0.0.0.0"
        assert "ports" not in replica, "a replica is reached through HAProxy only"
        (volume,) = replica["volumes"]
        assert volume.endswith(":/data")
        volumes.add(volume.split(":")[0])
        groups.add(replica["environment"]["CHAT_ANALYTICS_GROUP_ID"])
        assert replica["environment"]["CHAT_ANALYTICS_DB"].startswith("/data/")
        assert replica["depends_on"]["topic"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(replica["healthcheck"]["test"])
    assert len(volumes) == len(groups) == len(REPLICAS), "files and consumer groups must not be shared"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert volumes <= set(compose["volumes"])


def test_haproxy_fronts_the_replicas_with_the_committed_generated_config(services: dict[str, Any]) -> None:
    from replicas.haproxy import COMPOSE_SERVERS, check_config, compose_config

    haproxy = services["haproxy"]
    assert haproxy["profiles"] == ["replicas"]
    assert set(haproxy["depends_on"]) == set(REPLICAS)
    assert "127.0.0.1:8080:8080" in haproxy["ports"]
    (mount,) = haproxy["volumes"]
    source, target = mount.split(":")[:2]
    assert target == "/usr/local/etc/haproxy/haproxy.cfg"
    committed = (REPO / source).read_text()
    assert committed == compose_config(), "deploy/haproxy.cfg is stale: python -m replicas.haproxy --compose"
    # One server line per replica service, on the port its serve listens on, each health-checked on /readyz.
    assert {(name, host) for name, host, _ in COMPOSE_SERVERS} == {(r, r) for r in REPLICAS}
    for name, host, port in COMPOSE_SERVERS:
        command = services[name]["command"]
        assert int(command[command.index("--port") + 1]) == port
        assert f"server {name} {host}:{port}" in committed
    assert "http-check send meth GET uri /readyz" in committed and "option redispatch" in committed
    # The real HAProxy accepts it (it warns that the replicas' names do not resolve outside Docker).
    check_config(REPO / source)
