"""The floor of a rebuild, stage by stage: the CPU time per event of each stage of the default catch-up
path (docs/replay.md), each run alone in this one process, so that no stage waits for another and the
figures add up to what a rebuild needs of the machine's cores.

    python -m bench.stages --events 200000                     # a fresh demo topic on the broker `make bench` picks
    python -m bench.stages --bootstrap-servers HOST:PORT --topic TOPIC

The stages, in the order a rebuild runs them:

1. fetch: the projector's Kafka reader (`TopicReader.read_batch`, the readers' batch size) reading the whole
   topic into records, kafka-python's network thread included;
2. prepare: `prepare.prepare` on batches of `pipeline.SHIP_RECORDS` records, what a reader does with a fetch
   (the fast parse or the Pydantic models, and shaping); then pickling each prepared batch, as a reader ships it;
3. receive: unpickling the shipped batches and merging them into the writer's transactions
   (`PreparedBatch.from_shipped`, `merge_prepared`), as the writer receives them;
4. fold: `apply.apply_prepared` of each transaction of `CATCH_UP_BATCH_SIZE` records into a fresh file
   (with the checkpoint threshold and memory limit a rebuild folds with, its conversations deferred), then
   what ends a rebuild: the conversations computed (`rebuild.settle_conversations`) and the `CHECKPOINT`;
   within it the CPU of its DuckDB statements alone (every `execute`, `sql` result, `register`, each commit,
   DuckDB's own threads included) and the Python around them.

Then the floor of any fold into these tables, what no design of the validation and the fold could leave out:

5. write: every row of the folded file's tables inserted again, from Arrow tables in memory, into a fresh
   file (same schema and indexes, same settings) in as many transactions as the fold had, then the
   `CHECKPOINT`: writing the finished rows, without lookups, updates or aggregates;
6. search terms: `fulltext.document_terms` of every turn (its JSON parsed beforehand, not counted), the one
   piece of shaping SQL cannot take here (the Snowball stemmer is Python's PyStemmer: DuckDB's `fts`
   extension would be a download);

and with the fetch those add up to the most events per second two cores could fold with validation,
duplicates, lookups and aggregates costing nothing. Then with the contract's checks too:

7. parse: `fastparse.parse_many` of every value alone (the models for what it leaves to them), the part
   of prepare that validates; the rest of prepare is shaping.

CPU is `time.process_time` (every thread of this process), so a busy machine stretches it less than it
stretches wall-clock rates; it still shares caches and memory bandwidth, so compare runs of one session.
Prints one line per stage in µs per event and a JSON line with the same figures.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from bench.traffic import given_or_demo_topic, topic_arguments
from projector import arrow_views, conversations, forget, pipeline
from projector.apply import apply_prepared
from projector.arrow_views import execute_with
from projector.consumer import TopicReader
from projector.gcpause import gc_paused
from projector.prepare import PARSE_CHUNK, PreparedBatch, merge_prepared, prepare
from projector.rebuild import (
    CATCH_UP_BATCH_SIZE,
    REBUILD_CHECKPOINT_THRESHOLD,
    REBUILD_MEMORY_LIMIT_MIB,
    log_bounds,
    rebuild_source,
    settle_conversations,
)
from projector.records import Record
from schemas import fastparse
from schemas.events import TURN_RECORDED
from schemas.fulltext import document_terms
from schemas.readmodel import OTHER_TABLES, TURN_TABLES, connect
from schemas.settings import Settings
from serving.parsed import text_of


class TimedConnection:
    """A DuckDB connection that adds up the process CPU time spent inside its calls (`cpu`): what the
    fold's statements cost, apart from the Python around them. Everything else is passed through."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.cpu = 0.0
        self.by_statement: Counter[str] = Counter()  # CPU seconds by the statement's first words
        self._last = ""

    def _timed(self, name: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return call(*args, **kwargs)
        finally:
            spent = time.process_time() - started
            self.cpu += spent
            self.by_statement[name] += spent

    def execute(self, sql: str | duckdb.Statement, *args: Any, **kwargs: Any) -> TimedConnection:
        self._last = _name(sql)
        self._timed(self._last, self._con.execute, sql, *args, **kwargs)
        return self  # so that `.fetchall()` after it is timed too, under the same statement

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._timed(self._last, self._con.fetchall)  # type: ignore[no-any-return]

    def sql(self, sql: str | duckdb.Statement, *args: Any, **kwargs: Any) -> _TimedRelation:
        name = _name(sql)
        return _TimedRelation(self, name, self._timed(name, self._con.sql, sql, *args, **kwargs))

    # The fold lends its Arrow tables through these (projector/arrow_views.py): run on the real connection,
    # where DuckDB finds the tables, and timed here.
    def execute_with(self, sql: str, params: Any = None, /, **tables: Any) -> TimedConnection:
        self._last = _name(sql)
        self._timed(self._last, arrow_views.execute_with, self._con, sql, params, **tables)
        return self

    def arrow_with(self, sql: str, params: Any = None, /, **tables: Any) -> Any:
        return self._timed(_name(sql), arrow_views.arrow_with, self._con, sql, params, **tables)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class _TimedRelation:
    def __init__(self, owner: TimedConnection, name: str, relation: Any) -> None:
        self._owner, self._name, self._relation = owner, name, relation

    def to_arrow_table(self) -> Any:
        return self._owner._timed(self._name, self._relation.to_arrow_table)

    def fetchall(self) -> Any:
        return self._owner._timed(self._name, self._relation.fetchall)


def _name(sql: str | duckdb.Statement) -> str:
    """A statement's name in the breakdown: its first 90 characters, blanks squeezed."""
    return " ".join(text_of(sql).split())[:90]


def fetch(bootstrap_servers: str, topic: str) -> tuple[list[Record], float]:
    """Every record of the topic through the projector's reader; returns them and the CPU seconds."""
    bounds = log_bounds(bootstrap_servers, topic)
    source = rebuild_source(bootstrap_servers, topic)
    source = replace(source, batch_size=min(source.batch_size, pipeline.SHIP_RECORDS))
    records: list[Record] = []
    started = time.process_time()
    reader = TopicReader(source)
    try:
        reader.assign(dict(bounds.starts), sorted(bounds.targets))
        read = dict(bounds.starts)
        while any(read.get(p, 0) < end for p, end in bounds.targets.items()):
            for r in reader.read_batch():
                if r.offset < bounds.targets.get(r.partition, 0):
                    records.append(r)
                    read[r.partition] = max(read.get(r.partition, 0), r.offset + 1)
    finally:
        reader.close()
    return records, time.process_time() - started


# Every table of the read model: the schema classifies each one (tests/projector/test_forget.py holds it to).
TABLES: tuple[str, ...] = (*TURN_TABLES, *OTHER_TABLES)


def search_terms_cpu(records: list[Record]) -> float:
    """CPU seconds of `document_terms` over the records' turns (their JSON parsed first, not counted)."""
    texts = []
    for r in records:
        try:
            event = orjson.loads(r.value)
            data = event["data"] if event.get("type") == TURN_RECORDED else None
            user_input, blocks = data["user_input"], data.get("assistant_blocks", [])
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
            continue  # not a turn, or one the fold dead-letters: not analysed
        if isinstance(user_input, str) and isinstance(blocks, list):
            texts.append((user_input, blocks))
    started = time.process_time()
    for user_input, blocks in texts:
        document_terms(user_input, blocks)
    return time.process_time() - started


def write_rows(folded: duckdb.DuckDBPyConnection, path: Path, transactions: int) -> float:
    """CPU seconds of writing every row of `folded`'s tables into a fresh file at `path` in `transactions`
    commits, then the `CHECKPOINT`: the floor of a fold into these tables (the rows alone, nothing looked up)."""
    parts: dict[str, list[pa.Table]] = {}
    for table in TABLES:
        rows = folded.sql(f'SELECT * FROM "{table}"').to_arrow_table()  # names from the schema
        step = max(1, -(-rows.num_rows // transactions))
        parts[table] = [rows.slice(i * step, step) for i in range(transactions)]
    con = connect(path)
    try:
        con.execute(f"SET checkpoint_threshold = '{REBUILD_CHECKPOINT_THRESHOLD}'")
        con.execute(f"SET memory_limit = '{REBUILD_MEMORY_LIMIT_MIB}MiB'")
        for table in TABLES:
            con.execute(f'DELETE FROM "{table}"')  # what `connect` seeded (meta's version)
        started = time.process_time()
        for i in range(transactions):
            con.execute("BEGIN")
            for table in TABLES:
                execute_with(con, f'INSERT INTO "{table}" BY NAME SELECT * FROM part', part=parts[table][i])
            con.execute("COMMIT")
        con.execute("CHECKPOINT")
        return time.process_time() - started
    finally:
        con.close()


def parse_cpu(records: list[Record]) -> float:
    """CPU seconds of parsing every value as prepare does (the fast parse, the models for the rest), alone."""
    values = [r.value for r in records]
    started = time.process_time()
    with gc_paused():  # as in prepare
        for start in range(0, len(values), PARSE_CHUNK):
            fastparse.parse_many(values[start : start + PARSE_CHUNK])
    return time.process_time() - started


def _chunks(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def measure(
    bootstrap_servers: str, topic: str, workdir: Path, *, threads: int | None = None, statements: int = 0
) -> dict[str, Any]:
    records, fetch_cpu = fetch(bootstrap_servers, topic)
    n = len(records)
    terms_cpu = search_terms_cpu(records)
    parse_only_cpu = parse_cpu(records)
    prepare_cpu = pickle_cpu = 0.0
    shipped: list[bytes] = []
    for chunk in _chunks(records, pipeline.SHIP_RECORDS):
        started = time.process_time()
        batch = prepare(chunk)
        prepare_cpu += time.process_time() - started
        started = time.process_time()
        shipped.append(pickle.dumps(batch.shipped(), protocol=pickle.HIGHEST_PROTOCOL))
        pickle_cpu += time.process_time() - started
    del records, batch
    path = workdir / f"stages-{uuid.uuid4().hex[:8]}.duckdb"
    floor_path = workdir / f"stages-floor-{uuid.uuid4().hex[:8]}.duckdb"
    con = connect(path)
    # What `rebuild.fold_to` sets while it folds: with DuckDB's default threshold (16 MiB) every
    # transaction of a rebuild would end in a checkpoint, and COMMIT alone took ~19 µs an event.
    con.execute(f"SET checkpoint_threshold = '{REBUILD_CHECKPOINT_THRESHOLD}'")
    con.execute(f"SET memory_limit = '{REBUILD_MEMORY_LIMIT_MIB}MiB'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    forget.set_watermark(con, forget.horizon(Settings.from_env().retention_days))
    conversations.defer(con)  # as `chat-analytics rebuild` folds
    timed = TimedConnection(con)
    receive_cpu = fold_cpu = 0.0
    per_transaction = max(1, CATCH_UP_BATCH_SIZE // pipeline.SHIP_RECORDS)
    transactions = -(-len(shipped) // per_transaction)
    try:
        for start in range(0, len(shipped), per_transaction):
            began = time.process_time()
            parts: list[PreparedBatch] = []
            first = 0
            for payload in shipped[start : start + per_transaction]:
                parts.append(PreparedBatch.from_shipped(pickle.loads(payload), first))
                first += len(parts[-1])
            merged = merge_prepared(parts, numbered=True)
            receive_cpu += time.process_time() - began
            began = time.process_time()
            apply_prepared(timed, merged)  # type: ignore[arg-type]
            fold_cpu += time.process_time() - began
        began = time.process_time()
        settle_conversations(timed)  # type: ignore[arg-type]
        timed.execute("CHECKPOINT")  # as a rebuild ends (`rebuild.checkpoint_and_close`)
        fold_cpu += time.process_time() - began
        floor_write_cpu = write_rows(con, floor_path, max(1, transactions))
    finally:
        con.close()
        for scratch in (path, floor_path):
            scratch.unlink(missing_ok=True)
            Path(f"{scratch}.wal").unlink(missing_ok=True)
    us = 1e6 / n if n else 0.0
    return {
        "events": n,
        "fetch_us": fetch_cpu * us,
        "prepare_us": prepare_cpu * us,
        "pickle_us": pickle_cpu * us,
        "receive_us": receive_cpu * us,
        "fold_us": fold_cpu * us,
        "fold_duckdb_us": timed.cpu * us,
        "fold_python_us": (fold_cpu - timed.cpu) * us,
        "write_floor_us": floor_write_cpu * us,
        "search_terms_us": terms_cpu * us,
        "parse_us": parse_only_cpu * us,
        "statements_us": {k: v * us for k, v in timed.by_statement.most_common(statements)},
    }


def report(figures: dict[str, Any]) -> str:
    readers = figures["fetch_us"] + figures["prepare_us"] + figures["pickle_us"]
    writer = figures["receive_us"] + figures["fold_us"]
    total = readers + writer
    lines = [
        f"{figures['events']:,} events, CPU time per event:",
        f"  fetch (Kafka reader)                 {figures['fetch_us']:6.1f} µs",
        f"  prepare (parse, shaping)             {figures['prepare_us']:6.1f} µs",
        f"  pickle (shipping)                    {figures['pickle_us']:6.1f} µs",
        f"  receive (unpickle, merge)            {figures['receive_us']:6.1f} µs",
        f"  fold                                 {figures['fold_us']:6.1f} µs",
        f"    of which DuckDB statements         {figures['fold_duckdb_us']:6.1f} µs",
        f"    of which Python around them        {figures['fold_python_us']:6.1f} µs",
        f"  readers {readers:.1f} µs + writer {writer:.1f} µs = {total:.1f} µs per event",
        f"  on 2 cores with perfect overlap: at most {2e6 / total:,.0f} events/s"
        f" (the writer alone, one core: at most {1e6 / writer:,.0f} events/s)",
    ]
    floor = figures["fetch_us"] + figures["write_floor_us"] + figures["search_terms_us"]
    checked = floor + figures["parse_us"]
    lines += [
        "  the floor of any fold into these tables:",
        f"    fetch (above)                        {figures['fetch_us']:6.1f} µs",
        f"    write the finished rows              {figures['write_floor_us']:6.1f} µs",
        f"    search terms (PyStemmer)             {figures['search_terms_us']:6.1f} µs",
        f"    = {floor:.1f} µs per event: at most {2e6 / floor:,.0f} events/s on 2 cores with perfect overlap,"
        f" with validation, duplicates, lookups and aggregates free",
        f"    + the contract's checks (parse alone) {figures['parse_us']:6.1f} µs",
        f"    = {checked:.1f} µs per event: at most {2e6 / checked:,.0f} events/s on 2 cores with perfect overlap,"
        f" with duplicates, lookups and aggregates free",
    ]
    if figures["statements_us"]:
        lines.append("  the fold's costliest DuckDB statements (with fetching their results):")
        lines += [f"    {us:6.2f} µs  {name}" for name, us in figures["statements_us"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    topic_arguments(parser, 200_000, "measure")
    parser.add_argument("--threads", type=int, help="DuckDB threads of the writer's connection (default: DuckDB's)")
    parser.add_argument(
        "--statements", type=int, default=12, help="the fold's costliest statements to list (default 12)"
    )
    args = parser.parse_args(argv)
    with (
        given_or_demo_topic(args.bootstrap_servers, args.topic, args.events, "bench-stages") as (servers, topic),
        tempfile.TemporaryDirectory(prefix="bench-stages-") as scratch,
    ):
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        figures = measure(servers, topic, workdir, threads=args.threads, statements=args.statements)
    print(report(figures))
    print(orjson.dumps(figures).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
