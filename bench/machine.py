"""What the figures were measured on: they mean little without the machine next to them."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("duckdb", "kafka-python", "starlette", "uvicorn", "pydantic", "orjson", "pyarrow")


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
    }


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: above the core count, the benchmark shared the CPU."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def one_line(machine: dict[str, Any]) -> str:
    versions = machine["versions"]
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM; "
        f"Python {machine['python']}, DuckDB {versions.get('duckdb')}, kafka-python {versions.get('kafka-python')}, "
        f"Starlette {versions.get('starlette')}, uvicorn {versions.get('uvicorn')}; Kafka: {machine['kafka']}"
    )
