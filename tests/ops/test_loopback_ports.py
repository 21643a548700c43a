"""A replica's port is chosen when its layout is written and bound only when it starts, perhaps minutes
later. A CI run failed there: replica-3 exited with 3 (uvicorn's start-up failure) and only its log said
why, "[Errno 98] error while attempting to bind on address ('127.0.0.1', 37622): address already in use",
37622 being a port of the kernel's ephemeral range that an outgoing connection had been given meanwhile.

These tests take a port the way that connection did, and check that the error names the cause and that
the ports chosen for later servers (replicas, `serve`, the Kafka broker's two) are ones no outgoing
connection can be given, and that a port held to refuse connections does refuse them.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from broker.local import new_ports
from loopback.ports import ephemeral_range, free_ports, refusing_port
from replicas.local import Replica

WAIT = 120.0  # a failure guard, not a timing assertion


def test_a_replica_whose_port_an_outgoing_connection_holds_fails_and_says_why(
    bootstrap_servers: str, make_topic: Any, tmp_path: Path
) -> None:
    topic = make_topic(partitions=1)
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.create_connection(listener.getsockname()) as out:
        taken = out.getsockname()[1]
        low, high = ephemeral_range()
        assert low <= taken <= high, "the kernel gives outgoing connections ports of its ephemeral range"
        replica = Replica(
            name="replica-x",
            port=taken,
            db=tmp_path / "replica-x.duckdb",
            group_id=f"ports-{topic}",
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            log=tmp_path / "replica-x.log",
            env={"CHAT_ANALYTICS_API_TOKENS": "ports-staff-token:staff"},
        )
        try:
            replica.start()
            with pytest.raises(RuntimeError) as raised:
                replica.wait_ready(WAIT)
        finally:
            replica.stop()
    message = str(raised.value)
    assert message.startswith("replica-x exited with 3;"), message
    assert str(replica.log) in message
    assert f"('127.0.0.1', {taken}): address already in use" in message, message


def test_ports_for_later_servers_lie_outside_the_ephemeral_range_and_are_free() -> None:
    low, high = ephemeral_range()
    for _ in range(200):
        base = free_ports(4)
        ports = range(base, base + 4)
        assert all(not low <= port <= high for port in ports), (base, low, high)
        assert all(1024 < port < 65_536 for port in ports)
        for port in ports:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))


def test_the_brokers_ports_lie_outside_the_ephemeral_range() -> None:
    low, high = ephemeral_range()
    for _ in range(50):
        ports = new_ports()
        assert ports.broker != ports.controller
        assert all(not low <= port <= high for port in (ports.broker, ports.controller)), (ports, low, high)


def test_a_held_refusing_port_refuses_connections_and_nobody_else_can_bind_it() -> None:
    with refusing_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with socket.socket() as other, pytest.raises(OSError):
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and Kafka bind
            other.bind(("127.0.0.1", port))
            other.listen()


def test_a_port_that_answers_other_than_http_is_not_a_ready_replica(tmp_path: Path) -> None:
    # What the first test once met: polling /readyz on a port of the ephemeral range, the probe's own
    # connection was given that port, and TCP connected it to itself: the answer was the request.
    with socket.create_server(("127.0.0.1", 0)) as echo:

        def answer() -> None:
            conn, _ = echo.accept()
            with conn:
                conn.sendall(conn.recv(4096))

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        replica = Replica(
            name="replica-echo",
            port=echo.getsockname()[1],
            db=tmp_path / "unused.duckdb",
            group_id="unused",
            bootstrap_servers="127.0.0.1:1",
            topic="unused",
            log=tmp_path / "unused.log",
        )
        assert replica.ready() is False
        thread.join(10)
