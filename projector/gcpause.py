"""Cyclic garbage collection paused around work that makes many objects and no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a batch allocates hundreds of thousands of objects that all
    live until it is shaped, and the collector scanned them again and again (about 45% of `prepare`'s
    time) to find no cycle. Whatever cycle the block leaves is collected after it, as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
