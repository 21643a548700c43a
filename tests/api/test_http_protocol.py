"""An answer of known length reaches the client whole or not at all (api.http_protocol.OneWriteTransport):
its headers never arrive before its body, so a server killed in between leaves nothing half-sent that a
load balancer could not retry. Streamed answers still send their headers first. A real uvicorn server with
the project's protocol on a loopback socket, and a raw socket as the client."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from api.http_protocol import GuardedHttpToolsProtocol
from loopback.ports import free_port

PAUSE_S = 1.0  # between the app's response start and its body
BODY = b'{"answer": 42}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/streamed":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await asyncio.sleep(PAUSE_S)
        await send({"type": "http.response.body", "body": BODY, "more_body": False})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await asyncio.sleep(PAUSE_S)
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else BODY})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    free = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=free, http=GuardedHttpToolsProtocol, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    yield free
    server.should_exit = True
    thread.join(30)


def _ask(port: int, method: str, path: str) -> tuple[bytes, bytes]:
    """What arrived before the app's pause was over, and the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        sock.settimeout(PAUSE_S / 2)
        try:
            early = sock.recv(65536)
        except TimeoutError:
            early = b""
        sock.settimeout(30)
        whole = early
        while chunk := sock.recv(65536):
            whole += chunk
    return early, whole


def test_an_answer_of_known_length_arrives_with_its_body_never_its_headers_alone(port: int) -> None:
    early, whole = _ask(port, "GET", "/")
    assert early == b"" or early == whole, early
    assert whole.startswith(b"HTTP/1.1 200 OK\r\n")
    assert whole.endswith(b"\r\n\r\n" + BODY)


def test_a_head_answer_gets_its_headers(port: int) -> None:
    _, whole = _ask(port, "HEAD", "/")
    assert whole.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"content-length: {len(BODY)}\r\n".encode() in whole
    assert whole.endswith(b"\r\n\r\n")


def test_a_streamed_answer_still_sends_its_headers_first(port: int) -> None:
    early, whole = _ask(port, "GET", "/streamed")
    assert early.startswith(b"HTTP/1.1 200 OK\r\n") and b"transfer-encoding: chunked" in early
    assert BODY not in early
    assert BODY in whole
