"""Operator commands: `rebuild`, `status`, `dead-letters list|export|retry`.

Offline, they open the read-model file themselves (read-only for `status`, `list` and `export`).
DuckDB lets one process write a file, so while `serve` holds it they talk to that process instead:
`--live` / `--url` call its staff-only admin endpoints (see api/admin.py).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.errors import one_line
from cli.options import add_broker_args, add_db_arg, add_server_args, positive_int
from schemas.registry import DEAD_LETTER_REASONS
from schemas.settings import (
    DEFAULT_URL,
    ENV_ADMIN_TOKEN,
    ENV_BOOTSTRAP_SERVERS,
    ENV_DB,
    ENV_URL,
    Settings,
    env,
)

REASONS = DEAD_LETTER_REASONS
POLL_S = 0.5


def register(sub: argparse._SubParsersAction) -> None:
    settings = Settings.from_env()
    _register_rebuild(sub, settings)
    _register_status(sub, settings)
    _register_dead_letters(sub, settings)


# -- arguments --------------------------------------------------------------------------------------


def _timestamp(text: str) -> datetime:
    """RFC 3339 / ISO 8601; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a timestamp: {text!r} (e.g. 2026-11-26T09:15:00Z or 2026-11-26T10:15:00+01:00)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _register_rebuild(sub: argparse._SubParsersAction, settings: Settings) -> None:
    parser = sub.add_parser(
        "rebuild",
        help="fold the topic into a fresh read-model file, or make a running serve switch to a rebuilt one",
        description="Offline: fold the topic from the beginning to its end offsets at start (or to --until) into "
        "NEW_FILE, in catch-up mode. --live: make a running `serve` build a new file in the background and "
        "switch to it without downtime.",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--db", dest="new_db", metavar="NEW_FILE", help="the file to build (must be new or empty)")
    target.add_argument("--live", action="store_true", help="blue/green rebuild of a running serve")
    parser.add_argument(
        "--until",
        type=_timestamp,
        help="fold only records stamped (Kafka record time) at or before this time: the tables as they were then",
    )
    parser.add_argument("--force", action="store_true", help="overwrite NEW_FILE if it exists and is not empty")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue NEW_FILE, which an interrupted rebuild of the same topic left, from its stored offsets",
    )
    parser.add_argument(
        "--served-db",
        default=settings.db,
        help=f"the file NEW_FILE is to replace (env {ENV_DB}; default %(default)s): the rebuild refuses to start "
        "unless 1.5 times its size is free beside NEW_FILE",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="events per fold transaction (default 50000)"
    )
    add_broker_args(parser, settings)
    parser.add_argument("--url", default=env(ENV_URL, DEFAULT_URL), help=f"with --live: the server (env {ENV_URL})")
    parser.add_argument(
        "--token", default=env(ENV_ADMIN_TOKEN), help=f"with --live: a staff API token (env {ENV_ADMIN_TOKEN})"
    )
    parser.set_defaults(func=_rebuild)


def _register_status(sub: argparse._SubParsersAction, settings: Settings) -> None:
    parser = sub.add_parser(
        "status",
        help="lag per partition, events applied, dead letters, waiting events, file size and version",
        description="Reads a read-model file that no process is writing (read-only), and the topic's end offsets. "
        "While `serve` holds the file, use --url (or /readyz and /metrics).",
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    add_db_arg(parser, settings)
    add_broker_args(parser, settings)
    add_server_args(parser, flag_help="ask a running serve instead of opening the file")
    parser.set_defaults(func=_status)


def _register_dead_letters(sub: argparse._SubParsersAction, settings: Settings) -> None:
    parser = sub.add_parser("dead-letters", help="list, export or retry the events the projector set aside")
    commands = parser.add_subparsers(dest="dead_letters_command", required=True, metavar="ACTION")

    listing = commands.add_parser("list", help="the dead letters in log order (partition, offset)")
    listing.add_argument("--reason", choices=REASONS, help="only this reason")
    listing.add_argument("--limit", type=positive_int, default=50, help="at most this many (default %(default)s)")
    listing.add_argument("--json", action="store_true", help="JSON lines, as `export` writes them")
    add_db_arg(listing, settings)
    add_server_args(listing, flag_help="ask a running serve instead of opening the file")
    listing.set_defaults(func=_dead_letters_list)

    export = commands.add_parser(
        "export", help="write them as JSON lines: raw key/value as base64, topic, partition, offset, reason, detail"
    )
    export.add_argument("file", metavar="FILE", help="output file ('-' for stdout)")
    export.add_argument("--reason", choices=REASONS, help="only this reason")
    add_db_arg(export, settings)
    export.set_defaults(func=_dead_letters_export)

    retry = commands.add_parser(
        "retry",
        help="re-offer them to this release's fold in log order; those that apply leave the table",
    )
    retry.add_argument("--reason", choices=REASONS, help="only this reason")
    add_db_arg(retry, settings)
    add_server_args(retry, flag_help="make a running serve retry on the file it holds")
    retry.set_defaults(func=_dead_letters_retry)


# -- helpers ----------------------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> int:
    print(f"chat-analytics: {message}", file=sys.stderr)
    return code


HELD_BY_WRITER = (
    "{db} is open in another process (serve or project hold it while they run): "
    "use --url to ask a running serve, or its /readyz and /metrics"
)


def _open(db: str, *, read_only: bool) -> Any:
    """Opens an existing read-model file; raises SystemExit-worthy messages as ValueError."""
    import duckdb

    from schemas.readmodel import connect

    if not Path(db).exists():
        raise ValueError(f"{db} does not exist")
    try:
        return connect(db, read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise ValueError(HELD_BY_WRITER.format(db=db)) from None
        raise


def _client(url: str, token: str | None) -> Any:
    from cli.admin_client import AdminClient

    return AdminClient(url, token)


# -- rebuild ----------------------------------------------------------------------------------------


def _rebuild(args: argparse.Namespace) -> int:
    if args.live:
        if args.until is not None:
            return _fail("--until builds a file for an audit: use it with --db, not --live", 2)
        if args.resume:
            return _fail("--resume continues a file of `rebuild --db`: use it with --db, not --live", 2)
        return _rebuild_live(args)
    if args.resume and args.force:
        return _fail("--resume keeps NEW_FILE and --force replaces it: pass one of them", 2)
    if args.resume and args.until is not None:
        # The first run's bound is not kept in the file: a different one would mix two points in time.
        return _fail("--resume does not take --until: rebuild an audit file again with --force", 2)
    return _rebuild_offline(args)


def _rebuild_offline(args: argparse.Namespace) -> int:
    from cli.progress import Reporter
    from projector import conversations, forget
    from projector.rebuild import (
        CATCH_UP_BATCH_SIZE,
        FileNotEmpty,
        NotResumable,
        Progress,
        StopFlag,
        TopicMissing,
        check_resumable,
        checkpoint_and_close,
        fold_to,
        log_bounds,
        prepare_target,
        settle_conversations,
    )
    from projector.source import TopicSource
    from projector.topic_identity import TopicChanged
    from schemas.readmodel import connect, stored_offsets

    if not args.bootstrap_servers:
        return _fail(f"no Kafka bootstrap servers: pass --bootstrap-servers or set {ENV_BOOTSTRAP_SERVERS}", 2)
    # A rebuild is usually meant to replace the served file: refuse to start it where its copy cannot fit.
    from projector.bluegreen import rebuild_room

    served = Path(args.served_db)
    if served.exists() and served.resolve() != Path(args.new_db).resolve():
        room = rebuild_room(served, Path(args.new_db).resolve())
        if not room["enough"]:
            return _fail(room["detail"], 2)
    try:
        if args.resume:
            check_resumable(args.new_db, args.topic)
        else:
            prepare_target(args.new_db, force=args.force)
    except NotResumable as exc:
        return _fail(str(exc), 2)
    except FileNotEmpty as exc:
        try:
            check_resumable(args.new_db, args.topic)
        except NotResumable:
            return _fail(str(exc), 2)
        return _fail(
            f"{args.new_db} is what an interrupted rebuild of {args.topic} left: pass --resume to continue it, or "
            "--force to start again",
            2,
        )
    from kafka.errors import KafkaError

    try:
        bounds = log_bounds(args.bootstrap_servers, args.topic, args.until)
    except TopicMissing as exc:
        return _fail(str(exc))
    except KafkaError as exc:
        return _fail(f"cannot reach the Kafka broker at {args.bootstrap_servers}: {exc}")
    deleted = bounds.deleted()
    if deleted:
        print(
            f"warning: partitions {sorted(deleted)} no longer start at offset 0 (finite retention once?): "
            "the events before their first offsets are gone and cannot be folded",
            file=sys.stderr,
        )
    until = f" up to records stamped {args.until.isoformat()}" if args.until else ""
    doing = "resuming the rebuild of" if args.resume else "rebuilding"
    print(
        f"{doing} {args.new_db} from {args.topic}{until}: {bounds.total:,} records, target offsets {bounds.targets}",
        file=sys.stderr,
    )
    stop = StopFlag()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    progress = Progress()
    con = connect(args.new_db)
    retention_days = Settings.from_env().retention_days
    if not args.resume:  # a resumed file keeps both from its first run
        # Before the first record, so what is older than the horizon is dropped as it arrives (docs/privacy.md).
        forget.set_watermark(con, forget.horizon(retention_days))
        conversations.defer(con)  # computed once at the end (projector/conversations.py)
    started = time.monotonic()
    folded = 0
    failure: Exception | None = None
    try:
        with Reporter(lambda: {**progress.as_json(), "phase": None}):
            try:
                folded = fold_to(
                    con,
                    source=TopicSource(
                        args.bootstrap_servers,
                        args.topic,
                        group_id=None,
                        batch_size=args.batch_size or CATCH_UP_BATCH_SIZE,
                    ),
                    bounds=bounds,
                    progress=progress,
                    should_stop=stop,
                )
            except Exception as exc:  # what fold_to's own resumes did not get past (a broker gone for good)
                failure = exc
        stored = stored_offsets(con, args.topic)
        if not stop() and failure is None:
            purged = forget.purge(con, retention_days)
            if purged.turns:
                print(f"retention ({retention_days} days): purged {purged.as_json()}", file=sys.stderr)
            settle_conversations(con)
    finally:
        checkpoint_and_close(con)
        signal.signal(signal.SIGINT, previous)
    if isinstance(failure, TopicChanged):  # a resumed file begun from another topic of this name
        return _fail(f"rebuild refused: {failure}", 2)
    short = {p: t for p, t in bounds.targets.items() if max(stored.get(p, 0), bounds.starts.get(p, 0)) < t}
    resume = f"continue it with `chat-analytics rebuild --db {args.new_db} --resume`"
    if failure is not None:
        return _fail(
            f"rebuild failed ({one_line(failure)}): {args.new_db} is incomplete (partitions "
            f"{sorted(short)} short of their targets); {resume} once the cause is gone"
        )
    if short:
        return _fail(
            f"interrupted: {args.new_db} is incomplete (partitions {sorted(short)} short of their targets); {resume}"
        )
    elapsed = time.monotonic() - started
    this_run = f" ({folded:,} folded by this run)" if args.resume else ""
    print(
        f"done: {progress.done:,} records{this_run} in {elapsed:.1f} s ({folded / max(elapsed, 1e-9):,.0f}/s) into "
        f"{args.new_db}",
        file=sys.stderr,
    )
    return 0


def _rebuild_live(args: argparse.Namespace) -> int:
    from cli.admin_client import AdminError
    from cli.progress import Reporter

    client = _client(args.url, args.token)
    try:
        status, body = client.call("POST", "/api/admin/rebuild/")
    except AdminError as exc:
        return _fail(f"could not start the rebuild: {exc}")
    if status == 409:
        print("a rebuild is already running; following it", file=sys.stderr)
    latest: dict[str, Any] = body.get("rebuild", body) if isinstance(body, dict) else {}

    def snapshot() -> dict[str, Any]:
        return latest

    with Reporter(snapshot):
        while latest.get("state") in ("running", "switching"):
            time.sleep(POLL_S)
            try:
                _, latest = client.call("GET", "/api/admin/rebuild/")
            except AdminError as exc:
                # The switch holds requests for a moment; a transient failure is not the rebuild's.
                print(f"\nprogress unavailable: {exc}", file=sys.stderr)
    if latest.get("state") == "done":
        print(f"rebuild done: {args.url} now serves the new file", file=sys.stderr)
        return 0
    failed = f"rebuild {latest.get('state')}: {latest.get('error')}"
    if latest.get("resumable"):
        failed += (
            f"; {args.url} still serves its current file. Run this command again once the cause is gone: the "
            f"rebuild continues from where this attempt stopped ({latest.get('events_done', 0):,} events)"
        )
    return _fail(failed)


# -- status -----------------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from projector.status import render_text

    if args.url:
        from cli.admin_client import AdminError

        try:
            _, doc = _client(args.url, args.token).call("GET", "/api/admin/status/")
        except AdminError as exc:
            return _fail(str(exc))
    else:
        try:
            doc = _file_status(args)
        except ValueError as exc:
            return _fail(str(exc))
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(render_text(doc))
        rebuild = (doc.get("live") or {}).get("rebuild")
        if rebuild:
            print(f"rebuild:            {rebuild['state']} ({rebuild.get('phase')})")
    return 0


def _file_status(args: argparse.Namespace) -> dict[str, Any]:
    from projector.rebuild import log_bounds
    from projector.status import STATUS_BROKER_TIMEOUT_S, file_figures, report

    con = _open(args.db, read_only=True)
    try:
        figures = file_figures(con, args.topic)
    finally:
        con.close()
    ends: dict[int, int] | None = None
    starts: dict[int, int] | None = None
    topic_id = None
    broker_error = None
    if args.bootstrap_servers:
        try:
            bounds = log_bounds(args.bootstrap_servers, args.topic, timeout_s=STATUS_BROKER_TIMEOUT_S)
            ends, starts, topic_id = bounds.ends, bounds.starts, bounds.topic_id
        except Exception as exc:
            broker_error = one_line(exc)
    else:
        broker_error = f"no broker given (--bootstrap-servers or {ENV_BOOTSTRAP_SERVERS})"
    retention = None
    if args.bootstrap_servers:
        from broker.topics import describe_retention

        retention = describe_retention(args.bootstrap_servers, args.topic, Settings.from_env().retention_days)
    return report(
        figures,
        topic=args.topic,
        path=args.db,
        end_offsets=ends,
        broker_error=broker_error,
        retention=retention,
        disk_warn_bytes=Settings.from_env().disk_warn_bytes,
        topic_id=topic_id,
        start_offsets=starts,
    )


# -- dead letters -----------------------------------------------------------------------------------


def _dead_letters_list(args: argparse.Namespace) -> int:
    if args.url:
        from cli.admin_client import AdminError

        try:
            _, letters = _client(args.url, args.token).call(
                "GET", "/api/admin/dead-letters/", {"reason": args.reason, "limit": args.limit}
            )
        except AdminError as exc:
            return _fail(str(exc))
    else:
        from projector.deadletters import iter_dead_letters

        try:
            con = _open(args.db, read_only=True)
        except ValueError as exc:
            return _fail(str(exc))
        try:
            letters = [d.as_json() for d in iter_dead_letters(con, reason=args.reason, limit=args.limit)]
        finally:
            con.close()
    if args.json:
        for letter in letters:
            print(json.dumps(letter, sort_keys=True))
        return 0
    if not letters:
        print("no dead letters" + (f" with reason {args.reason}" if args.reason else ""))
        return 0
    print(f"{'partition':>9} {'offset':>10}  {'reason':<21} {'type':<26} event_id / detail")
    for d in letters:
        print(f"{d['partition']:>9} {d['offset']:>10}  {d['reason']:<21} {d['type'] or '-':<26} {d['event_id'] or '-'}")
        print(f"{'':>22}{_short(d['detail'], 200)}")
    if len(letters) == args.limit:
        print(f"(first {args.limit}; --limit N for more, `dead-letters export FILE` for all)")
    return 0


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _dead_letters_export(args: argparse.Namespace) -> int:
    from projector.deadletters import export_jsonl, iter_dead_letters

    try:
        con = _open(args.db, read_only=True)
    except ValueError as exc:
        return _fail(str(exc))
    try:
        letters = iter_dead_letters(con, reason=args.reason)
        if args.file == "-":
            n = export_jsonl(letters, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with open(args.file, "wb") as out:
                n = export_jsonl(letters, out)
    finally:
        con.close()
    print(f"exported {n} dead letters" + ("" if args.file == "-" else f" to {args.file}"), file=sys.stderr)
    return 0


def _dead_letters_retry(args: argparse.Namespace) -> int:
    if args.url:
        from cli.admin_client import AdminError

        try:
            status, result = _client(args.url, args.token).call(
                "POST", "/api/admin/dead-letters/retry/", {"reason": args.reason}
            )
        except AdminError as exc:
            return _fail(str(exc))
        if status == 409:
            return _fail(str(result.get("detail") if isinstance(result, dict) else result))
    else:
        from projector.deadletters import retry

        try:
            con = _open(args.db, read_only=False)
        except ValueError as exc:
            return _fail(str(exc))
        try:
            result = retry(con, reason=args.reason).as_json()
            con.execute("CHECKPOINT")
        finally:
            con.close()
    print(_retry_summary(result))
    return 0


def _retry_summary(result: dict[str, Any]) -> str:
    applied = result["applied"]
    dead = result["still_dead"]
    lines = [f"offered {result['offered']} dead letters to the fold"]
    lines.append(f"  applied: {sum(applied.values())}" + (f" {applied}" if applied else ""))
    lines.append(f"  still dead letters (with their new reason): {sum(dead.values())}" + (f" {dead}" if dead else ""))
    lines.append(f"  now waiting for their turn: {result['waiting']}")
    lines.append(f"  dropped as duplicates of an event already applied: {result['duplicates']}")
    return "\n".join(lines)
