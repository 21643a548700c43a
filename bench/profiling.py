"""Where the time goes, for `--profile`: py-spy samples a child (or attaches to the server) and the
raw stacks are folded into the top entries by own time and by inclusive time.

py-spy samples from outside the interpreter, so the profiled code runs at nearly full speed, and time
spent inside DuckDB is charged to the Python line that called it. Only on-CPU samples are kept (idle
threads would swamp the shares); samples / (rate x wall time) is then how many cores were busy.
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
    command = [py_spy(), "record", "-r", str(RATE_HZ), "-f", "raw", "-o", str(raw), "--subprocesses"]
    return children.run_measured([*command, "--", *argv], env, log, timeout_s=3600.0)


def attach(pid: int, seconds: float, raw: Path, log: Path) -> subprocess.Popen[bytes]:
    """Samples a running process for `seconds`."""
    command = [py_spy(), "record", "-r", str(RATE_HZ), "-f", "raw", "-o", str(raw), "--pid", str(pid)]
    return children.start([*command, "-d", str(max(1, round(seconds)))], dict(os.environ), log)


def summarize(raw: Path, title: str, wall_s: float, top: int = TOP) -> str:
    """The top frames by own samples and by inclusive samples, as text with shares of all samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _FRAME.findall(stack)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        # With --subprocesses, stacks start with the process frames, the parent's first.
        named = [f for f in frames if f.startswith("process ")]
        processes[named[-1] if named else "(one process)"] += count
    busy = total / (RATE_HZ * wall_s) if wall_s > 0 else 0.0
    lines = [f"# {title}", "", f"{total} on-CPU samples at {RATE_HZ} Hz over {wall_s:.1f} s: {busy:.2f} cores busy", ""]
    lines += ["## samples by process", ""]
    lines += [f"{100.0 * c / total:6.1f}%  {p[:160]}" for p, c in processes.most_common()] if total else []
    lines.append("")
    for name, counter in (("own time", own), ("inclusive time", inclusive)):
        lines += [f"## top {top} by {name}", ""]
        for frame, count in counter.most_common(top):
            lines.append(f"{100.0 * count / total:6.1f}%  {frame[:200]}")
        lines.append("")
    return "\n".join(lines)
