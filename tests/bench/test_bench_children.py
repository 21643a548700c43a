"""`bench.children.run_measured`: a rebuild's figures count the CPU time of its reader processes as well
as its own, and tell its own apart, so that the report can say what a rebuild costs per event."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.children import process_cpu_s, run_measured, tree_cpu_s

# A parent that burns CPU itself and waits for a child (a rebuild and its readers, in small); each prints
# the CPU time it used, by its own clock.
BURN = """
import multiprocessing, sys, time

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    print(f"{'child' if multiprocessing.parent_process() else 'parent'} {time.process_time():.3f}", flush=True)

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=burn, args=(0.6,))
    child.start()
    burn(0.3)
    child.join()
"""


def test_the_cpu_of_a_process_and_of_the_children_it_waited_for(tmp_path: Path) -> None:
    script = tmp_path / "burn.py"
    script.write_text(BURN)
    finished = run_measured([sys.executable, str(script)], {}, tmp_path / "burn.log", timeout_s=60)
    assert finished.exit_code == 0, finished.output
    used = dict(line.split() for line in finished.output.split("\n") if line.startswith(("parent", "child")))
    parent, child = float(used["parent"]), float(used["child"])
    assert child >= 0.6 and parent >= 0.3
    # All of it: the parent's and the child's (each more than its own clock said at its last print).
    assert finished.cpu_s >= parent + child
    # The parent's own, polled: at least what it had used when last seen, never the child's too.
    assert parent - 0.2 <= finished.root_cpu_s < parent + child
    assert 0 < finished.machine_busy <= 1


# A parent that sleeps while its child burns CPU and then waits to be read (the server and its live parser).
BURN_AND_WAIT = """
import multiprocessing, sys, time

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    print("burnt", flush=True)
    time.sleep(60)

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=burn, args=(0.5,), daemon=True)
    child.start()
    child.join()
"""


def test_the_cpu_of_a_server_counts_its_live_children(tmp_path: Path) -> None:
    script = tmp_path / "burn_and_wait.py"
    script.write_text(BURN_AND_WAIT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "burnt"
        own, tree = process_cpu_s(parent.pid), tree_cpu_s(parent.pid)
        assert own is not None and tree is not None
        assert own < 0.5 <= tree  # the child's half second is the tree's, not the parent's
    finally:
        parent.kill()
        parent.wait(10)
