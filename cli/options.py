"""Flags that several commands share, each defaulting to its environment variable (schemas/settings.py)."""

from __future__ import annotations

import argparse

from projector.source import TopicSource
from schemas.settings import (
    DEFAULT_URL,
    ENV_ADMIN_TOKEN,
    ENV_BATCH_SIZE,
    ENV_BOOTSTRAP_SERVERS,
    ENV_DB,
    ENV_GROUP_ID,
    ENV_TOPIC,
    ENV_URL,
    Settings,
    env,
)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_broker_args(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """--bootstrap-servers and --topic."""
    parser.add_argument(
        "--bootstrap-servers",
        default=settings.bootstrap_servers,
        help=f"Kafka bootstrap servers host:port[,...] (env {ENV_BOOTSTRAP_SERVERS})",
    )
    parser.add_argument("--topic", default=settings.topic, help=f"event topic (env {ENV_TOPIC}; default %(default)s)")


def add_db_arg(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("--db", default=settings.db, help=f"read-model DuckDB file (env {ENV_DB}; default %(default)s)")


def add_fold_args(parser: argparse.ArgumentParser, settings: Settings) -> None:
    """--group-id and --batch-size of a command that runs the live projector."""
    parser.add_argument(
        "--group-id",
        default=settings.group_id,
        help=f"consumer group for lag monitoring only (env {ENV_GROUP_ID}; default %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=settings.batch_size,
        help=f"most events per fold transaction (env {ENV_BATCH_SIZE}; default %(default)s)",
    )


def topic_source(args: argparse.Namespace) -> TopicSource:
    """Where a command with `add_broker_args` and `add_fold_args` reads: built once, passed on whole."""
    return TopicSource(args.bootstrap_servers, args.topic, args.group_id, args.batch_size)


def add_server_args(parser: argparse.ArgumentParser, *, flag_help: str) -> None:
    """--url and --token of a command that can ask a running `serve` instead of working locally."""
    parser.add_argument(
        "--url",
        nargs="?",
        const=env(ENV_URL, DEFAULT_URL),
        default=None,
        help=f"{flag_help} (default URL: env {ENV_URL} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token", default=env(ENV_ADMIN_TOKEN), help=f"a staff API token for the server (env {ENV_ADMIN_TOKEN})"
    )
