"""The HTTP load driver, run as its own process so that it does not share the server's interpreter:
N keep-alive connections per endpoint for a fixed time. Prints one JSON object with the figures per
endpoint.

    python -m bench.load SPEC.json

SPEC: {"host", "port", "token", "connections", "seconds", "warmup_seconds", "server_pid" (optional: one
       pid, or a list of them when the server is several process trees, as a web server and its
       database are), "rate" (optional), "endpoints": [{"name": ..., "paths": [...]}, ...]}

Two ways to load the server:
- closed loop (no "rate"): each connection sends its next request as soon as the previous response
  is read. This finds the saturation throughput, and its latencies include the queueing behind the
  other connections' requests that such a load always builds up.
- fixed rate ("rate": requests/s over all connections): requests are due on a fixed schedule, spread
  over the connections in turn, whatever the answers do. A request's latency is counted from when it
  was due, not from when it could be sent: a server that falls behind shows it in the latencies
  instead of quietly lowering the rate it is offered (no coordinated omission).

Besides latencies, each endpoint reports the CPU the server process and this driver used while it was
measured (in cores): on a small machine the two share the CPU, and a server near one core is bound
by its interpreter, not by the machine.

A minimal HTTP/1.1 client on asyncio streams rather than httpx: on a 2-core machine the client's
own CPU time is taken from the server, and httpx costs several times more per request. It runs on uvloop
when installed (it comes with uvicorn[standard]): its timers fire closer to when a request is due.
"""

from __future__ import annotations

import asyncio
import itertools
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.children import tree_cpu_s
from bench.stats import rate, summary_ms


class HttpError(Exception):
    pass


@dataclass
class Tally:
    """What the connections of one endpoint observed: the latency of each answer (to its last byte),
    of its first bytes (the status line and headers: a streamed body is still being computed after
    them), its size, and the failures."""

    latencies: list[float] = field(default_factory=list)
    first_bytes: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # Warm-up answers, not counted: when none of the measured window's requests finishes (each answer
    # slower than the window, as a heavy whole list under 8 connections can be), they show how slow.
    warmup_latencies: list[float] = field(default_factory=list)


async def _read_response(
    reader: asyncio.StreamReader, head_at: list[float] | None = None, closing: list[bool] | None = None
) -> tuple[int, bytes]:
    """The status and body of one response; `closing` gets whether the server closes the connection after
    it (`Connection: close`: a server without keep-alive, as gunicorn's sync workers are)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if head_at is not None:
        head_at.append(time.perf_counter())
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and closing is not None:
            closing.append(value.strip().lower() == b"close")
    if chunked:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    if length is None:
        raise HttpError("response without Content-Length or chunked encoding")
    return status, await reader.readexactly(length)


def _request(host: str, port: int, token: str, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Token {token}\r\n"
        "Accept: application/json\r\nUser-Agent: chat-analytics-bench\r\n\r\n"
    ).encode()


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    start_at: int,
    measure_from: float,
    until: float,
    tally: Tally,
    schedule: Iterator[float] | None = None,
) -> None:
    """Closed loop, or with `schedule` (the moments this connection's requests are due) a fixed rate."""
    reader, writer = await asyncio.open_connection(host, port)
    i = start_at
    try:
        while True:
            now = time.perf_counter()
            if schedule is not None:
                due = next(schedule)
                if due >= until:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                # Late (the previous answer took longer than the interval): the wait counts as latency.
                now = due
            if now >= until:
                return
            request = requests[i % len(requests)]
            i += 1
            head_at: list[float] = []
            closing: list[bool] = []
            try:
                if writer.is_closing():
                    # The server closed the connection after its last answer: this request pays for a new one.
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                status, body = await _read_response(reader, head_at, closing)
                if any(closing):
                    writer.close()
            except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
                tally.failures.append(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            done = time.perf_counter()
            if now < measure_from:
                tally.warmup_latencies.append(done - now)
                continue  # warm-up: caches, the threadpool and DuckDB's buffers
            tally.latencies.append(done - now)
            tally.first_bytes.append(head_at[0] - now)
            tally.sizes.append(len(body))
            if status != 200:
                tally.failures.append(f"HTTP {status}: {body[:200].decode(errors='replace')}")
    finally:
        writer.close()


# The answer cache's hits and misses, then the row cache's (api/row_cache.py).
CACHE_COUNTERS = (
    b"chat_analytics_answer_cache_hits_total",
    b"chat_analytics_answer_cache_misses_total",
    b"chat_analytics_row_cache_hits_total",
    b"chat_analytics_row_cache_misses_total",
)


async def _cache_counts(host: str, port: int) -> tuple[int, ...] | None:
    """The server's cache counters so far (`CACHE_COUNTERS`, from /metrics); None when it does not say."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            status, body = await _read_response(reader)
        finally:
            writer.close()
    except (OSError, asyncio.IncompleteReadError, HttpError, ValueError):
        return None
    found = {}
    for line in body.splitlines():
        name, _, value = line.partition(b" ")
        if status == 200 and name in CACHE_COUNTERS:
            found[name] = int(float(value))
    if len(found) != len(CACHE_COUNTERS):
        return None
    return tuple(found[name] for name in CACHE_COUNTERS)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fixed_rate_schedules(start: float, rate: float, connections: int) -> list[Iterator[float]]:
    """When each connection's requests are due: one evenly spaced sequence at `rate`, connection c
    taking its requests c, c + N, c + 2N, ... (each generator gets its own `first`: a generator
    expression over the loop variable would see only its last value and send all N at once)."""

    def due(first: float, interval: float) -> Iterator[float]:
        for k in itertools.count():
            yield first + k * interval

    return [due(start + (c + 1) / rate, connections / rate) for c in range(connections)]


def _servers_cpu_s(pids: int | list[int] | None) -> float | None:
    """The CPU seconds used so far by the process trees of `pids` (None where one cannot be read)."""
    if pids is None:
        return None
    used = [tree_cpu_s(pid) for pid in ([pids] if isinstance(pids, int) else pids)]
    return None if any(u is None for u in used) else sum(u for u in used if u is not None)


async def _at(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.perf_counter()))


async def drive(spec: dict[str, Any], endpoint: dict[str, Any]) -> dict[str, Any]:
    host, port, token = spec["host"], int(spec["port"]), spec["token"]
    requests = [_request(host, port, token, path) for path in endpoint["paths"]]
    connections = int(spec["connections"])
    tally = Tally()
    start = time.perf_counter()
    measure_from = start + float(spec["warmup_seconds"])
    until = measure_from + float(spec["seconds"])
    # Connections start at different requests so that they do not all ask for the same row at once.
    step = max(1, len(requests) // connections)
    offered = spec.get("rate")
    schedules: list[Iterator[float] | None] = [None] * connections
    if offered:
        schedules = list(fixed_rate_schedules(start, float(offered), connections))
    server_pid = spec.get("server_pid")
    cpu: dict[str, float | None] = {}
    cache: dict[str, tuple[int, ...] | None] = {}

    async def note_cpu() -> None:
        await _at(measure_from)
        cpu["server"], cpu["driver"] = _servers_cpu_s(server_pid), _own_cpu_s()
        cache["before"] = await _cache_counts(host, port)
        await _at(until)
        server_after = _servers_cpu_s(server_pid)
        cpu["server"] = None if server_after is None or cpu["server"] is None else server_after - cpu["server"]
        cpu["driver"] = _own_cpu_s() - (cpu["driver"] or 0.0)
        cache["after"] = await _cache_counts(host, port)

    await asyncio.gather(
        note_cpu(),
        *(
            _connection(host, port, requests, c * step, measure_from, until, tally, schedules[c])
            for c in range(connections)
        ),
    )
    measured = time.perf_counter() - measure_from
    before, after = cache.get("before"), cache.get("after")
    # Answers the server took from its snapshot cache while this endpoint was measured (requests in
    # flight at either end of the window may be counted in or out).
    hits = misses = row_hits = row_misses = None
    if before is not None and after is not None:
        hits, misses, row_hits, row_misses = (a - b for a, b in zip(after, before, strict=True))
    # CLOCK_MONOTONIC is one clock for every process of the machine: the caller lines its own
    # observations (checkpoints) up with this window.
    shift = time.monotonic() - time.perf_counter()
    return {
        "window_monotonic": [round(measure_from + shift, 3), round(until + shift, 3)],
        "name": endpoint["name"],
        "example": endpoint["paths"][0],
        "distinct_requests": len(requests),
        "connections": connections,
        "offered_rate": float(offered) if offered else None,
        "seconds": round(measured, 3),
        "requests_per_s": round(rate(len(tally.latencies), measured), 1),
        "errors": len(tally.failures),
        "first_error": tally.failures[0] if tally.failures else None,
        "mean_response_bytes": round(sum(tally.sizes) / len(tally.sizes)) if tally.sizes else None,
        "cache_hits": hits,
        "cache_misses": misses,
        "row_cache_hits": row_hits,
        "row_cache_misses": row_misses,
        "server_cpu_cores": None if cpu.get("server") is None else round(cpu["server"] / float(spec["seconds"]), 2),
        "driver_cpu_cores": None if cpu.get("driver") is None else round(cpu["driver"] / float(spec["seconds"]), 2),
        **summary_ms(tally.latencies),
        "first_byte": summary_ms(tally.first_bytes),
        "warmup_max_ms": round(max(tally.warmup_latencies) * 1000, 1) if tally.warmup_latencies else None,
    }


async def run(spec: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for endpoint in spec["endpoints"]:
        result = await drive(spec, endpoint)
        print(
            f"  {result['name']:<28} p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
            f"{result['requests_per_s']} req/s  errors {result['errors']}  "
            f"server CPU {result['server_cpu_cores']} cores",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    return results


def main() -> int:
    with open(sys.argv[1], "rb") as spec_file:
        spec = orjson.loads(spec_file.read())
    try:
        import uvloop  # with uvicorn[standard]; its timers wake closer to when a request is due

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    results = runner(run(spec))
    sys.stdout.buffer.write(orjson.dumps(results) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
