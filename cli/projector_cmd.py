"""`chat-analytics project`: the projector alone, in the foreground, until SIGINT or SIGTERM.

A signal asks the projector to stop between two batches (a batch in flight commits or rolls back as
a whole either way, so even a SIGKILL loses nothing: the next start resumes from the stored offsets).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from types import FrameType

from broker.errors import one_line
from cli import logs
from cli.options import add_broker_args, add_db_arg, add_fold_args, topic_source
from schemas.settings import ENV_BOOTSTRAP_SERVERS, Settings

EXIT_READ_MODEL_FAILED = 3  # as `serve`: DuckDB invalidated the file; a restart replays its log

log = logging.getLogger("chat_analytics.project")


def register(sub: argparse._SubParsersAction) -> None:
    settings = Settings.from_env()
    parser = sub.add_parser("project", help="fold the event topic into the read-model file (foreground)")
    add_broker_args(parser, settings)
    add_db_arg(parser, settings)
    add_fold_args(parser, settings)
    parser.add_argument(
        "--until-caught-up",
        action="store_true",
        help="stop once the end offsets the topic had at start are folded (a one-off catch-up)",
    )
    parser.add_argument(
        "--no-parse-process",
        action="store_true",
        help="parse in this process only (by default live batches are parsed in a child process, and far behind"
        " catch-up reads and parses in two more)",
    )
    parser.add_argument(
        "--progress-every", type=float, default=5.0, help="seconds between progress lines (default %(default)s)"
    )
    logs.add_log_args(parser)
    parser.set_defaults(func=_project)


def _project(args: argparse.Namespace) -> int:
    import duckdb

    from projector.service import ProjectorService
    from schemas.readmodel import READMODEL_VERSION, connect, file_version

    logs.configure_from_args(args)
    if not args.bootstrap_servers:
        print(
            f"project: no Kafka bootstrap servers: pass --bootstrap-servers or set {ENV_BOOTSTRAP_SERVERS}",
            file=sys.stderr,
        )
        return 2
    _warn_about_retention(args.bootstrap_servers, args.topic)
    con = connect(args.db)
    version = file_version(con)
    if version != READMODEL_VERSION:
        print(
            f"project: {args.db} was built by read-model version {version}, this release writes {READMODEL_VERSION}:"
            " rebuild it from the topic (docs/operations.md, 'Rebuilding the read model')",
            file=sys.stderr,
        )
        con.close()
        return 2
    stop = threading.Event()
    failed: list[BaseException] = []

    def on_fatal(exc: BaseException) -> None:
        # DuckDB invalidated the file: exit for a restart, which replays the write-ahead log.
        failed.append(exc)
        stop.set()

    service = ProjectorService(
        topic_source(args),
        con,
        parse_process=not args.no_parse_process,
        on_fatal=on_fatal,
        retention_days=Settings.from_env().retention_days,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()
        service.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info(
        "folding %s from %s into %s (batches of up to %s)", args.topic, args.bootstrap_servers, args.db, args.batch_size
    )
    try:
        if args.until_caught_up:
            started = time.monotonic()
            try:
                folded = service.run_until_caught_up()
            except Exception as exc:  # a broker gone or unreachable: what was folded stays folded
                print(
                    f"project: not caught up ({one_line(exc)}); what was folded is kept in {args.db}:"
                    " run it again once the cause is gone",
                    file=sys.stderr,
                )
                return 1
            elapsed = time.monotonic() - started
            log.info(
                "caught up: %s records in %.1f s (%.0f/s); %s",
                folded,
                elapsed,
                folded / max(elapsed, 1e-9),
                _line(service.status()),
            )
            return 0
        service.start()
        while not stop.wait(args.progress_every):
            log.info("%s", _line(service.status()))
        return EXIT_READ_MODEL_FAILED if failed else 0
    finally:
        service.stop()
        log.info("stopped: %s", _line(service.status()))
        with contextlib.suppress(duckdb.Error):  # an invalidated database cannot close cleanly
            con.close()


def _line(status: dict) -> str:  # type: ignore[type-arg]
    lag = sum(p["lag"] for p in status["partitions"])
    applied = sum(status["events_applied"].values())
    dead = sum(status["dead_letters"].values())
    error = f"; error: {status['error']}" if status["error"] else ""
    return (
        f"applied {applied} events, lag {lag}, dead letters {dead}, pending {status['pending_events']},"
        f" caught up: {status['caught_up']}{error}"
    )


def _warn_about_retention(bootstrap_servers: str, topic: str) -> None:
    from broker.topics import retention_warning

    warning = retention_warning(bootstrap_servers, topic, Settings.from_env().retention_days)
    if warning:
        log.warning("%s", warning)
