"""`python -m broker.watchdog PARENT_PID CHILD_PID [FOLDER]`: see broker/lifetime.py.

Kept free of third-party imports so that it starts fast and cannot fail on a broken environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time

POLL_SECONDS = 0.5
KILL_WAIT_SECONDS = 30.0


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # A zombie has exited already; only its parent's wait() is missing.
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def watch(parent: int, child: int, folder: str | None) -> None:
    while True:
        # Orphans are re-parented, so a changed parent pid means the owner died, whatever the platform.
        # Checked before the child: the parent-death signal may already have killed the child, and its
        # folder still has to go.
        if os.getppid() != parent or not process_alive(parent):
            break
        if not process_alive(child):
            # The owner stopped its broker normally and cleans up itself.
            return
        time.sleep(POLL_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while process_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    parent, child = int(argv[0]), int(argv[1])
    watch(parent, child, argv[2] if len(argv) > 2 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
