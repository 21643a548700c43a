"""How the `serve` process shares its one interpreter between the projector thread and the requests.

The projector folds live batches in a thread of the same process as the API. Two interpreter defaults
made requests wait behind it now and then, whatever a request itself costs:

- The switch interval. A thread that wants the interpreter (the event loop with a new request, a
  worker thread back from DuckDB) waits up to `sys.getswitchinterval()` (5 ms by default) before the
  running thread is asked to let go. A request takes the interpreter back four or so times (the loop,
  the worker, again after each DuckDB statement, the loop to send), so while the projector runs Python
  a request could wait 5 ms at each of them. At 1 ms, a thread that holds it is asked to let go sooner;
  only threads that someone waits for are interrupted, so the fold pays only when requests are waiting.
- The cyclic garbage collector. A full (oldest-generation) collection walks every object the process
  tracks and holds the interpreter meanwhile: every request in flight waits for it. Most of those
  objects are made at start-up (modules, the OpenAPI document, validators) and live as long as the
  process, so they are moved out of the collector's sight once, before the first request.
"""

from __future__ import annotations

import gc
import sys

SWITCH_INTERVAL_S = 0.001


def tune_for_serving() -> None:
    """Call once, after the application is built and before it serves."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()
