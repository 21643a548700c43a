"""Which broker `select_broker` picks, and that a broker it starts never outlives its owner."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from broker.container import docker_available, kafka_env
from broker.lifetime import process_alive
from broker.local import new_cluster_id
from broker.probe import answers_metadata
from broker.selection import ENV, LOCAL, select_broker
from loopback.ports import refusing_port
from tests.support import REPO

GONE_DEADLINE_S = 60.0


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A Docker "engine" on a closed loopback port: the ping fails at once, as on a machine without one.
    with refusing_port() as port:
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")
        yield


def wait_gone(pid: int, folder: Path) -> bool:
    deadline = time.monotonic() + GONE_DEADLINE_S
    while process_alive(pid) or folder.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_the_environment_variable_wins_and_nothing_is_started(
    monkeypatch: pytest.MonkeyPatch, bootstrap_servers: str, broker_home: Path
) -> None:
    monkeypatch.setenv("CHAT_ANALYTICS_BOOTSTRAP_SERVERS", bootstrap_servers)
    selected = select_broker(broker_home, ephemeral=True)
    assert (selected.origin, selected.bootstrap_servers, selected.started_here) == (ENV, bootstrap_servers, False)
    selected.stop()
    assert answers_metadata(bootstrap_servers), "stop() must leave a broker it did not start alone"
    assert sorted(p.name for p in broker_home.iterdir()) == ["kafka-4.1.1"]


def test_a_dead_docker_engine_is_reported_as_absent(no_docker: None) -> None:
    assert docker_available(timeout_s=2.0) is False


def test_without_env_or_docker_a_private_local_broker_is_started_and_removed(
    monkeypatch: pytest.MonkeyPatch, no_docker: None, broker_home: Path
) -> None:
    monkeypatch.delenv("CHAT_ANALYTICS_BOOTSTRAP_SERVERS", raising=False)
    with select_broker(broker_home, ephemeral=True) as selected:
        assert selected.origin == LOCAL and selected.started_here
        assert answers_metadata(selected.bootstrap_servers)
        folders = list((broker_home / "ephemeral").iterdir())
        assert len(folders) == 1
        admin = KafkaAdminClient(bootstrap_servers=selected.bootstrap_servers)
        try:
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")], config_filter="all")
        finally:
            admin.close()
        broker = {key: entry["value"] for key, entry in configs["broker"]["1"].items()}
        assert broker["process.roles"] == "broker,controller"
        assert broker["auto.create.topics.enable"] == "true"
        assert broker["log.retention.ms"] == "-1"
        assert broker["offsets.topic.replication.factor"] == "1"
        assert broker["transaction.state.log.min.isr"] == "1"
        assert broker["group.initial.rebalance.delay.ms"] == "0"
    assert not answers_metadata(selected.bootstrap_servers)
    assert not folders[0].exists(), "a private broker's data folder goes with it"


OWNER = """
import sys
from collections.abc import Iterator
from pathlib import Path
from broker.local import start_ephemeral
broker = start_ephemeral(Path(sys.argv[1]))
print(broker.process.pid, broker.folder, flush=True)
sys.stdin.read()
"""


def test_a_private_broker_dies_with_its_owner_even_on_sigkill(broker_home: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(broker_home)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = owner.stdout.readline()
        assert line, "the owner process failed to start its broker"
        pid_text, folder_text = line.split(maxsplit=1)
        pid, folder = int(pid_text), Path(folder_text.strip())
        assert process_alive(pid)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        assert wait_gone(pid, folder), "the broker or its folder outlived the process that started it"
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.wait(timeout=30)


def test_kafka_env_uses_the_apache_image_escaping() -> None:
    assert kafka_env({"log.retention.ms": "-1", "a_b-c.d": "x"}) == {
        "KAFKA_LOG_RETENTION_MS": "-1",
        "KAFKA_A___B__C_D": "x",
    }


def test_cluster_ids_have_kafkas_format() -> None:
    # 2000 ids: with one id in 64 starting with "-", a generator that allowed it would show it here.
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
        assert not cluster_id.startswith("-"), "the storage tool would read it as an option"
