"""uvicorn's HTTP protocol with two limits it lacks: a deadline for a request's headers, and a size.

uvicorn closes an idle keep-alive connection, but a client that sends its request line and then one
header byte every few seconds (slow loris) holds its connection, and a worker's file descriptor and
buffers, for as long as it likes; and the httptools parser takes headers of any size. Here a
connection whose next request's headers are not complete within `HEADER_TIMEOUT_S` of the connection
(or of the previous response) is closed, and headers (request line included) over `MAX_HEADER_BYTES`
get a 400 and a closed connection. Bodies have their own limits where they are read (the ingest
endpoint reads at most 1 MiB, within a deadline).

And an answer of known length leaves in one write: uvicorn writes the status line and headers as soon
as the application starts its response, and the body on its own next. A replica killed between the
two (docs/scaling.md: the load balancer's test kills one under load) leaves the client with headers
and no body, which HAProxy has already passed on and cannot retry; one write reaches it whole or not
at all, and "not at all" is an empty response HAProxy retries on another replica. Streamed answers
(chunked) still send their headers first, since their first bytes are the point.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 32 * 1024


class HeadersTooLarge(ValueError):
    pass


class OneWriteTransport:
    """A connection's transport that holds a response's status line and headers when they announce a
    Content-Length, and writes them with the first body bytes (or on close, or when the response is
    complete: a HEAD answer has no body). Everything else goes straight to `transport`."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n") and b"\r\ncontent-length: " in data:
            self._held = data  # uvicorn writes header names in lower case
            return
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s = HEADER_TIMEOUT_S
    max_header_bytes = MAX_HEADER_BYTES

    _headers_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Every write of this connection goes through it (uvicorn's flow control keeps the real one).
        self.transport = OneWriteTransport(transport)  # type: ignore[assignment]
        self._arm_headers_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_headers_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._headers_timer is None:  # a pipelined request: its own deadline
            self._arm_headers_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_headers_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a HEAD answer's headers, before the next answer
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_headers_timer()

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            # Raised inside the parser's callback: uvicorn answers 400 and closes the connection.
            raise HeadersTooLarge(f"request headers over {self.max_header_bytes} bytes")

    def _arm_headers_timer(self) -> None:
        self._cancel_headers_timer()
        self._headers_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _cancel_headers_timer(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_timed_out(self) -> None:
        self._headers_timer = None
        if not self.transport.is_closing():
            self.transport.close()
