"""The HTTP load driver, run as its own process so that it does not share the server's interpreter:
N keep-alive connections per endpoint, each sending its next request as soon as the previous
response is read, for a fixed time. Prints one JSON object with the figures per endpoint.

    python -m bench.load SPEC.json

SPEC: {"host", "port", "token", "connections", "seconds", "warmup_seconds",
       "endpoints": [{"name": ..., "paths": [...]}, ...]}

A minimal HTTP/1.1 client on asyncio streams rather than httpx: on a 2-core machine the client's
own CPU time is taken from the server, and httpx costs several times more per request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from bench.stats import rate, summary_ms


class HttpError(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
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
    latencies: list[float],
    failures: list[str],
    response_bytes: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = start_at
    try:
        while True:
            now = time.perf_counter()
            if now >= until:
                return
            request = requests[i % len(requests)]
            i += 1
            try:
                writer.write(request)
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            done = time.perf_counter()
            if now < measure_from:
                continue  # warm-up: caches, the threadpool and DuckDB's buffers
            latencies.append(done - now)
            response_bytes.append(len(body))
            if status != 200:
                failures.append(f"HTTP {status}: {body[:200].decode(errors='replace')}")
    finally:
        writer.close()


async def drive(spec: dict[str, Any], endpoint: dict[str, Any]) -> dict[str, Any]:
    host, port, token = spec["host"], int(spec["port"]), spec["token"]
    requests = [_request(host, port, token, path) for path in endpoint["paths"]]
    connections = int(spec["connections"])
    latencies: list[float] = []
    failures: list[str] = []
    sizes: list[int] = []
    start = time.perf_counter()
    measure_from = start + float(spec["warmup_seconds"])
    until = measure_from + float(spec["seconds"])
    # Connections start at different requests so that they do not all ask for the same row at once.
    step = max(1, len(requests) // connections)
    await asyncio.gather(
        *(
            _connection(host, port, requests, c * step, measure_from, until, latencies, failures, sizes)
            for c in range(connections)
        )
    )
    measured = time.perf_counter() - measure_from
    return {
        "name": endpoint["name"],
        "example": endpoint["paths"][0],
        "distinct_requests": len(requests),
        "connections": connections,
        "seconds": round(measured, 3),
        "requests_per_s": round(rate(len(latencies), measured), 1),
        "errors": len(failures),
        "first_error": failures[0] if failures else None,
        "mean_response_bytes": round(sum(sizes) / len(sizes)) if sizes else None,
        **summary_ms(latencies),
    }


async def run(spec: dict[str, Any]) -> list[dict[str, Any]]:
    results = []
    for endpoint in spec["endpoints"]:
        result = await drive(spec, endpoint)
        print(
            f"  {result['name']:<28} p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
            f"{result['requests_per_s']} req/s  errors {result['errors']}",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    return results


def main() -> int:
    with open(sys.argv[1], "rb") as spec_file:
        spec = orjson.loads(spec_file.read())
    results = asyncio.run(run(spec))
    sys.stdout.buffer.write(orjson.dumps(results) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
