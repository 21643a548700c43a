"""Making a kafka-python client without leaking its IO thread when Kafka cannot be reached.

kafka-python 3.0's KafkaConsumer, KafkaProducer and KafkaAdminClient start their network client's IO
thread, then wait for the cluster's metadata in the constructor; when that wait fails (no broker), the
constructor raises and the thread lives on, reconnecting to the missing broker for the life of the
process. Every retry of a loop that connects while Kafka is down (the projector's, the ingest
producer's, the probe's) left one more behind. `made()` builds the client through kafka-python's own
`kafka_client` hook and, when the constructor raises, closes the network client it had made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

Client = TypeVar("Client")


def made(factory: Callable[..., Client], **config: Any) -> Client:
    """`factory(**config)` (KafkaConsumer, KafkaProducer, KafkaAdminClient), leaving no thread behind
    when it raises."""
    network_client = getattr(factory, "DEFAULT_CONFIG", {})["kafka_client"]
    networks: list[Any] = []

    def tracked(**kwargs: Any) -> Any:
        network = network_client(**kwargs)
        networks.append(network)
        return network

    try:
        return factory(kafka_client=tracked, **config)
    except BaseException:
        for network in networks:
            with contextlib.suppress(Exception):
                network.close()
        raise
