"""CSV export of a list endpoint: every matching row (pagination is ignored), streamed.

A list endpoint answers CSV instead of JSON when asked with `format=csv`, or with an `Accept` header
that prefers `text/csv`. The same filters and ordering apply; `X-Result-Count` is the number of rows
that follow. The rows are streamed by `api.streaming` (one read transaction for the count and every
row, Arrow batches each written as CSV and sent before the next is read: memory stays bounded).
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from starlette.requests import Request
from starlette.responses import Response

from api import streaming
from api.params import POSITION_HEADER, raise_if_any
from api.readers import read
from api.streaming import Renderer, Rows
from serving.handle import ReadModelHandle

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
FORMATS = ("json", "csv")
BATCH_ROWS = streaming.BATCH_ROWS
MSG_FORMAT = f"Select a valid format: {', '.join(FORMATS)}."
FORMAT_PARAM: tuple[dict[str, Any], str] = (
    {"type": "string", "enum": list(FORMATS)},
    "csv: every matching row as CSV (page and page_size are ignored), streamed, with X-Result-Count;"
    " also chosen by `Accept: text/csv`",
)


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


class _CsvRows(Renderer):
    """Each batch as CSV lines; the header line with the first (alone when there are no rows)."""

    def batch(self, batch: pa.RecordBatch, first: bool) -> bytes:
        out = io.BytesIO()
        pacsv.write_csv(batch, out, pacsv.WriteOptions(include_header=first))
        return out.getvalue()

    def empty(self, schema: pa.Schema) -> bytes:
        return self.batch(schema.empty_table(), True)  # type: ignore[arg-type]  # a table writes the same


async def respond(
    request: Request,
    handle: ReadModelHandle,
    rows: Rows,
    *,
    filename: str,
    errors: dict[str, list[str]],
    topic: str,
) -> Response:
    """The CSV answer: `rows`, with their header line. HEAD gets the headers."""
    raise_if_any(errors)
    if request.method == "HEAD":
        assert rows.count is not None, "an export counts its rows apart"
        answer = await read(handle, rows.count, topic=topic)
        return Response(
            b"",
            media_type=CSV_MEDIA_TYPE,
            headers={
                "X-Result-Count": str(answer.value),
                "Content-Disposition": f'attachment; filename="{filename}"',
                POSITION_HEADER: answer.position.token(),
            },
        )
    return await streaming.respond(
        handle,
        rows,
        topic=topic,
        renderer=_CsvRows(),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        batch_rows=BATCH_ROWS,
    )
