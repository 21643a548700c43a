"""Bodies too large to build in memory, streamed: a CSV export, a long transcript, the whole conversations list.

A `RowStream` holds one read lease and one DuckDB read transaction until its last row is read: the count
sent in `X-Result-Count`, the position sent in its header and every row come from one snapshot (one
projector commit), whatever commits while the body is sent. The rows leave DuckDB as Arrow record batches
of `BATCH_ROWS` rows, each rendered (`Renderer`) in turn. A thread of the response reads them as fast as
DuckDB gives them into a `Spool` (`api.spool`: a few MB in memory, the rest in a temporary file), which
the client takes them from at its own pace: the first bytes leave as soon as the first batch is rendered,
and the transaction and the lease (a blue/green switch waits for it) last as long as DuckDB's reading,
however slowly the client reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.params import POSITION_HEADER
from api.snapshot_cache import snapshot_state
from api.spool import Spool
from schemas.position import Position
from serving.handle import ReadModelHandle
from serving.parsed import parsed

BATCH_ROWS = 8192

Counter = Callable[[duckdb.DuckDBPyConnection], int]


@dataclass(frozen=True, slots=True)
class Rows:
    """A whole list to stream (a CSV export, a long JSON list): the one statement that yields every row,
    its parameters, and how to count them (None: the statement's last column is the count)."""

    count: Counter | None
    query: str
    params: list[Any]
    # When set, `query` yields only the first rows (a LIMIT: DuckDB finds them with a top-N, without
    # sorting every row) and `rest` the others (its OFFSET), read after them in the same transaction
    # with the same parameters: the first bytes then leave before the whole list is sorted.
    rest: str | None = None


class Renderer:
    """How batches become the body: `start` and `end` around the rendered batches (`batch(b, first)`)."""

    start = b""
    end = b""

    def batch(self, batch: pa.RecordBatch, first: bool) -> bytes:
        raise NotImplementedError

    def empty(self, schema: pa.Schema) -> bytes:
        """The body part for no rows at all (a CSV header line, for one)."""
        return b""


class JsonTextArray(Renderer):
    """A JSON array of rows whose one column is already the row's JSON text (as DuckDB or the fold rendered
    it) after a comma: `,{...}`. A batch's text is then its Arrow values as they lie end to end in the
    column's data buffer, sent as they are (the first row without its comma): no Python string per row,
    which cost the whole conversations list several times what DuckDB spent reading and sorting it, and
    a Python object per field of a transcript's rows most of its time."""

    start = b"["
    end = b"]"

    def batch(self, batch: pa.RecordBatch, first: bool) -> bytes:
        return _values_end_to_end(batch.column(0), skip=1 if first else 0)


def _values_end_to_end(column: pa.Array, skip: int) -> bytes:
    """The concatenated values of a text column without NULLs, less their first `skip` bytes."""
    kind = column.type
    if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and len(column) and not column.null_count:
        _validity, offsets, data = column.buffers()
        bounds = memoryview(offsets).cast("i" if pa.types.is_string(kind) else "q")
        start, end = bounds[column.offset], bounds[column.offset + len(column)]
        return memoryview(data)[start + skip : end].tobytes() if data is not None else b""
    return "".join(column.to_pylist()).encode()[skip:]


class RowStream:
    """One stream's lease, transaction and Arrow reader: made in the threadpool, then read and closed by
    one thread, the response's (`_read_into`).

    With `count` None, the query's last column is the number of rows (`count(*) OVER ()`): one pass
    where counting apart would compute an expensive relation twice. The first batch is then read here,
    before the headers go out, and the renderer never sees that column."""

    def __init__(
        self,
        handle: ReadModelHandle,
        rows: Rows,
        topic: str,
        renderer: Renderer,
        batch_rows: int | None = None,
    ) -> None:
        self._stack = ExitStack()
        self._renderer = renderer
        self._first = True
        self._ended = False
        self._ahead: pa.RecordBatch | None = None
        # A cursor of its own, closed at the end rather than lent again (`serving.handle.ReadModelHandle.
        # reading`). Since a5b98af, when a stream cut short was closed from one thread while another still
        # read its next chunk; one thread now does both, but a long, rare stream gains nothing from a
        # pooled cursor.
        cur = self._stack.enter_context(handle.reading(reuse=False))
        cur.execute(parsed("BEGIN TRANSACTION"))
        self._stack.callback(cur.execute, "ROLLBACK")
        try:
            # The stream's own position: the snapshot its count and rows are read from.
            _mark, offsets, _forgets = snapshot_state(cur, handle.generation, topic)
            self.position = Position.of(handle.version, topic, offsets)
            if rows.count is not None:
                self.total = rows.count(cur)
                cur.complete()  # the count's result ends here; a relation may not start before it has
            self._cur, self._rows, self._batch_rows = cur, rows, batch_rows or BATCH_ROWS
            self._rest = rows.rest
            self._reader: pa.RecordBatchReader = self._open(rows.query)
            self._counted_inline = rows.count is None
            if self._counted_inline:
                self._ahead = self._next_batch()
                self.total = int(self._ahead.column(-1)[0].as_py()) if self._ahead is not None else 0
        except BaseException:
            self._stack.close()
            raise

    def _open(self, query: str) -> pa.RecordBatchReader:
        relation = self._cur.sql(parsed(query), params=list(self._rows.params))
        reader = relation.to_arrow_reader(self._batch_rows)
        # Before the ROLLBACK (callbacks run last in, first out): a stream cut short leaves rows unread.
        self._stack.callback(reader.close)
        return reader

    def _next_batch(self) -> pa.RecordBatch | None:
        while True:
            try:
                batch = self._reader.read_next_batch()
                while not batch.num_rows:  # an empty batch would make a JSON array start with a comma
                    batch = self._reader.read_next_batch()
            except StopIteration:
                if self._rest is None:
                    return None
                self._reader.close()
                self._reader, self._rest = self._open(self._rest), None
                continue
            return batch

    def next_chunk(self) -> bytes | None:
        """The body's next bytes; None at its end, and for a chunk asked for after `close`."""
        if self._ended:
            return None
        batch, self._ahead = (self._ahead, None) if self._ahead is not None else (self._next_batch(), None)
        if batch is None:
            self._ended = True
            schema = self._reader.schema
            if self._counted_inline:
                schema = schema.remove(len(schema) - 1)
            tail = self._renderer.start + self._renderer.empty(schema) if self._first else b""
            return tail + self._renderer.end
        if self._counted_inline:
            batch = batch.select(range(batch.num_columns - 1))
        chunk = self._renderer.batch(batch, self._first)
        if self._first:
            chunk = self._renderer.start + chunk
        self._first = False
        return chunk

    def close(self) -> None:
        self._ended = True
        self._stack.close()


def _read_into(stream: RowStream, spool: Spool) -> None:
    """Every chunk of `stream` into `spool`, at DuckDB's pace, then the stream closed (its transaction
    and lease end with its last row); stops early when the client has gone."""
    try:
        while (chunk := stream.next_chunk()) is not None:
            if chunk and not spool.put(chunk):
                break
    except BaseException as exc:  # noqa: BLE001 - handed to the response, which breaks off there
        spool.finish(exc)
    else:
        spool.finish()
    finally:
        stream.close()


class StreamedResponse(StreamingResponse):
    """Streams a `RowStream` through a `Spool` (`api.spool`): a thread reads the rows as fast as DuckDB
    gives them, the client takes them at its own pace; the stream always ends, also when the client
    goes away mid-way."""

    def __init__(self, stream: RowStream, media_type: str, headers: Mapping[str, str] | None = None) -> None:
        self._stream = stream
        self._spool = Spool()

        async def chunks():  # noqa: ANN202 - an async generator of bytes
            while (chunk := await run_in_threadpool(self._spool.get)) is not None:
                yield chunk

        super().__init__(
            chunks(),
            media_type=media_type,
            headers={"X-Result-Count": str(stream.total), POSITION_HEADER: stream.position.token(), **(headers or {})},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reader = threading.Thread(
            target=_read_into, args=(self._stream, self._spool), name="stream-reader", daemon=True
        )
        reader.start()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._spool.abandon()


async def respond(
    handle: ReadModelHandle,
    rows: Rows,
    *,
    topic: str,
    renderer: Renderer,
    media_type: str,
    headers: Mapping[str, str] | None = None,
    batch_rows: int | None = None,
) -> StreamedResponse:
    stream = await run_in_threadpool(RowStream, handle, rows, topic, renderer, batch_rows)
    return StreamedResponse(stream, media_type, headers)
