"""Child processes of a benchmark run: they die with the run, and one child's peak RSS can be read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from broker.lifetime import die_with_parent

REPO_ROOT = Path(__file__).resolve().parent.parent


def python_module(module: str, *args: str) -> list[str]:
    # The same interpreter, so children run in the project's virtualenv wherever `make bench` was started.
    return [sys.executable, "-m", module, *args]


def chat_analytics(*args: str) -> list[str]:
    return python_module("cli", *args)


@dataclass(frozen=True)
class Finished:
    exit_code: int
    wall_s: float
    max_rss_bytes: int
    output: str


def run_measured(command: list[str], env: dict[str, str], log: Path, timeout_s: float) -> Finished:
    """Runs `command` to the end; returns its wall time and the peak RSS of that one process.

    `os.wait4` gives the rusage of exactly this child (RUSAGE_CHILDREN would mix in every other child
    the run has waited for, such as the publishers). Output goes to `log`, never to a pipe that could fill.
    """
    with log.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            preexec_fn=die_with_parent(),
        )
        deadline = started + timeout_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return Finished(process.returncode, wall, int(usage.ru_maxrss) * scale, log.read_text(errors="replace"))


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A long-running child (a server, a publisher); stop it with `stop`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            preexec_fn=die_with_parent(),
        )


def stop(process: subprocess.Popen[bytes] | None, timeout_s: float = 30.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
