"""How long a read waits for a checkpoint of the file it reads: `python -m bench.checkpoint_stall`.

The server reads and its projector writes through one DuckDB instance; the projector checkpoints the
write-ahead log into the file between two batches (docs/architecture.md, "Checkpoints and freshness").
This builds a table of short text columns in a scratch file, commits small batches of inserts and
updates until the log reaches `--log-mib`, then runs CHECKPOINT while a second cursor of the same
instance reads one row by primary key every few milliseconds, and prints the checkpoint's length beside
the longest read that began during it and the longest read outside it. A synthetic table, not the read
model: it shows whether and how long readers wait, not the served file's own checkpoint times.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

import duckdb

COLUMNS = 30
FIRST_ROWS = 600_000
BATCH_ROWS = 2_000
READ_EVERY_S = 0.005

_TEXTS = ", ".join(f"'v' || (i % 1000)::VARCHAR || repeat('x', 20) AS c{n}" for n in range(COLUMNS))
_INSERT = f"INSERT INTO t SELECT i, TIMESTAMP '2026-01-01' + to_seconds(i), {_TEXTS} FROM range(?, ?) r(i)"


def _log_bytes(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return wal.stat().st_size if wal.exists() else 0


def measure(path: Path, log_mib: int) -> dict[str, float]:
    con = duckdb.connect(str(path))
    con.execute("SET checkpoint_threshold = '1TB'")  # only the CHECKPOINT below moves the log
    texts = ", ".join(f"c{n} VARCHAR" for n in range(COLUMNS))
    con.execute(f"CREATE TABLE t (id BIGINT PRIMARY KEY, created TIMESTAMP, {texts})")
    con.execute(_INSERT, [0, FIRST_ROWS])
    con.execute("CHECKPOINT")
    rows = FIRST_ROWS
    while _log_bytes(path) < log_mib * 1024 * 1024:
        con.execute(_INSERT, [rows, rows + BATCH_ROWS])
        con.execute("UPDATE t SET c1 = 'updated' WHERE id % 997 = ?", [rows % 997])
        rows += BATCH_ROWS
    log_size = _log_bytes(path)

    reads: list[tuple[float, float]] = []  # (began, seconds)
    stop = threading.Event()

    def read() -> None:
        cur = con.cursor()
        while not stop.is_set():
            began = time.monotonic()
            cur.execute("SELECT * FROM t WHERE id = ?", [random.randrange(rows)]).fetchall()
            reads.append((began, time.monotonic() - began))
            time.sleep(READ_EVERY_S)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(1.0)
    began = time.monotonic()
    con.execute("CHECKPOINT")
    ended = time.monotonic()
    time.sleep(1.0)
    stop.set()
    reader.join()
    con.close()
    during = [s for b, s in reads if began <= b <= ended]
    outside = [s for b, s in reads if not began <= b <= ended]
    return {
        "log_mib": log_size / 2**20,
        "rows": rows,
        "checkpoint_s": ended - began,
        "reads_during": len(during),
        "longest_read_during_ms": max(during, default=0.0) * 1000,
        "longest_read_outside_ms": max(outside, default=0.0) * 1000,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_stall", description=__doc__.split("\n")[0])
    parser.add_argument("--log-mib", type=int, nargs="+", default=[16, 64, 256], help="log sizes to checkpoint")
    args = parser.parse_args(argv)
    for log_mib in args.log_mib:
        with tempfile.TemporaryDirectory() as folder:
            r = measure(Path(folder) / "stall.duckdb", log_mib)
        print(
            f"log {r['log_mib']:.0f} MiB ({r['rows']:,} rows): checkpoint {r['checkpoint_s'] * 1000:.0f} ms;"
            f" longest read begun during it {r['longest_read_during_ms']:.0f} ms ({r['reads_during']} reads),"
            f" outside it {r['longest_read_outside_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
