"""Fault 9: a client that stops reading a long streamed answer (a CSV export over a slow link, a tab left
open mid-download). Its response is read from one snapshot, and DuckDB keeps that snapshot's
transaction open while its rows are read. If the rows were read at the client's pace, that transaction
would stay open for as long as the client dawdles: the projector's checkpoints would be refused, and
its forced one (the log at twice its threshold) waits for every transaction and holds every new one,
so the fold and then every request would stop behind one slow reader.

Here `serve` has a 1 MiB checkpoint threshold. A client asks for the CSV export of every turn (several
MB), reads its first bytes and stops reading, its socket's receive buffer small. Meanwhile more events
are published: each chunk must be folded, and other requests answered, while the slow client holds its
connection. Then the client reads the rest: the whole export, from the snapshot it started in.
"""

from __future__ import annotations

import csv
import io
import socket
from pathlib import Path

import pytest

from tests.support.faults import STAFF, Serve, interactions_total, publish, wait_folded

pytestmark = pytest.mark.kafka

FIRST = 20_000  # about 12 MB of CSV: far more than the kernel buffers between the two ends
CHUNK = 3_000
CHUNKS = 4  # each chunk's log is over the 1 MiB threshold: the forced checkpoint's 2 MiB is reached
ENV = {"CHAT_ANALYTICS_CHECKPOINT_THRESHOLD": "1MiB"}
EXPORT = "/api/anonymous-chat-interactions/?format=csv"


def _slow_client(port: int) -> tuple[socket.socket, bytes]:
    """A connection with a small receive buffer that has asked for the export, and what it read: the
    response's head and its first bytes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(60)
    request = f"GET {EXPORT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {STAFF}\r\nConnection: close\r\n\r\n"
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1024)
    return sock, head


def _read_rest(sock: socket.socket, head: bytes) -> bytes:
    data = head
    while chunk := sock.recv(1 << 16):
        data += chunk
    return data


def _dechunk(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body as its bytes."""
    out, at = b"", 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";")[0], 16)
        if size == 0:
            return out
        out += body[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


def test_a_client_that_stops_reading_a_stream_stops_neither_the_fold_nor_other_requests(
    bootstrap_servers: str, topic: str, tmp_path: Path
) -> None:
    publish(bootstrap_servers, topic, FIRST, seed=31)
    serve = Serve(tmp_path, tmp_path / "served.duckdb", bootstrap_servers, topic, env=ENV).start()
    try:
        serve.wait_answering()
        wait_folded(serve, bootstrap_servers, topic)
        before = interactions_total(serve)

        sock, first = _slow_client(serve.port)  # it now stops reading
        try:
            head, _, _ = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            count = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"x-result-count"))
            )
            assert count == before

            for n in range(CHUNKS):
                publish(bootstrap_servers, topic, CHUNK, seed=40 + n)
                # A failure guard, not a timing assertion: the fold stopped behind the slow client.
                wait_folded(serve, bootstrap_servers, topic, limit_s=90)
                with serve.client(timeout=30) as http:
                    page = http.get("/api/anonymous-chat-interactions/", params={"page_size": 1})
                    assert page.status_code == 200
            assert interactions_total(serve) > before
            assert "checkpointed" in serve.tail(200_000)  # the log was checkpointed meanwhile

            rest = _read_rest(sock, first)
        finally:
            sock.close()
        _, _, body = rest.partition(b"\r\n\r\n")
        rows = list(csv.reader(io.StringIO(_dechunk(body).decode())))
        assert len(rows) == 1 + count  # the header, then every turn of the snapshot it started in
        assert rows[0][0] == "uuid"
    finally:
        serve.stop()
