"""`serve` shares one interpreter between the projector thread and the requests (serving/runtime.py)."""

from __future__ import annotations

import subprocess
import sys

from serving.runtime import SWITCH_INTERVAL_S

PROBE = """
import gc, sys
import cli.serve_cmd  # what serve has imported before it tunes
from serving.runtime import tune_for_serving
before = sys.getswitchinterval(), gc.get_freeze_count()
tune_for_serving()
after = sys.getswitchinterval(), gc.get_freeze_count()
young = [[] for _ in range(3)]  # made after the freeze, as every request's and batch's objects are
print(before[0], before[1], after[0], after[1], int(any(o is young[0] for o in gc.get_objects())))
"""


def test_serving_shortens_the_switch_interval_and_hides_start_up_objects_from_the_collector() -> None:
    # In a process of its own: the tuning is for the whole interpreter, not this test run's.
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    interval_before, frozen_before, interval_after, frozen_after, young_seen = out.stdout.split()
    assert float(interval_before) == 0.005  # CPython's default, which requests waited behind
    assert float(interval_after) == SWITCH_INTERVAL_S < float(interval_before)
    assert int(frozen_before) == 0 and int(frozen_after) > 10_000  # modules, validators: out of every collection
    assert young_seen == "1"  # what is made later is still collected as usual
