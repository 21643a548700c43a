"""`chat-analytics topic create [--update]`: the event topic, with the retention policy's retention."""

from __future__ import annotations

import argparse
import sys

from broker.errors import one_line
from schemas.settings import ENV_BOOTSTRAP_SERVERS, ENV_RETENTION_DAYS, ENV_TOPIC, KEEP_FOREVER, Settings

# Distinct from 1 (could not talk to Kafka): the topic is there but unsafe, and nothing was changed.
EXIT_FINITE_RETENTION = 2


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("topic", help="manage the event topic")
    commands = parser.add_subparsers(dest="topic_command", required=True, metavar="ACTION")
    create = commands.add_parser(
        "create",
        help="create the event topic with the retention policy's retention (idempotent); --update sets it",
        description=f"Create the event topic with retention.ms = {ENV_RETENTION_DAYS} + 1 day (-1, infinite, "
        "when that is -1), retention.bytes=-1 and cleanup.policy=delete. If it exists with that retention, nothing "
        "changes. If it exists with another, refuse (exit 2) unless --update, which sets it.",
    )
    create.add_argument(
        "--bootstrap-servers",
        default=None,
        help=f"Kafka bootstrap servers (default: ${ENV_BOOTSTRAP_SERVERS}, else the broker of `broker start`)",
    )
    create.add_argument("--topic", default=None, help=f"topic name (default: ${ENV_TOPIC} or chat.events)")
    create.add_argument("--partitions", type=int, default=None, help="partitions of a new topic (default 6)")
    create.add_argument(
        "--update",
        "--force",
        dest="force",
        action="store_true",
        help="if the topic exists with another retention, set the policy's instead of refusing",
    )
    create.set_defaults(func=_create)


def _bootstrap(explicit: str | None, settings: Settings) -> str | None:
    if explicit:
        return explicit
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    from pathlib import Path

    from broker.local import status

    running = status(Path(settings.home))
    return running.bootstrap_servers if running is not None else None


def _create(args: argparse.Namespace) -> int:
    from broker.topics import DEFAULT_PARTITIONS, FiniteRetentionError, ensure_topic, retention_ms

    settings = Settings.from_env()
    partitions = args.partitions if args.partitions is not None else DEFAULT_PARTITIONS
    if partitions < 1:
        print("chat-analytics topic create: --partitions must be at least 1", file=sys.stderr)
        return 1
    bootstrap = _bootstrap(args.bootstrap_servers, settings)
    if bootstrap is None:
        print(
            f"chat-analytics topic create: no broker: set {ENV_BOOTSTRAP_SERVERS} or run `chat-analytics broker start`",
            file=sys.stderr,
        )
        return 1
    topic = args.topic or settings.topic
    try:
        result = ensure_topic(bootstrap, topic, partitions, retention_days=settings.retention_days, force=args.force)
    except FiniteRetentionError as exc:
        print(f"chat-analytics topic create: refusing: {exc}", file=sys.stderr)
        return EXIT_FINITE_RETENTION
    except Exception as exc:
        print(f"chat-analytics topic create: {one_line(exc)}", file=sys.stderr)
        return 1
    days = settings.retention_days
    retention = "infinite retention" if days == KEEP_FOREVER else f"retention.ms={retention_ms(days)} ({days}+1 days)"
    if result.created:
        print(f"created topic {topic!r} with {result.partitions} partitions and {retention} at {bootstrap}")
    elif result.retention_fixed:
        fixed = f"{retention}, retention.bytes=-1 and cleanup.policy=delete"
        print(f"topic {topic!r} existed with another retention; set {fixed}")
    else:
        note = ""
        if args.partitions is not None and result.partitions != partitions:
            note = f" (it keeps its {result.partitions} partitions; changing them would reorder sessions)"
        print(f"topic {topic!r} already exists with {retention}{note}")
    return 0
