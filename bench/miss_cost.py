"""The cost of each cache-miss request of the API benchmark, measured in-process and one at a time.

`python -m bench.miss_cost --db FILE` opens FILE as `chat-analytics serve --no-projector` would serve it
(writable, so with the serving indexes; FILE is written: use a copy), builds the application, and sends
it, through ASGI and with no network, the first requests of each cache-miss row of the API benchmark
(`bench.api_latency.miss_endpoints`: every request a key the answer cache has not seen). For each
request it takes the process CPU time (DuckDB's threads included) and the wall time, and prints per
row the median and the 90th percentile of both. Nothing else runs meanwhile, so the CPU figure is what
one such request costs the machine; the benchmark's closed-loop latencies are this times the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from bench.api_latency import TOKEN, miss_endpoints, pick_samples
from serving.parsed import text_of

# The rows measured by default: the paginated reads and aggregates of issues 11 and 14 (the whole
# lists and the conversations rows take seconds each; name them with --row to measure them).
DEFAULT_ROWS = (
    "list (miss)",
    "list ?severity (miss)",
    "list ?user_slug (miss)",
    "list ?is_flagged=true (miss)",
    "retrieve (miss)",
    "by-session/{id} (miss)",
    "by-user/{slug} ?page_size=50 (miss)",
    "kpi (miss)",
    "kpi ?created_from&created_to (miss)",
    "feedbacks list ?submitted_to (miss)",
    "kpi ?total_tokens_min (miss)",
)


class _TimedCursor:
    """A cursor that adds the CPU time of each statement (its execute and its fetch) to `log`."""

    def __init__(self, cur: Any, log: list[list[Any]]) -> None:
        self._cur, self._log = cur, log

    def execute(self, query: str | duckdb.Statement, parameters: Any = None) -> _TimedCursor:
        start = time.process_time()
        self._cur.execute(query, parameters)
        self._log.append([" ".join(text_of(query).split()), time.process_time() - start])
        return self

    def _fetch(self, name: str) -> Any:
        start = time.process_time()
        result = getattr(self._cur, name)()
        self._log[-1][1] += time.process_time() - start
        return result

    def fetchone(self) -> Any:
        return self._fetch("fetchone")

    def fetchall(self) -> Any:
        return self._fetch("fetchall")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def time_statements(handle: Any, log: list[list[Any]]) -> None:
    """Makes every read lease of `handle` hand out a `_TimedCursor` writing to `log` (each statement's
    text and CPU seconds): also how tests count the statements a request runs."""
    reading = handle.reading

    @contextlib.contextmanager
    def timed() -> Iterator[Any]:
        with reading() as cur:
            yield _TimedCursor(cur, log)

    handle.reading = timed


def _app(db: Path) -> Any:
    from api.app import create_app
    from auth.tokens import TokenStore
    from schemas.readmodel import connect
    from serving.handle import ReadModelHandle

    handle = ReadModelHandle(connect(db), db)
    return create_app(handle, tokens=TokenStore([(TOKEN, "staff")]), min_position_wait_s=0.0)


async def _get(app: Any, path: str) -> tuple[int, bytes]:
    """One GET of `path` through the ASGI application; its status and body."""
    route, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"authorization", f"Token {TOKEN}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("localhost", 80),
    }
    sent = False
    status, body = 0, bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # a client that stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    db: Path, rows: list[str], requests: int, warmup: int, *, statements: bool = False
) -> list[dict[str, Any]]:
    samples = pick_samples(db)  # before the writable connection: one process, one configuration per file
    today = datetime.now(UTC)
    planned = {row["name"]: row["paths"] for row in miss_endpoints(samples, today)}
    unknown = [name for name in rows if name not in planned]
    if unknown:
        raise SystemExit(f"no such miss row: {unknown}; rows: {list(planned)}")
    app = _app(db)
    log: list[list[Any]] = []
    if statements:
        time_statements(app.state.context.handle, log)
    try:
        # Warm the file's pages and the interpreter with other keys than the measured ones.
        for name in rows:
            for path in planned[name][-warmup:] if warmup else []:
                await _get(app, path)
        return await _measure_rows(app, planned, rows, requests, log)
    finally:
        app.state.context.handle.connection.close()


async def _measure_rows(
    app: Any, planned: dict[str, list[str]], rows: list[str], requests: int, log: list[list[Any]]
) -> list[dict[str, Any]]:
    results = []
    for name in rows:
        cpu_ms, wall_ms, sizes = [], [], []
        by_statement: dict[str, list[float]] = {}
        for path in planned[name][:requests]:
            log.clear()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            status, body = await _get(app, path)
            cpu_ms.append((time.process_time() - cpu0) * 1000)
            wall_ms.append((time.perf_counter() - wall0) * 1000)
            if status != 200:
                raise SystemExit(f"{name}: {path} answered {status}: {body[:200]!r}")
            sizes.append(len(body))
            for query, cpu in log:
                by_statement.setdefault(query, []).append(cpu * 1000)
        results.append(
            {
                "name": name,
                "requests": len(cpu_ms),
                "cpu_p50_ms": statistics.median(cpu_ms),
                "cpu_p90_ms": _quantile(cpu_ms, 0.9),
                "wall_p50_ms": statistics.median(wall_ms),
                "wall_p90_ms": _quantile(wall_ms, 0.9),
                "body_bytes": int(statistics.median(sizes)),
                # Each statement's median CPU, and how many times per request it ran.
                "statements": [
                    (query, statistics.median(cpu), len(cpu) / len(cpu_ms)) for query, cpu in by_statement.items()
                ],
            }
        )
    return results


def _short(query: str, width: int = 130) -> str:
    """A statement on one line: its start, then from its first FROM past the start (which table)."""
    if len(query) <= width:
        return query
    start = query[: width // 2]
    at = query.find(" FROM ", width // 2)
    return start + " ..." + (query[at : at + width // 2] if at >= 0 else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.miss_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a read-model file (written: pass a copy)")
    parser.add_argument("--row", action="append", help="a miss row's name, as the benchmark names it (repeatable)")
    parser.add_argument("--requests", type=int, default=30, help="requests measured per row (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="requests per row sent first, not measured")
    parser.add_argument(
        "--statements", action="store_true", help="also the CPU of each SQL statement the requests ran (median)"
    )
    args = parser.parse_args(argv)
    rows = args.row or list(DEFAULT_ROWS)
    results = asyncio.run(measure(args.db, rows, args.requests, args.warmup, statements=args.statements))
    load = os.getloadavg()
    print(f"# {args.db}: {args.requests} requests per row, one at a time; load average {load[0]:.2f} {load[1]:.2f}")
    print(f"| {'row':<40} | CPU p50 ms | CPU p90 ms | wall p50 ms | wall p90 ms | body bytes |")
    print(f"|{'-' * 42}|-----------:|-----------:|------------:|------------:|-----------:|")
    for r in results:
        print(
            f"| {r['name']:<40} | {r['cpu_p50_ms']:10.1f} | {r['cpu_p90_ms']:10.1f} | {r['wall_p50_ms']:11.1f}"
            f" | {r['wall_p90_ms']:11.1f} | {r['body_bytes']:10,} |"
        )
    for r in results if args.statements else []:
        print(f"\n{r['name']}: CPU p50 {r['cpu_p50_ms']:.1f} ms per request, of which")
        for query, cpu, per_request in r["statements"]:
            print(f"  {cpu:6.2f} ms x{per_request:g}  {_short(query)}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
