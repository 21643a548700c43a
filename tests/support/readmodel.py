"""Looking at a read-model file in tests: its comparable rows, and whether a writer could take it now."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from projector.snapshot import table_rows
from schemas.readmodel import connect
from serving.handle import ReadModelHandle


def rows_of(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = connect(path, read_only=True)
    try:
        return table_rows(con)
    finally:
        con.close()


def lease_is_free(handle: ReadModelHandle) -> bool:
    """Whether a writer could take the read model now (no read lease left behind)."""
    got = threading.Event()

    def take() -> None:
        with handle.exclusive():
            got.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return got.wait(timeout=30)
