"""kafka-python 3.0 leaves a client's IO thread running when its constructor cannot reach Kafka; the
product makes its clients through broker.clients.made, which closes what the constructor had started."""

from __future__ import annotations

import threading

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from broker.clients import made
from loopback.ports import refusing_port


@pytest.mark.parametrize("factory", [KafkaConsumer, KafkaProducer, KafkaAdminClient])
def test_a_client_that_cannot_reach_kafka_leaves_no_thread_behind(factory: type) -> None:
    extra = {"max_block_ms": 1000} if factory is KafkaProducer else {}
    with refusing_port() as port, pytest.raises(KafkaError):
        nobody = f"127.0.0.1:{port}"
        made(factory, bootstrap_servers=nobody, client_id="unreachable", bootstrap_timeout_ms=1000, **extra)
    assert [t.name for t in threading.enumerate() if t.name == "kafka-io-unreachable"] == []
