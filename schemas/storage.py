"""Free space of the data directory: reported in /metrics and `status`, checked before a rebuild and
before each checkpoint of the served file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def disk_free(folder: str | os.PathLike[str] | None) -> int | None:
    """Free bytes of the filesystem holding `folder` (for an unprivileged process), None when unknown."""
    if folder is None:
        return None
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def checkpoint_room(db: str | os.PathLike[str], wal_bytes: int) -> tuple[int | None, int]:
    """(free bytes, bytes needed) for a checkpoint of `db` whose write-ahead log holds `wal_bytes`.

    A checkpoint writes the row groups the log changed into new blocks before it frees the old ones,
    and DuckDB invalidates the database when one of those writes fails: the process must restart. At
    worst every row group changed, so it is only started with room for the file once more and its log.
    """
    path = Path(db)
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return disk_free(path.parent), size + wal_bytes


def disk_figures(path: str | os.PathLike[str] | None, warn_bytes: int) -> dict[str, Any]:
    """The data directory's free space, with a warning below `warn_bytes`."""
    folder = None if path is None else Path(path).resolve().parent
    free = disk_free(folder)
    low = free is not None and free < warn_bytes
    return {
        "data_dir": None if folder is None else str(folder),
        "free_bytes": free,
        "warn_below_bytes": warn_bytes,
        "warning": f"only {size_text(free)} free in {folder}: the projector cannot write once it is full"
        if low
        else None,
    }


def size_text(n: int | None) -> str:
    if n is None:
        return "missing"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
