"""The API benchmark's fixed-rate load: requests must be spread evenly, not sent in bursts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from itertools import islice
from typing import Any

from bench.load import drive, fixed_rate_schedules
from bench.report import _endpoint_rows

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _drive_against(handler: Handler, name: str, warmup_s: float) -> dict[str, Any]:
    """`bench.load.drive`, 2 connections for 0.3 s after `warmup_s`, against a local server run by `handler`."""

    async def measure() -> dict[str, Any]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        spec = {"host": "127.0.0.1", "port": port, "token": "t", "connections": 2, "seconds": 0.3,
                "warmup_seconds": warmup_s}  # fmt: skip
        async with server:
            return await drive(spec, {"name": name, "paths": ["/a/", "/b/"]})

    return asyncio.run(measure())


def test_fixed_rate_requests_are_due_one_interval_apart_across_all_connections() -> None:
    schedules = fixed_rate_schedules(100.0, rate=50.0, connections=8)
    due = sorted(t for schedule in schedules for t in islice(schedule, 5))
    assert len(due) == 40
    gaps = [b - a for a, b in zip(due, due[1:], strict=False)]
    # 50 requests/s: one request every 20 ms, never two at the same moment on different connections.
    assert all(abs(gap - 0.02) < 1e-9 for gap in gaps)
    assert abs(due[0] - 100.02) < 1e-9


def test_each_connection_waits_for_its_turn_in_the_sequence() -> None:
    schedules = fixed_rate_schedules(0.0, rate=10.0, connections=4)
    firsts = [next(schedule) for schedule in schedules]
    seconds = [next(schedule) for schedule in schedules]
    assert all(abs(first - expected) < 1e-9 for first, expected in zip(firsts, [0.1, 0.2, 0.3, 0.4], strict=True))
    assert all(abs((b - a) - 0.4) < 1e-9 for a, b in zip(firsts, seconds, strict=True))


def test_a_row_whose_every_answer_outlasts_the_window_says_so_with_the_warm_up_figure() -> None:
    """Last run's heaviest-transcript (miss) row printed only dashes: each answer took longer than the
    window, so no measured request finished. The report must say that, and how slow the answers were.

    The first requests must be sent inside the warm-up, so the warm-up is long beside what opening a
    local connection can take on a busy CI machine (a 50 ms warm-up once let one request start inside
    the window), and each answer outlasts warm-up and window together."""
    delay_s = 1.0

    async def slow_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(delay_s)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                await writer.drain()

    result = _drive_against(slow_server, "slow whole list", warmup_s=0.5)
    assert result["requests_per_s"] == 0 and result["p50_ms"] is None
    assert result["warmup_max_ms"] >= delay_s * 1000
    result |= {"target_p99_ms": None, "met": None}
    [row] = _endpoint_rows([result])
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "none in 0.3 s"
    assert cells[2].startswith("> 300 (warm-up up to ") and "—" not in cells[2]


def test_a_server_that_closes_each_connection_is_measured_without_failures() -> None:
    """gunicorn's sync workers (the reference's stack) answer `Connection: close` and close the socket:
    the driver must open a new connection for the next request, not count a failure for every other one."""

    async def closing_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n[]")
            await writer.drain()
        writer.close()

    result = _drive_against(closing_server, "closing", warmup_s=0.1)
    assert result["errors"] == 0, result["first_error"]
    assert result["requests_per_s"] > 10  # many answers, each on a connection of its own
