"""Rebuild one topic through each catch-up path and prove the tables equal.

    python -m bench.equal --bootstrap-servers HOST:PORT --topic TOPIC [--workdir DIR]
    python -m bench.equal --events 100000      # a fresh demo topic on the broker `make bench` would pick

The topic is folded into fresh files, as `chat-analytics rebuild` does, once per path of
docs/replay.md: parser processes shipping prepared batches (the fast parse and the models: "models");
readers shipping raw Arrow columns that the writer checks and shapes in DuckDB ("columns",
projector/sqlprepare.py); and
the same SQL run in each reader instead ("columns-in-readers"). Then, per table of the read model, the
rows of the models file that another lacks and the other way round (EXCEPT ALL both ways, leaving out
the three columns that record when or in which order the projector saw something:
projector/snapshot.py). Every count must be 0; the exit code is 1 otherwise. Each rebuild's time is
printed too, with the raw read of the same topic (bench/raw_read.py) as the ceiling: on a busy machine
only their ratio means anything.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import orjson

from bench import children
from bench.traffic import given_or_demo_topic, topic_arguments
from projector import conversations, forget, pipeline
from projector.rebuild import checkpoint_and_close, fold_to, log_bounds, rebuild_source, settle_conversations
from projector.snapshot import EXCLUDED_COLUMNS
from schemas.readmodel import PROJECTION_TABLES, connect
from schemas.settings import Settings

# name: (columns, SQL in the readers): see docs/replay.md
PATHS = {"models": (False, False), "columns": (True, False), "columns-in-readers": (True, True)}


def rebuild(bootstrap_servers: str, topic: str, path: Path, *, columns: bool, in_readers: bool = False) -> float:
    """Folds the whole topic into a fresh file at `path` through one path; returns the seconds it took."""
    pipeline.IN_READERS = in_readers
    bounds = log_bounds(bootstrap_servers, topic)
    con = connect(path)
    forget.set_watermark(con, forget.horizon(Settings.from_env().retention_days))
    conversations.defer(con)  # as `chat-analytics rebuild` does
    started = time.monotonic()
    try:
        fold_to(con, source=rebuild_source(bootstrap_servers, topic), bounds=bounds, columns=columns)
        settle_conversations(con)
    finally:
        checkpoint_and_close(con)
    return time.monotonic() - started


def except_all(left: Path, right: Path) -> list[tuple[str, int, int, int, int]]:
    """Per projection table: (table, rows left, rows right, left EXCEPT ALL right, right EXCEPT ALL left)."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{left}' AS l (READ_ONLY)")
    con.execute(f"ATTACH '{right}' AS r (READ_ONLY)")
    out = []
    try:
        for table in PROJECTION_TABLES:
            names = con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'l' AND table_name = ?"
                " ORDER BY column_index",
                [table],
            ).fetchall()
            skip = EXCLUDED_COLUMNS.get(table, frozenset())
            # Table and column names come from the read model's own schema.
            cols = ", ".join(f'"{n}"' for (n,) in names if n not in skip)
            count = f"SELECT count(*) FROM (SELECT {cols} FROM {{}}.{table} EXCEPT ALL SELECT {cols} FROM {{}}.{table})"
            ((only_left,),) = con.execute(count.format("l", "r")).fetchall()
            ((only_right,),) = con.execute(count.format("r", "l")).fetchall()
            ((rows_left,),) = con.execute(f"SELECT count(*) FROM l.{table}").fetchall()
            ((rows_right,),) = con.execute(f"SELECT count(*) FROM r.{table}").fetchall()
            out.append((table, rows_left, rows_right, only_left, only_right))
    finally:
        con.close()
    return out


def raw_read(bootstrap_servers: str, topic: str) -> dict[str, float]:
    done = subprocess.run(
        children.python_module("bench.raw_read", bootstrap_servers, topic),
        capture_output=True,
        check=True,
        cwd=str(children.REPO_ROOT),
    )
    return orjson.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.equal", description=__doc__.split("\n\n")[0])
    topic_arguments(parser, 100_000, "rebuild")
    args = parser.parse_args(argv)
    with given_or_demo_topic(args.bootstrap_servers, args.topic, args.events, "bench-equal") as (servers, topic):
        return _compare(args, servers, topic)


def _compare(args: argparse.Namespace, bootstrap_servers: str, topic: str) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-equal-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        ceiling = raw_read(bootstrap_servers, topic)
        print(f"raw read: {ceiling['events']:,} events in {ceiling['seconds']:.1f} s", flush=True)
        files = {}
        for name, (columns, in_readers) in PATHS.items():
            files[name] = workdir / f"{name}.duckdb"
            files[name].unlink(missing_ok=True)
            seconds = rebuild(bootstrap_servers, topic, files[name], columns=columns, in_readers=in_readers)
            rate = ceiling["events"] / seconds if seconds else 0.0
            ratio = seconds and ceiling["seconds"] / seconds
            print(f"rebuild ({name}): {seconds:.1f} s, {rate:,.0f} events/s, {ratio:.2f}x the raw read", flush=True)
        compared = {name: except_all(files["models"], files[name]) for name in PATHS if name != "models"}
    equal = True
    for name, rows in compared.items():
        print(f"\nmodels against {name}")
        print(f"{'table':<24} {'models':>10} {name:>18} {'models-' + name:>26} {name + '-models':>26}")
        for table, left, right, only_left, only_right in rows:
            print(f"{table:<24} {left:>10,} {right:>18,} {only_left:>26,} {only_right:>26,}")
        equal = equal and all(a == b == 0 for _, _, _, a, b in rows)
    print("equal: every table 0/0" if equal else "NOT EQUAL: see the counts above")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
