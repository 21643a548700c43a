"""Progress of a long command on stderr: a redrawn bar in a terminal, plain log lines otherwise
(a CI log or a file must not fill up with carriage returns)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

BAR_WIDTH = 30
LINE_EVERY_S = 5.0  # plain lines: one per this many seconds
REDRAW_EVERY_S = 0.2


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def describe(progress: Mapping[str, Any]) -> str:
    """`12,345/60,000 events  6,123/s  0:00:08 left` from a Progress.as_json()-shaped mapping."""
    done = int(progress.get("events_done") or 0)
    total = int(progress.get("events_total") or 0)
    rate = float(progress.get("events_per_second") or 0.0)
    phase = progress.get("phase")
    text = f"{done:,}/{total:,} events  {rate:,.0f}/s  {_duration(progress.get('seconds_left'))} left"
    return f"{text}  ({phase})" if phase else text


def bar(progress: Mapping[str, Any]) -> str:
    done = int(progress.get("events_done") or 0)
    total = int(progress.get("events_total") or 0)
    share = 1.0 if total <= 0 else min(1.0, done / total)
    filled = int(share * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share * 100:5.1f}%  {describe(progress)}"


class Reporter:
    """Shows `snapshot()` until `close()`: redrawn in place on a terminal, a line every few seconds else."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Any]], stream: TextIO | None = None) -> None:
        self.snapshot = snapshot
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._width = 0

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        every = REDRAW_EVERY_S if self.tty else LINE_EVERY_S
        while not self._stop.wait(every):
            self.show()

    def show(self) -> None:
        try:
            progress = self.snapshot()
        except Exception as exc:  # a progress display must never end the work it displays
            progress = {"phase": f"progress unavailable: {exc}"}
        if self.tty:
            line = bar(progress)
            pad = max(0, self._width - len(line))
            self._width = len(line)
            self.stream.write(f"\r{line}{' ' * pad}")
        else:
            self.stream.write(f"{time.strftime('%H:%M:%S')} {describe(progress)}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.show()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
