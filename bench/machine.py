"""What the figures were measured on: they mean little without the machine next to them."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("duckdb", "kafka-python", "starlette", "uvicorn", "pydantic", "orjson", "pyarrow")
# The speed probe's loop (`speed_probe`): about 0.08 s a round on the Intel Xeon VM of issue 14.
PROBE_STEPS = 2_000_000
PROBE_ROUNDS = 3


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe(kafka: str) -> dict[str, Any]:
    """The machine, the interpreter and the library versions; `kafka` says which broker served the run."""
    memory = _memory_bytes()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {name: _version(name) for name in PACKAGES},
        "kafka": kafka,
        # Other work on the machine skews every figure; the load average says how busy it was.
        "load_average_at_start": load_average(),
        "speed_probe_s_at_start": speed_probe(),
    }


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: above the core count, the benchmark shared the CPU."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def speed_probe() -> float:
    """Seconds a fixed loop of pure Python took, the best of PROBE_ROUNDS: how fast the machine was just
    then. The VMs of issue 14 have run for an hour at a time at half or two thirds of their usual speed
    (bench/README.md): the host's other tenants do not show in the load average, and until this probe
    only the raw read's rate gave such an hour away. A run whose probe took longer than another's does
    not compare with it. Alike probes are not enough: three rebuilds of the same code within five
    minutes, all with probes of 0.073-0.080 s, took 33.8-36.1 µs of CPU an event."""
    best = float("inf")
    for _ in range(PROBE_ROUNDS):
        started = time.perf_counter()
        total = 0
        for i in range(PROBE_STEPS):
            total += i * i
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def state_line(machine: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    """The machine's load and speed during the run: at its start, then after each benchmark."""
    after = [
        f"{probe:.3f} s after the {name.replace('_', ' ')}"
        for name, figures in results.items()
        if (probe := figures.get("speed_probe_s_after")) is not None
    ]
    load = machine.get("load_average_at_start")
    start = machine.get("speed_probe_s_at_start")
    return (
        f"Load average at the start: {', '.join(map(str, load)) if load else 'unknown'}. Speed probe "
        f"(`bench.machine.speed_probe`, a fixed Python loop of {PROBE_STEPS:,} steps, best of {PROBE_ROUNDS}; "
        "compare two runs only when it took about the same): "
        + ", ".join([f"{start:.3f} s at the start" if start is not None else "not taken at the start", *after])
        + "."
    )


def one_line(machine: dict[str, Any]) -> str:
    versions = machine["versions"]
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM; "
        f"Python {machine['python']}, DuckDB {versions.get('duckdb')}, kafka-python {versions.get('kafka-python')}, "
        f"Starlette {versions.get('starlette')}, uvicorn {versions.get('uvicorn')}; Kafka: {machine['kafka']}"
    )
