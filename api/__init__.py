"""The staff analytics API: Starlette over the DuckDB read model (imports only `schemas` and `auth`).

- `app`: `create_app(handle, tokens=..., clock=..., budget=..., status_provider=..., extra_routes=...)`.
- `endpoints`: the handlers and `OPERATIONS`, the table both the router and the OpenAPI doc come from.
- `models`: the Pydantic response models; `openapi`: the document assembled from them.
- `params`: query parameters (names, schemas, parsing, the 400 messages).
- `interactions_sql`, `aggregates_sql`: the SQL, next to the tables it reads.
- `queries`: the read operations, each choosing the cheapest table that answers it.
- `readers`, `encoding`, `pagination`, `metrics`: per-request cursors, orjson bodies, Link headers,
  Prometheus text.
- `admin`: the staff-only operator endpoints (rebuild, status, dead letters) over a backend that the
  command line hands in, so the API never imports the projector.
"""
