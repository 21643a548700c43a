"""Running `chat-analytics serve` as a process in tests: waiting for it, and what a test
keeps of a started server."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

WAIT = 120.0  # seconds before a test gives up waiting (a failure guard, not a timing assertion)


def wait_for(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode} while waiting for {what}")
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    db: Path

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=120)
