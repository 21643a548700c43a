"""`chat-analytics erase`: forget one visitor or one session (docs/privacy.md).

Publishes a `privacy.erasure.requested` event to the topic (or, with --url, asks a running `serve` to,
through POST /api/admin/erasures/), after checking it as the projector will: a request it would
dead-letter is refused here, before anything is published. Prints the event id once Kafka has it.
"""

from __future__ import annotations

import argparse
import json
import sys

from broker.errors import one_line
from cli.options import add_broker_args, add_server_args
from schemas.settings import ENV_BOOTSTRAP_SERVERS, Settings

EXIT_INVALID = 2
ACK_TIMEOUT_S = 60.0


def register(sub: argparse._SubParsersAction) -> None:
    settings = Settings.from_env()
    parser = sub.add_parser(
        "erase",
        help="forget one visitor (--user-slug or --ip) or one session (--session-id), for good",
        description="Publish a privacy.erasure.requested event: every turn of the visitor or session up to now, "
        "with its feedback, review and clicks, leaves the read model, and a rebuild never brings it back. "
        "Prints the event id; `chat-analytics status` and GET /api/admin/erasures/ show it once applied.",
    )
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--user-slug", metavar="S", help="the visitor's pseudonym (user_slug of their turns)")
    key.add_argument("--session-id", metavar="ID", help="one chat session")
    key.add_argument(
        "--ip",
        metavar="ADDRESS",
        help="the visitor's IP address: its user_slug is derived with CHAT_ANALYTICS_USER_SLUG_SALT",
    )
    parser.add_argument("--reason", default=None, help="kept with the erasure record (at most 500 characters)")
    add_broker_args(parser, settings)
    add_server_args(parser, flag_help="ask a running serve instead of publishing to Kafka")
    parser.set_defaults(func=_erase)


def _fail(message: str, code: int = 1) -> int:
    print(f"chat-analytics erase: {message}", file=sys.stderr)
    return code


def _erase(args: argparse.Namespace) -> int:
    from ingest.erasure import request_errors

    fields: dict[str, str] = {}
    if args.ip is not None:
        from ingest.slug import user_slug

        salt = Settings.from_env().user_slug_salt
        if not salt:
            return _fail(
                "--ip needs CHAT_ANALYTICS_USER_SLUG_SALT: without a salt no turn has a user_slug", EXIT_INVALID
            )
        try:
            fields["user_slug"] = user_slug(args.ip, salt)
        except ValueError:
            return _fail(f"--ip: {args.ip!r} is not an IP address", EXIT_INVALID)
    elif args.user_slug is not None:
        fields["user_slug"] = args.user_slug
    else:
        fields["session_id"] = args.session_id
    if args.reason is not None:
        fields["reason"] = args.reason
    errors = request_errors(fields)
    if errors:
        lines = "; ".join(f"--{name.replace('_', '-')}: {' '.join(messages)}" for name, messages in errors.items())
        return _fail(f"refused, nothing was published: {lines}", EXIT_INVALID)
    if args.url:
        return _through_server(args, fields)
    if not args.bootstrap_servers:
        return _fail(f"no Kafka: pass --bootstrap-servers or set {ENV_BOOTSTRAP_SERVERS} (or --url)", EXIT_INVALID)
    from ingest.publisher import InvalidEvent, Publisher

    try:
        with Publisher(args.bootstrap_servers, args.topic) as publisher:
            sent = publisher.request_erasure(**fields)
            sent.get(ACK_TIMEOUT_S)
    except InvalidEvent as exc:
        return _fail(f"refused, nothing was published: {exc}", EXIT_INVALID)
    except Exception as exc:
        return _fail(f"could not publish the erasure: {one_line(exc)}")
    kind = "session_id" if "session_id" in fields else "user_slug"
    print(f"erasure requested: event {sent.event_id} ({kind} {fields[kind]}) is on {args.topic}")
    return 0


def _through_server(args: argparse.Namespace, fields: dict[str, str]) -> int:
    from cli.admin_client import AdminClient, AdminError

    try:
        _, body = AdminClient(args.url, args.token).call("POST", "/api/admin/erasures/", body=fields)
    except AdminError as exc:
        return _fail(str(exc))
    if not isinstance(body, dict) or "event_id" not in body:
        return _fail(f"unexpected answer: {json.dumps(body)}")
    print(f"erasure requested: event {body['event_id']} ({body['key_kind']} {body['key']}) via {args.url}")
    return 0
