"""A throw-away Apache Kafka in Docker, through testcontainers, for machines that have an engine.

testcontainers-python's `KafkaContainer` drives Confluent's cp-kafka image (its start script runs
`/etc/confluent/docker/...`). The official `apache/kafka` image starts from `/etc/kafka/docker/run`
and is configured only by `KAFKA_*` variables, so `ApacheKafkaContainer` keeps the class (ports, file
copy, log wait, the Ryuk reaper that removes the container when this process dies) and replaces the
configuration and the start script.
"""

from __future__ import annotations

import re

try:
    from testcontainers.community.kafka import KafkaContainer
except ImportError:  # testcontainers < 4.14 kept it at its old, now deprecated, address
    from testcontainers.kafka import KafkaContainer

from broker.local import BROKER_SETTINGS, new_cluster_id

KAFKA_IMAGE = "apache/kafka:4.1.1"
CLIENT_PORT = 9092
BROKER_PORT = 9093  # inter-broker listener, advertised under the container's host name
CONTROLLER_PORT = 9094
START_SCRIPT = "/tmp/testcontainers_start.sh"


def docker_available(timeout_s: float = 3.0) -> bool:
    """True when a Docker engine answers a ping; never hangs on a missing or dead engine."""
    try:
        from testcontainers.core.docker_client import DockerClient

        return bool(DockerClient(timeout=timeout_s).client.ping())
    except Exception:
        return False


def kafka_env(settings: dict[str, str]) -> dict[str, str]:
    """Broker properties as the apache/kafka image reads them: `log.retention.ms` -> `KAFKA_LOG_RETENTION_MS`."""
    # The image's own escaping: '_' in a property name is '___', '-' is '__', '.' is '_'.
    return {
        "KAFKA_" + key.replace("_", "___").replace("-", "__").replace(".", "_").upper(): value
        for key, value in settings.items()
    }


def container_settings() -> dict[str, str]:
    return {
        **BROKER_SETTINGS,
        "listeners": f"PLAINTEXT://0.0.0.0:{CLIENT_PORT},BROKER://0.0.0.0:{BROKER_PORT},"
        f"CONTROLLER://0.0.0.0:{CONTROLLER_PORT}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "BROKER",
        "controller.quorum.voters": f"1@localhost:{CONTROLLER_PORT}",
        "log.dirs": "/var/lib/kafka/data",
    }


class ApacheKafkaContainer(KafkaContainer):
    def __init__(self, image: str = KAFKA_IMAGE) -> None:
        super().__init__(image=image, port=CLIENT_PORT)
        # Drop the cp-kafka variables the parent set; the apache image would choke on ZooKeeper-era keys.
        self.env = {"CLUSTER_ID": new_cluster_id(), **kafka_env(container_settings())}
        self.wait_for = re.compile(r".*Kafka Server started.*")

    def configure(self) -> None:
        return None

    def tc_start(self) -> None:
        host = self.get_container_host_ip()
        port = self.get_exposed_port(CLIENT_PORT)
        hostname = self.get_wrapped_container().attrs["Config"]["Hostname"]
        script = (
            "#!/bin/bash\n"
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{host}:{port},BROKER://{hostname}:{BROKER_PORT}\n"
            "exec /etc/kafka/docker/run\n"
        )
        self.create_file(script.encode("utf-8"), START_SCRIPT)

    def start(self, timeout: int = 120) -> ApacheKafkaContainer:
        from testcontainers.core.wait_strategies import LogMessageWaitStrategy

        # The container idles until the start script exists: the advertised address needs the mapped
        # port, which is only known once the container runs.
        self.with_command(f'sh -c "while [ ! -f {START_SCRIPT} ]; do sleep 0.1; done; bash {START_SCRIPT}"')
        super(KafkaContainer, self).start()
        self.tc_start()
        wait = LogMessageWaitStrategy(self.wait_for)
        wait.with_startup_timeout(timeout)
        wait.wait_until_ready(self)
        return self
