"""CSV export of a list endpoint: every matching row (pagination is ignored), streamed.

A list endpoint answers CSV instead of JSON when asked with `format=csv`, or with an `Accept` header
that prefers `text/csv`. The same filters and ordering apply; `X-Result-Count` is the number of rows
that follow. The rows come from one DuckDB read transaction, so the count and the rows describe one
projector commit, and leave it as Arrow record batches of `BATCH_ROWS` rows, each written as CSV and
sent before the next is read: memory stays bounded whatever the size of the export.

The read lease is held until the last row is sent (a blue/green switch waits for exports in flight).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import anyio
import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from api.params import POSITION_HEADER, raise_if_any
from api.readers import read
from api.snapshot_cache import snapshot_mark
from schemas.position import Position
from schemas.readmodel import ReadModelHandle

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
FORMATS = ("json", "csv")
BATCH_ROWS = 8192
MSG_FORMAT = f"Select a valid format: {', '.join(FORMATS)}."
FORMAT_PARAM: tuple[dict[str, Any], str] = (
    {"type": "string", "enum": list(FORMATS)},
    "csv: every matching row as CSV (page and page_size are ignored), streamed, with X-Result-Count;"
    " also chosen by `Accept: text/csv`",
)

Counter = Callable[[duckdb.DuckDBPyConnection], int]


def _quality(media_range: str) -> tuple[str, float]:
    kind, *parameters = (part.strip() for part in media_range.split(";"))
    q = 1.0
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
    return kind.lower(), q


def wants_csv(request: Request, errors: dict[str, list[str]]) -> bool:
    """`format=csv`; without `format`, an Accept header that ranks text/csv above application/json
    (higher q, or the same q and named first)."""
    values = request.query_params.getlist("format")
    value = values[-1] if values else ""
    if value:
        if value not in FORMATS:
            errors["format"] = [MSG_FORMAT]
            return False
        return value == "csv"
    ranked = [_quality(part) for part in request.headers.get("accept", "").split(",") if part.strip()]
    best = max(
        ((q, -i, kind) for i, (kind, q) in enumerate(ranked) if kind in ("text/csv", "application/json") and q > 0),
        default=None,
    )
    return best is not None and best[2] == "text/csv"


class _Export:
    """One export's lease, transaction and Arrow reader; every method runs in the threadpool."""

    def __init__(self, handle: ReadModelHandle, count: Counter, query: str, params: Sequence[Any], topic: str) -> None:
        self._stack = ExitStack()
        self._header = True
        cur = self._stack.enter_context(handle.reading())
        cur.execute("BEGIN TRANSACTION")
        self._stack.callback(cur.execute, "ROLLBACK")
        try:
            # The export's own position: the snapshot its count and rows are read from.
            _mark, offsets = snapshot_mark(cur, handle.generation, topic)
            self.position = Position.of(handle.version, topic, offsets)
            self.total = count(cur)
            cur.complete()  # the count's result ends here; a relation may not start before it has
            self._reader: pa.RecordBatchReader = cur.sql(query, params=list(params)).to_arrow_reader(BATCH_ROWS)
            # Before the ROLLBACK (callbacks run last in, first out): an export cut short leaves rows unread.
            self._stack.callback(self._reader.close)
        except BaseException:
            self._stack.close()
            raise

    def next_chunk(self) -> bytes | None:
        try:
            batch = self._reader.read_next_batch()
        except StopIteration:
            if not self._header:
                return None
            batch = self._reader.schema.empty_table()  # no rows at all: the header line alone
        out = io.BytesIO()
        pacsv.write_csv(batch, out, pacsv.WriteOptions(include_header=self._header))
        self._header = False
        return out.getvalue()

    def close(self) -> None:
        self._stack.close()


class _ExportResponse(StreamingResponse):
    """Streams an `_Export` and always ends it, also when the client goes away mid-way."""

    def __init__(self, export: _Export, filename: str) -> None:
        async def chunks():  # noqa: ANN202 - an async generator of bytes
            while (chunk := await run_in_threadpool(export.next_chunk)) is not None:
                yield chunk

        super().__init__(
            chunks(),
            media_type=CSV_MEDIA_TYPE,
            headers={
                "X-Result-Count": str(export.total),
                "Content-Disposition": f'attachment; filename="{filename}"',
                POSITION_HEADER: export.position.token(),
            },
        )
        self._export = export

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._export.close)


async def respond(
    request: Request,
    handle: ReadModelHandle,
    *,
    count: Counter,
    query: str,
    params: Sequence[Any],
    filename: str,
    errors: dict[str, list[str]],
    topic: str,
) -> Response:
    """The CSV answer: `count(cursor)` rows of `query`, with their header line. HEAD gets the headers."""
    raise_if_any(errors)
    if request.method == "HEAD":
        answer = await read(handle, count, topic=topic)
        return Response(
            b"",
            media_type=CSV_MEDIA_TYPE,
            headers={
                "X-Result-Count": str(answer.value),
                "Content-Disposition": f'attachment; filename="{filename}"',
                POSITION_HEADER: answer.position.token(),
            },
        )
    export = await run_in_threadpool(_Export, handle, count, query, params, topic)
    return _ExportResponse(export, filename)
