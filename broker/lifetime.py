"""Keeping a broker that one process started (a test session, a benchmark) from outliving that process.

Two independent guards, because either alone has a gap:

- `die_with_parent()`: a `preexec_fn` that asks Linux (prctl PR_SET_PDEATHSIG) to SIGKILL the broker
  the moment its parent dies, even by SIGKILL, when no Python code gets to run.
- `start_watchdog()`: a tiny separate process that polls for the parent's death, then kills the
  broker and deletes its data folder. It covers what the signal cannot: non-Linux systems, a parent
  that was a short-lived thread, and the folder left behind.

The normal path is still an explicit stop (plus `atexit`); these only handle crashes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from broker.watchdog import process_alive

__all__ = ["die_with_parent", "process_alive", "start_watchdog"]

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child die with this process, or None where prctl does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before the fork: loading a library in the forked child is not async-signal-safe.
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        # The parent may have died between fork() and prctl(); then the signal would never come.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def start_watchdog(child_pid: int, folder: Path | None) -> subprocess.Popen[bytes]:
    """Watch this process; when it is gone, kill `child_pid` and delete `folder`."""
    command = [sys.executable, "-m", "broker.watchdog", str(os.getpid()), str(child_pid)]
    if folder is not None:
        command.append(str(folder))
    # Its own session, so the Ctrl-C that stops a test run does not kill it before it has cleaned up.
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
