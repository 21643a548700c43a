"""A page of the list beside the live fold, in one process: what the fold's Python costs a request.

`serve` runs the projector as a thread of the API's process, and CPython runs one thread's Python at a
time. This runs the same two things without a server or Kafka, so that only that sharing is measured:
the main thread asks for a page of the list (`api.queries.list_interactions`, a different day bound each
time, so every answer is a cache miss) at a fixed rate, while a second thread folds demo events in live
batches on the same connection, as `serve`'s projector does (`projector.service`):

    python -m bench.live_contention --base 1000000 --fold child   # batches parsed by the live parser
    python -m bench.live_contention --base 1000000 --fold here    # parsed in the fold's thread (before)
    python -m bench.live_contention --base 1000000 --fold none    # no fold: the page alone

It uses `bench.live_fold`'s file of `--base` demo events (built once under `--dir`), serves a copy of it
with `serve`'s settings and interpreter settings (`serving.runtime`), and prints the latency of the pages,
counted from when each was due, as p50 / p90 / p99 / max in ms. Run the modes alternately: the machine's
other work moves the figures more than a run's own noise.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import threading
import time
from pathlib import Path

from api import queries
from api.params import Filters, Pagination
from bench.live_fold import base_file, demo_records
from bench.stats import summary_ms
from projector.apply import apply_prepared
from projector.live_parse import LiveParser
from projector.prepare import prepare
from schemas.readmodel import connect, serving_settings
from serving.runtime import tune_for_serving


def run(base: int, fold: str, requests: int, rate: float, batch: int, events_per_s: float, directory: Path) -> str:
    records = demo_records(base + int(requests / rate * events_per_s) + batch, seed=7)
    source = base_file(directory, records, base)
    served = directory / "live-contention.duckdb"
    shutil.copyfile(source, served)
    Path(f"{served}.wal").unlink(missing_ok=True)
    # The copy's dirty pages written back before the pages are timed, not while the fold commits and syncs its log.
    os.sync()
    con = connect(served)
    serving_settings(con)
    live = records[base:]
    parser = LiveParser()
    if fold == "child":
        parser.start()
        while not parser.ready():
            time.sleep(0.1)
    stop = threading.Event()

    def fold_live() -> None:
        cursor = con.cursor()
        due = time.perf_counter()
        for start in range(0, len(live), batch):
            if stop.is_set():
                return
            chunk = live[start : start + batch]
            apply_prepared(cursor, parser.prepare(chunk) if fold == "child" else prepare(chunk))
            due += batch / events_per_s
            stop.wait(max(0.0, due - time.perf_counter()))

    folding = threading.Thread(target=fold_live, name="projector", daemon=True)
    tune_for_serving()
    if fold != "none":
        folding.start()
    cursor = con.cursor()
    waited: list[float] = []
    due = time.perf_counter() + 1.0
    try:
        for n in range(requests):
            time.sleep(max(0.0, due - time.perf_counter()))
            filters = Filters(created_from=datetime.date(1900, 1, 1) + datetime.timedelta(days=n))
            cursor.execute("BEGIN TRANSACTION")
            queries.list_interactions(cursor, filters, ("-created",), Pagination(1, 10))
            cursor.execute("ROLLBACK")
            waited.append(time.perf_counter() - due)
            due += 1 / rate
    finally:
        stop.set()
        if folding.is_alive():
            folding.join()
        parser.close()
        con.close()
    latency = summary_ms(waited)  # nearest rank, as the API benchmark's rows
    return (
        f"fold={fold} pages={latency['count']} p50={latency['p50_ms']:.1f} p90={latency['p90_ms']:.1f}"
        f" p99={latency['p99_ms']:.1f} max={latency['max_ms']:.1f} ms load_average={os.getloadavg()[0]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_contention", description=__doc__.splitlines()[0])
    parser.add_argument("--fold", choices=("child", "here", "none"), default="child", help="how the live fold runs")
    parser.add_argument("--base", type=int, default=200_000, help="events in the file before (default 200000)")
    parser.add_argument("--requests", type=int, default=1500, help="pages asked (default 1500)")
    parser.add_argument("--rate", type=float, default=50.0, help="pages asked per second (default 50)")
    parser.add_argument("--batch", type=int, default=500, help="events per live batch (default 500)")
    parser.add_argument("--events-per-s", type=float, default=1000.0, help="events folded per second (default 1000)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/chat-analytics-live-fold"), help="where the files go")
    args = parser.parse_args(argv)
    print(run(args.base, args.fold, args.requests, args.rate, args.batch, args.events_per_s, args.dir), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
