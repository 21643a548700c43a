"""`chat-analytics token create|list|revoke`: the hashed tokens file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from schemas.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    from auth.tokens import ROLES

    settings = Settings.from_env()
    parser = sub.add_parser("token", help="manage API tokens (stored as SHA-256 hashes)")
    parser.add_argument("--file", default=settings.tokens_file, help="tokens file (env CHAT_ANALYTICS_TOKENS_FILE)")
    tsub = parser.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=ROLES)
    create.set_defaults(func=_reporting(_create))
    listing = tsub.add_parser("list", help="list token ids and roles (never the tokens)")
    listing.set_defaults(func=_reporting(_list))
    revoke = tsub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    revoke.set_defaults(func=_reporting(_revoke))


def _reporting(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A broken tokens file is a clear message and exit 1, not a traceback (and is never overwritten)."""

    def run(args: argparse.Namespace) -> int:
        from auth.tokens import TokensUnavailable

        try:
            return command(args)
        except TokensUnavailable as exc:
            print(f"token: {exc}", file=sys.stderr)
            return 1

    return run


def _create(args: argparse.Namespace) -> int:
    from auth.tokens import TokenFile

    record, token = TokenFile(args.file).create(args.role)
    print(f"id {record.id}  role {record.role}")
    print(token)
    return 0


def _list(args: argparse.Namespace) -> int:
    from auth.tokens import TokenFile

    for record in TokenFile(args.file).records():
        print(f"{record.id}\t{record.role}\t{record.created_at}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from auth.tokens import TokenFile

    if TokenFile(args.file).revoke(args.token_id):
        print(f"revoked {args.token_id}")
        return 0
    print(f"no token with id {args.token_id}")
    return 1
