"""Child processes of a benchmark run: they die with the run, and one child's peak RSS can be read."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from broker.lifetime import die_with_parent
from replicas.process import terminate

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
    max_rss_bytes: int  # the largest single process of the tree (wait4)
    max_tree_bytes: int  # the largest PSS sum over the process and its descendants at one moment (polled)
    output: str
    cpu_s: float = 0.0  # user + system CPU time of the process and every descendant it waited for (wait4)
    root_cpu_s: float = 0.0  # of the process alone, its descendants left out (its last look, polled)
    machine_busy: float = 0.0  # the share of all the machine's cores busy meanwhile, whoever kept them so


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TREE_POLL_S = 0.05
TREE_RESCAN_EVERY = 20  # polls between two scans of /proc for new descendants


def _memory_bytes(pid: int) -> int:
    """The process's proportional set size (PSS: shared pages split between their users, so a tree's sum
    counts a shared library once); its RSS where smaps_rollup is missing; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int | None) -> float | None:
    """The user + system CPU seconds `pid` itself has used so far, its children's left out, from /proc
    (None where that cannot be read, or the process is gone)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        # Fields 14 and 15 of stat (utime, stime), counted after the ")" that ends the command name.
        return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_s(pid: int | None) -> float | None:
    """The user + system CPU seconds used so far by `pid` and by every process below it now alive (a
    descendant that has exited is left out), from /proc; None where `pid` cannot be read."""
    own = process_cpu_s(pid)
    if pid is None or own is None:
        return None
    return own + sum(process_cpu_s(child) or 0.0 for child in _descendants(pid) if child != pid)


def _machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of every core since boot, from /proc/stat ((0, 0) where it is missing)."""
    try:
        with open("/proc/stat") as stat:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in stat.readline().split()[1:9])
    except (OSError, ValueError):
        return 0, 0
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _descendants(root: int) -> list[int]:
    """`root` and every process below it now alive, from /proc (just `root` where /proc is missing)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    parents[int(entry.name)] = int(stat.read().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # it exited meanwhile
    found = [root]
    for pid in parents:
        ancestor = pid
        while ancestor in parents and ancestor not in (0, 1, root):
            ancestor = parents[ancestor]
        if ancestor == root and pid != root:
            found.append(pid)
    return found


class _TreeWatch:
    """The peak of the summed memory (PSS) of a process tree, and its root's own CPU time as last seen.
    Scanning all of /proc costs milliseconds, so the tree is rescanned only now and then; in between,
    only its known members are read."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.members = [root]
        self.polls = 0
        self.peak = 0
        self.root_cpu_s = 0.0  # the root's own CPU time, as last seen

    def poll(self) -> None:
        if self.polls % TREE_RESCAN_EVERY == 0 or self.polls < 10:
            self.members = _descendants(self.root)
        self.polls += 1
        self.peak = max(self.peak, sum(_memory_bytes(pid) for pid in self.members))
        own = process_cpu_s(self.root)
        if own is not None:
            self.root_cpu_s = own


def run_measured(command: list[str], env: dict[str, str], log: Path, timeout_s: float) -> Finished:
    """Runs `command` to the end; returns its wall time and its peak memory, two ways.

    `os.wait4` gives the rusage of exactly this child (RUSAGE_CHILDREN would mix in every other child
    the run has waited for, such as the publishers), but its ru_maxrss is the largest single process
    of the tree, not their sum: a rebuild with parser processes uses more. So the tree's memory (PSS)
    is also summed from /proc every TREE_POLL_S (a shorter spike can slip between two looks; a process that
    starts and dies between two scans of the tree is missed).
    Output goes to `log`, never to a pipe that could fill.

    Its CPU time too: all of it (wait4: the process and every descendant it waited for, such as a
    rebuild's reader processes), the process's own as last polled (up to TREE_POLL_S of it may be
    missed), and how busy the machine's cores were meanwhile (from /proc/stat: whatever kept them busy,
    the broker serving the run included).
    """
    with log.open("wb") as out:
        busy_before, all_before = _machine_ticks()
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
        tree = _TreeWatch(process.pid)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            tree.poll()
            time.sleep(TREE_POLL_S)
        wall = time.perf_counter() - started
        busy_after, all_after = _machine_ticks()
    process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    single = int(usage.ru_maxrss) * scale
    cpu = usage.ru_utime + usage.ru_stime
    ticks = all_after - all_before
    return Finished(
        process.returncode,
        wall,
        single,
        max(tree.peak, single),
        log.read_text(errors="replace"),
        cpu_s=cpu,
        root_cpu_s=min(tree.root_cpu_s, cpu),
        machine_busy=(busy_after - busy_before) / ticks if ticks > 0 else 0.0,
    )


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
    terminate(process, timeout_s)


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
