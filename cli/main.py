"""`chat-analytics`: one entry point, one module per command group.

Each module in COMMAND_MODULES has `register(subparsers)`, which adds its sub-commands and sets
`func` on them; the modules import their packages lazily so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: tuple[str, ...] = (
    "cli.broker_cmd",  # broker start|stop|status
    "cli.topic_cmd",  # topic create
    "cli.ingest_cmd",  # publish-demo
    "cli.projector_cmd",  # project
    "cli.serve_cmd",  # serve
    "cli.ops_cmd",  # rebuild, status, dead-letters
    "cli.token_cmd",  # token create|list|revoke
    "cli.privacy_cmd",  # erase
    "cli.snapshot_cmd",  # snapshot
    "cli.replicas_cmd",  # replicas
    "cli.demo_cmd",  # demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chat-analytics",
        description="Event-sourced analytics for the anonymous chat assistant.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ValueError as exc:  # a setting out of range (schemas/settings.py says which)
        print(f"chat-analytics: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
