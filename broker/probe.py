"""Is a Kafka broker answering? Used to decide that a start has finished and that a state file is not stale."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator

from kafka import KafkaAdminClient

from broker.clients import made


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def port_open(address: str, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection(split_address(address), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _quiet_kafka_logs() -> Iterator[None]:
    # A probe is expected to fail while the broker boots; kafka-python would print each failure.
    logger = logging.getLogger("kafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def answers_metadata(bootstrap_servers: str, timeout_s: float = 5.0) -> bool:
    """True when the cluster behind `bootstrap_servers` answers a metadata request."""
    first = bootstrap_servers.split(",")[0]
    if not port_open(first, timeout_s=min(timeout_s, 2.0)):
        return False
    timeout_ms = int(timeout_s * 1000)
    with _quiet_kafka_logs():
        try:
            admin = made(
                KafkaAdminClient,
                bootstrap_servers=bootstrap_servers,
                client_id="chat-analytics-probe",
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=timeout_ms,
            )
        except Exception:
            return False
        try:
            admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            admin.close()


def wait_until_answering(
    bootstrap_servers: str,
    timeout_s: float,
    still_starting: Callable[[], str | None] = lambda: None,
) -> None:
    """Block until the broker answers metadata; `still_starting` returns an error when the start failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        failure = still_starting()
        if failure is not None:
            raise RuntimeError(failure)
        if answers_metadata(bootstrap_servers, timeout_s=3.0):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no Kafka broker answered metadata at {bootstrap_servers} within {timeout_s:.0f}s")
        time.sleep(0.2)
