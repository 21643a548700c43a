"""Where the time goes, for `--profile`: py-spy samples a child (or attaches to the server) and the
raw stacks are folded into the top entries by own time and by inclusive time.

py-spy samples from outside the interpreter, so the profiled code runs at nearly full speed, and time
spent inside DuckDB is charged to the Python line that called it. py-spy is asked for on-CPU samples
only, but on this kind of VM it still reports threads parked in a condition wait or a selector (and
some blocking reads) as busy; the known waits are counted apart (IDLE_LEAVES) so that they do not
swamp the shares.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import children

# A frame, or a process frame of --subprocesses whose quoted command line may itself hold ';'.
_FRAME = re.compile(r'process \d+:"[^"]*"|[^;]+')
# A thread frame of --threads: `thread (1234): name`; threads of one name are counted together.
_THREAD = re.compile(r"thread \(\d+\): ?")
# Leaf frames that are a thread waiting, not working (the threadpool's idle workers, event loops).
IDLE_LEAVES = frozenset(
    {"Condition.wait", "Event.wait", "EpollSelector.select", "_PollLikeSelector.select", "SelectSelector.select"}
)
RATE_HZ = 200
TOP = 25


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise RuntimeError("--profile needs py-spy (a dev dependency: pip install -e '.[dev]')")
    return found


def record_command(argv: list[str], raw: Path, env: dict[str, str], log: Path) -> children.Finished:
    """Runs `argv` under py-spy, its child processes included."""
    command = [py_spy(), "record", "-r", str(RATE_HZ), "-f", "raw", "-o", str(raw), "--subprocesses", "--threads"]
    return children.run_measured([*command, "--", *argv], env, log, timeout_s=3600.0)


def attach(pid: int, seconds: float, raw: Path, log: Path) -> subprocess.Popen[bytes]:
    """Samples a running process for `seconds`, by thread (the projector's thread, the request threads...).
    Non-blocking: the process is never paused, so figures measured meanwhile stay honest."""
    command = [py_spy(), "record", "-r", str(RATE_HZ), "-f", "raw", "-o", str(raw), "--threads", "--nonblocking"]
    command += ["--pid", str(pid)]
    return children.start([*command, "-d", str(max(1, round(seconds)))], dict(os.environ), log)


def summarize(raw: Path, title: str, wall_s: float, top: int = TOP) -> str:
    """The top frames by own samples and by inclusive samples, as text with shares of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _FRAME.findall(stack)
        if frames and frames[-1].split(" (")[0] in IDLE_LEAVES:
            idle += count
            continue
        total += count
        # With --subprocesses, stacks start with the process frames, the parent's first; with
        # --threads, a thread frame follows. Both are counted apart, not as code.
        named = [f for f in frames if f.startswith("process ")]
        processes[named[-1] if named else "(one process)"] += count
        thread = next((f for f in frames if _THREAD.match(f)), None)
        if thread is not None:
            threads[_THREAD.sub("thread ", thread)] += count
        code = [f for f in frames if not f.startswith("process ") and not _THREAD.match(f)] or ["(no Python frame)"]
        own[code[-1]] += count
        for frame in set(code):
            inclusive[frame] += count
    busy = total / (RATE_HZ * wall_s) if wall_s > 0 else 0.0
    lines = [
        f"# {title}",
        "",
        f"{total} busy samples at {RATE_HZ} Hz over {wall_s:.1f} s: {busy:.2f} threads busy on average, an upper "
        f"bound: py-spy also counts some blocking reads as busy ({idle} samples of threads waiting in "
        f"{', '.join(sorted(IDLE_LEAVES))} left out)",
        "",
    ]
    for name, counter in (("process", processes), ("thread", threads)):
        if total and len(counter) > 1:
            lines += [f"## samples by {name}", ""]
            lines += [f"{100.0 * c / total:6.1f}%  {key[:160]}" for key, c in counter.most_common()]
            lines.append("")
    for name, counter in (("own time", own), ("inclusive time", inclusive)):
        lines += [f"## top {top} by {name}", ""]
        for frame, count in counter.most_common(top):
            lines.append(f"{100.0 * count / total:6.1f}%  {frame[:200]}")
        lines.append("")
    return "\n".join(lines)
