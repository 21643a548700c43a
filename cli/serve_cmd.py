"""`chat-analytics serve`: the staff API and the projector in one process, on uvicorn.

The projector is the read model's only writer and runs in a background thread; the API reads the same
DuckDB database through cursors of the projector's connection (DuckDB allows one writing process
per file, so a second process could not open it to read while the projector writes).

The projector runs inside a `LiveProjection`, which also serves the staff-only admin endpoints
(blue/green rebuild, status, dead letters) and rebuilds a file of another read-model version by
itself at start-up.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cli.options import add_broker_args, add_db_arg, add_fold_args
from schemas.settings import (
    DEFAULT_MIN_POSITION_WAIT_MS,
    ENV_BOOTSTRAP_SERVERS,
    ENV_MIN_POSITION_WAIT_MS,
    Settings,
)


def register(sub: argparse._SubParsersAction) -> None:
    settings = Settings.from_env()
    parser = sub.add_parser("serve", help="serve the staff API, with the projector in the same process")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    add_broker_args(parser, settings)
    add_db_arg(parser, settings)
    add_fold_args(parser, settings)
    parser.add_argument(
        "--no-projector",
        action="store_true",
        help="serve the read-model file as it is: no consumer, no ingest endpoint, no broker needed",
    )
    parser.add_argument(
        "--min-position-wait-ms",
        type=int,
        default=settings.min_position_wait_ms,
        help="how long a request whose min_position this server has not reached waits for it before a 503"
        f" (default ${ENV_MIN_POSITION_WAIT_MS}, else {DEFAULT_MIN_POSITION_WAIT_MS})",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log a line per request (off by default: /metrics counts every request, and the line costs CPU)",
    )
    parser.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from contextlib import asynccontextmanager

    import uvicorn
    from starlette.applications import Starlette

    from api.app import create_app
    from auth.tokens import TokenStore
    from schemas.readmodel import ReadModelHandle, connect

    settings = Settings.from_env()
    if not args.no_projector and not args.bootstrap_servers:
        print(
            f"serve: no Kafka bootstrap servers: pass --bootstrap-servers or set {ENV_BOOTSTRAP_SERVERS}"
            " (or --no-projector to serve the file as it is)",
            file=sys.stderr,
        )
        return 2
    try:
        tokens = TokenStore.from_settings(settings.api_tokens, settings.tokens_file)
    except ValueError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2

    if args.min_position_wait_ms < 0:
        print("serve: --min-position-wait-ms must not be negative", file=sys.stderr)
        return 2
    con = connect(args.db)
    handle = ReadModelHandle(con, args.db)
    if args.no_projector:
        app = create_app(handle, tokens=tokens, budget=settings.daily_token_budget, topic=args.topic)
    else:
        from api.admin import admin_routes, can_serve
        from api.erasures import erasure_routes
        from broker.topics import retention_warning
        from ingest.http import ingest_routes
        from ingest.publisher import Publisher
        from projector.bluegreen import LiveProjection

        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        warning = retention_warning(args.bootstrap_servers, args.topic, settings.retention_days)
        if warning:
            logging.getLogger("chat_analytics.serve").warning("%s", warning)
        projection = LiveProjection(
            handle,
            bootstrap_servers=args.bootstrap_servers,
            topic=args.topic,
            group_id=args.group_id,
            batch_size=args.batch_size,
            readable=can_serve,
            retention_days=settings.retention_days,
        )
        publisher = Publisher(args.bootstrap_servers, args.topic)

        @asynccontextmanager
        async def lifespan(app: Starlette):  # noqa: ANN202 - the async generator type adds nothing here
            projection.start()
            try:
                yield
            finally:
                # Stop consuming before the connection closes, so the last batch commits or rolls back whole.
                projection.stop()
                publisher.close()

        app = create_app(
            handle,
            tokens=tokens,
            budget=settings.daily_token_budget,
            status_provider=projection.status,
            extra_routes=[
                *ingest_routes(publisher, tokens),
                *admin_routes(projection, tokens),
                *erasure_routes(publisher.request_erasure, handle, tokens),
            ],
            lifespan=lifespan,
            topic=args.topic,
            min_position_wait_s=args.min_position_wait_ms / 1000,
        )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=args.access_log)
    finally:
        handle.connection.close()
    return 0
