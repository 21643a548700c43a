"""Choosing loopback ports: one chooser for every server the project starts and binds later.

A port that is free now is not reserved: any outgoing connection on the machine may be given it as its
local port by the kernel, and a server that then binds it fails with "address already in use". A Kafka
broker binds its ports seconds after they are chosen (a JVM starts first), a replica perhaps minutes
later (its layout is written first), and even a server in this process binds a moment later. The kernel
only hands out ports of its ephemeral range (`net.ipv4.ip_local_port_range`) that way, and `bind(0)`
returns one of those, so these helpers choose below that range, where only an explicit bind can take a
port.

- `free_ports(count)`, `free_port()`: ports for a server that binds them later.
- `refusing_port()`: a port that refuses connections for as long as it is held ("nobody listens there").
- `bindable(port)`: whether a port can be bound now (a restart that wants its previous address).

A server that can take an already bound socket (uvicorn's `sockets=`) has no window at all: bind port 0
and hand the socket over.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default ephemeral range, for systems without the file above.
DEFAULT_EPHEMERAL = (32768, 60999)
# The lowest port chosen: below it sit the registered ports of common services.
LOWEST = 10_000
HOST = "127.0.0.1"


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives to outgoing connections and to binds of port 0 (inclusive bounds)."""
    try:
        low, high = (int(word) for word in PORT_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return low, high


def candidate_bases(count: int) -> range:
    """The first ports of `count` consecutive ports that all lie outside the ephemeral range."""
    low, high = ephemeral_range()
    if low - count > LOWEST:
        return range(LOWEST, low - count + 1)
    if high + count < 65_536:
        return range(high + 1, 65_536 - count + 1)
    raise RuntimeError(f"no room for {count} ports outside the ephemeral range {low}-{high}")


def free_ports(count: int, attempts: int = 200) -> int:
    """The first of `count` consecutive loopback ports that are free now and outside the ephemeral range."""
    bases = candidate_bases(count)
    rng = random.Random()
    for _ in range(attempts):
        base = rng.choice(bases)
        if all(bindable(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {bases.start}-{bases.stop + count - 2}")


def free_port() -> int:
    return free_ports(1)


def bindable(port: int) -> bool:
    """Whether a server could bind `port` on the loopback address now."""
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where connections are refused while the block runs: it is bound and not listening,
    so no other socket can bind it (and listen), and the kernel gives it to no outgoing connection
    (which could otherwise connect to itself through it)."""
    with socket.socket() as held:
        for _ in range(20):
            try:
                held.bind((HOST, free_port()))
                break
            except OSError:  # taken between the probe and this bind
                continue
        else:
            raise RuntimeError("could not hold a free loopback port")
        yield int(held.getsockname()[1])
