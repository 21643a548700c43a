"""`chat-analytics serve`: the staff API and the projector in one process, on uvicorn.

The projector is the read model's only writer and runs in a background thread; the API reads the same
DuckDB database through cursors of the projector's connection (DuckDB allows one writing process
per file, so a second process could not open it to read while the projector writes).

The projector runs inside a `LiveProjection`, which also serves the staff-only admin endpoints
(blue/green rebuild, status, dead letters) and rebuilds a file of another read-model version by
itself at start-up.

Faults (docs/operations-failures.md): without Kafka the API still starts and answers from the file;
the projector and the ingest producer connect in the background whenever Kafka answers. When DuckDB
invalidates the database (a full disk during a checkpoint), /livez fails and the process exits with
EXIT_READ_MODEL_FAILED, so that a supervisor restarts it: the restart replays the write-ahead log.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from cli import logs
from cli.options import add_broker_args, add_db_arg, add_fold_args, topic_source
from cli.projector_cmd import EXIT_READ_MODEL_FAILED
from schemas.settings import (
    DEFAULT_MIN_POSITION_WAIT_MS,
    ENV_BOOTSTRAP_SERVERS,
    ENV_MIN_POSITION_WAIT_MS,
    Settings,
)

__all__ = ["EXIT_READ_MODEL_FAILED", "register"]
FAILURE_POLL_S = 0.5
# After the read model failed, the process answers (503 on /livez and on reads) this long before it
# exits: a probe or a client then sees the failure named, not only a refused connection.
FAILURE_LINGER_S = 2.0
# Short (a client that does not send its next request soon is cheap to reconnect), but longer than the
# 5 s after which httpx, the reference's Python clients and our tests stop reusing an idle connection:
# at 5 s on both sides, a request sent as the server closed the connection got no answer at all
# ("Server disconnected without sending a response", seen in CI). Below the 10 s header deadline.
KEEP_ALIVE_S = 8


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
    logs.add_log_args(parser)
    parser.set_defaults(func=_serve)


class _Stopped(Exception):
    pass


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    from contextlib import asynccontextmanager

    import duckdb
    import uvicorn
    from starlette.applications import Starlette

    from api import request_id
    from api.app import create_app
    from api.http_protocol import GuardedHttpToolsProtocol
    from auth.tokens import TokenStore
    from projector import conversations
    from schemas.readmodel import checked_size, connect
    from serving.handle import ReadModelHandle
    from serving.runtime import tune_for_serving

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
        checked_size(settings.checkpoint_threshold)
    except ValueError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    logs.configure_from_args(args)
    logs.stamp_request_ids(request_id.current)

    if args.min_position_wait_ms < 0:
        print("serve: --min-position-wait-ms must not be negative", file=sys.stderr)
        return 2
    try:
        # Without a projector nothing writes: a file on read-only storage (a snapshot, a mounted
        # volume) is opened read-only, so DuckDB neither creates a log nor checkpoints.
        con = connect(args.db, read_only=args.no_projector and Path(args.db).exists())
    except duckdb.Error as exc:
        print(f"serve: cannot open {args.db}: {exc}", file=sys.stderr)
        return 2
    if args.no_projector and conversations.is_deferred(con):
        # What an interrupted rebuild left: its conversations are computed when it ends, so without a
        # projector (which computes them first, then folds the rest of the topic) they would never be.
        con.close()
        print(
            f"serve: {args.db} was left by a rebuild that did not finish: it is incomplete, and its conversations"
            " are not computed yet. Serve it with a projector (without --no-projector), which completes it from the"
            f" topic, continue it (`chat-analytics rebuild --db {args.db} --resume`), or rebuild it again"
            " (`chat-analytics rebuild --force`).",
            file=sys.stderr,
        )
        return 2
    handle = ReadModelHandle(con, args.db, checkpoint_threshold=settings.checkpoint_threshold)
    server: uvicorn.Server | None = None

    async def exit_on_failure() -> None:
        # DuckDB invalidated the database: nothing this process does can serve again. /livez already
        # fails; stop serving so that the supervisor restarts the process, which replays the log.
        while handle.failure is None:
            await asyncio.sleep(FAILURE_POLL_S)
        logging.getLogger("chat_analytics.serve").critical(
            "the read model failed (%s): exiting with %s for a restart", handle.failure, EXIT_READ_MODEL_FAILED
        )
        await asyncio.sleep(FAILURE_LINGER_S)
        if server is not None:
            server.should_exit = True

    common = {
        "tokens": tokens,
        "budget": settings.daily_token_budget,
        "ready_max_lag": settings.ready_max_lag,
        "stale_after_s": settings.stale_after_s,
        "disk_warn_bytes": settings.disk_warn_bytes,
        "topic": args.topic,
    }
    if args.no_projector:

        @asynccontextmanager
        async def lifespan_file(app: Starlette):  # noqa: ANN202
            watcher = asyncio.create_task(exit_on_failure())
            try:
                yield
            finally:
                watcher.cancel()

        app = create_app(handle, lifespan=lifespan_file, **common)
    else:
        from api.admin import admin_routes, can_serve
        from api.erasures import erasure_routes
        from broker.topics import retention_warning
        from ingest.http import ingest_routes
        from ingest.publisher import SERVER_PRODUCER_CONFIG, Publisher
        from projector.bluegreen import LiveProjection

        warning = retention_warning(args.bootstrap_servers, args.topic, settings.retention_days)
        if warning:
            logging.getLogger("chat_analytics.serve").warning("%s", warning)
        projection = LiveProjection(
            handle,
            source=topic_source(args),
            readable=can_serve,
            disk_warn_bytes=settings.disk_warn_bytes,
            retention_days=settings.retention_days,
        )
        # Never waits for Kafka here: the API serves the file while a thread connects the producer.
        publisher = Publisher(args.bootstrap_servers, args.topic, connect_in_background=True, **SERVER_PRODUCER_CONFIG)

        @asynccontextmanager
        async def lifespan(app: Starlette):  # noqa: ANN202 - the async generator type adds nothing here
            projection.start()
            watcher = asyncio.create_task(exit_on_failure())
            try:
                yield
            finally:
                watcher.cancel()
                # Stop consuming before the connection closes, so the last batch commits or rolls back whole.
                projection.stop()
                with contextlib.suppress(Exception):  # unacknowledged events were answered with a 503
                    publisher.close(timeout=5)

        app = create_app(
            handle,
            status_provider=projection.status,
            extra_routes=[
                *ingest_routes(publisher, tokens, max_events=settings.ingest_max_events, rate=settings.ingest_rate),
                *admin_routes(projection, tokens),
                *erasure_routes(publisher.request_erasure, handle, tokens),
            ],
            lifespan=lifespan,
            min_position_wait_s=args.min_position_wait_ms / 1000,
            **common,
        )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        # uvicorn's loggers propagate to the root logger configured above (text or JSON, request ids)
        # instead of getting handlers of their own.
        log_config=None,
        log_level=args.log_level.lower(),
        access_log=args.access_log,
        http=GuardedHttpToolsProtocol,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    tune_for_serving()
    # uvicorn re-raises the SIGINT or SIGTERM it caught once it has shut down cleanly (the projector's
    # last batch committed or rolled back whole): a clean stop, exit 0, as a supervisor expects.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        with contextlib.suppress(KeyboardInterrupt, _Stopped):
            server.run()
    finally:
        # Stopping already: a second signal (Ctrl-C reaches `make demo` and its `serve` both, and the
        # demo then terminates `serve` too) must not cut the close short with a traceback.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # A database DuckDB invalidated cannot be closed cleanly: what was committed is in the log.
        with contextlib.suppress(duckdb.Error):
            handle.close()
    if handle.failure is not None:
        return EXIT_READ_MODEL_FAILED
    return 0 if server.started else 1
