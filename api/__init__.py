"""The staff analytics API: Starlette over the DuckDB read model (imports `schemas`, `serving` and `auth`; `dashboard`
for the page it serves and `ingest` for `POST /api/events/` and erasure requests).

- `app`: `create_app(handle, tokens=..., clock=..., budget=..., status_provider=..., extra_routes=...)`.
- `endpoints`: the handlers and `OPERATIONS`, the table both the router and the OpenAPI doc come from.
- `models`: the Pydantic response models; `openapi`: the document assembled from them.
- `params`: query parameters (names, schemas, parsing, the 400 messages).
- `interactions_sql`, `aggregates_sql`, `conversations_sql`, `feedbacks_sql`: the SQL, next to the tables it
  reads; `filter_sql`: the one way parsed filters become a SQL condition and `o` terms an ORDER BY.
- `queries`: the read operations, each choosing the cheapest table that answers it.
- `readers`, `encoding`, `pagination`, `metrics`: per-request cursors, orjson bodies, Link headers,
  Prometheus text.
- `snapshot_cache`: answers remembered per read-model snapshot; `streaming`: long whole lists and
  `csv_export` sent in batches from one snapshot.
- `headers`, `request_id`, `http_protocol`: the headers every response gets, the request id, and
  uvicorn's protocol with a header deadline, size limits and answers of known length in one write.
- `erasures`: staff-only erasure requests, published to the topic.
- `admin`: the staff-only operator endpoints (rebuild, status, dead letters) over a backend that the
  command line hands in, so the API never imports the projector.
"""
