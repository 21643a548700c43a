"""Loopback ports for servers that bind them later (a replica started minutes after its layout is written).

A port that is free now is not reserved: any outgoing connection on the machine may be given it as its
local port by the kernel, and a server that then binds it fails with "address already in use". The kernel
only hands out ports of its ephemeral range (`net.ipv4.ip_local_port_range`) that way, so these helpers
choose below that range, where only an explicit bind can take a port.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default ephemeral range, for systems without the file above.
DEFAULT_EPHEMERAL = (32768, 60999)
# The lowest port chosen: below it sit the registered ports of common services.
LOWEST = 10_000


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
        if all(_bindable(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {bases.start}-{bases.stop + count - 2}")


def free_port() -> int:
    return free_ports(1)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
