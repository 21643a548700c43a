"""The live fold alone, without Kafka or a server: what one live batch costs the projector's writer.

`python -m bench.live_fold --base 1000000` folds `--base` demo events into a file in catch-up batches
(kept under `--dir` and reused by later runs with the same `--base`), then, on a copy of it opened as
`serve` opens a file (`schemas.readmodel.serving_settings`), folds `--live` more events of the same
stream in batches of `--batch` (2,000 events/s arrive as ~500 per 250 ms live batch), and prints each
batch's wall and CPU time and the share of it spent in the statements that keep `feedback_records` and
`conversations`.

Freshness at the head of the topic is mostly the fold's own time (a probe waits for the batch being
folded, then for its own: about 1.5 batch times), and the freshness benchmark's figure moves with
everything else the machine runs. This one runs the same fold code on the same events, so two clones
can be compared in the same minutes: run it alternately in each and compare the CPU per batch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stages import TimedConnection
from ingest.demo import DemoTraffic
from projector import apply, conversations, feedback_records
from projector.fold import apply_batch
from projector.records import Record
from schemas.readmodel import connect, serving_settings

CATCH_UP_BATCH = 8_000
PARTITIONS = 6


def demo_records(events: int, seed: int) -> list[Record]:
    return [
        Record("live-fold", i % PARTITIONS, i // PARTITIONS, key, value)
        for i, (key, value) in enumerate(DemoTraffic(events, seed=seed))
    ]


def base_file(directory: Path, records: list[Record], base: int) -> Path:
    path = directory / f"live-fold-base-{base}.duckdb"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    con = connect(partial)
    for start in range(0, base, CATCH_UP_BATCH):
        apply_batch(con, records[start : min(start + CATCH_UP_BATCH, base)])
    con.execute("CHECKPOINT")
    con.close()
    partial.rename(path)
    return path


def _timed(name: str, spent: dict[str, float], function: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any) -> Any:
        started = time.process_time()
        try:
            return function(*args)
        finally:
            spent[name] += time.process_time() - started

    return timed


def run(
    base: int, live: int, batch: int, directory: Path, seed: int, statements: int = 0
) -> tuple[dict[str, float], list[tuple[float, str]]]:
    """The figures of the live batches, and the `statements` costliest statements of the fold by their CPU
    per batch (ms, `bench.stages.TimedConnection`: DuckDB's own threads included)."""
    directory.mkdir(parents=True, exist_ok=True)
    records = demo_records(base + live, seed)
    source = base_file(directory, records, base)
    served = directory / "live-fold-served.duckdb"
    shutil.copyfile(source, served)
    Path(f"{served}.wal").unlink(missing_ok=True)
    raw = connect(served)
    serving_settings(raw)
    con = TimedConnection(raw)
    spent: dict[str, float] = defaultdict(float)
    # apply.py calls both through their modules: timing them there counts every call of a batch.
    kept = {"feedback_records": feedback_records.refresh, "conversations": conversations.refresh}
    apply.feedback_records.refresh = _timed("feedback_records", spent, kept["feedback_records"])  # type: ignore[assignment]
    apply.conversations.refresh = _timed("conversations", spent, kept["conversations"])  # type: ignore[assignment]
    walls: list[float] = []
    cpus: list[float] = []
    try:
        for start in range(base, base + live, batch):
            wall, cpu = time.perf_counter(), time.process_time()
            apply_batch(con, records[start : min(start + batch, base + live)])  # type: ignore[arg-type]
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    finally:
        apply.feedback_records.refresh = kept["feedback_records"]  # type: ignore[assignment]
        apply.conversations.refresh = kept["conversations"]  # type: ignore[assignment]
        raw.close()
    n = len(walls)
    costliest = [(cpu / n * 1000, name) for name, cpu in con.by_statement.most_common(statements)]
    return {
        "batches": n,
        "wall_p50_ms": statistics.median(walls) * 1000,
        "wall_mean_ms": statistics.mean(walls) * 1000,
        "cpu_mean_ms": statistics.mean(cpus) * 1000,
        "feedback_records_cpu_mean_ms": spent["feedback_records"] / n * 1000,
        "conversations_cpu_mean_ms": spent["conversations"] / n * 1000,
        "duckdb_cpu_mean_ms": con.cpu / n * 1000,
        "load_average": os.getloadavg()[0],
    }, costliest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_fold", description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=200_000, help="events in the file before (default 200000)")
    parser.add_argument("--live", type=int, default=20_000, help="events folded in live batches (default 20000)")
    parser.add_argument("--batch", type=int, default=500, help="events per live batch (default 500)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/chat-analytics-live-fold"), help="where the files go")
    parser.add_argument("--seed", type=int, default=7, help="demo traffic seed (default 7)")
    parser.add_argument(
        "--statements", type=int, default=0, help="also list the fold's costliest statements, CPU per batch (default 0)"
    )
    args = parser.parse_args(argv)
    figures, costliest = run(args.base, args.live, args.batch, args.dir, args.seed, args.statements)
    print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
    for ms, name in costliest:
        print(f"{ms:8.2f} ms  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
