"""`chat-analytics publish-demo`: publish realistic demo traffic (ingest/demo.py) to the topic."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from itertools import islice

from broker.errors import one_line
from cli.options import add_broker_args
from schemas.settings import ENV_BOOTSTRAP_SERVERS, Settings

# Rate-limited publishing sends in slices this long, so the pace is even without a sleep per event.
_SLICE_SECONDS = 0.1
_UNLIMITED_CHUNK = 10_000


def register(sub: argparse._SubParsersAction) -> None:
    settings = Settings.from_env()
    parser = sub.add_parser(
        "publish-demo",
        help="publish deterministic, realistic demo traffic to the topic",
        description="Publishes N demo events: sessions of 1-8 turns from a few hundred users over the last "
        "30 days, with feedback, clicks, flagged turns, judge reviews and usage events.",
    )
    parser.add_argument("--events", type=_non_negative_int, required=True, metavar="N", help="how many events")
    parser.add_argument(
        "--rate", type=_non_negative_float, default=0.0, metavar="R", help="events per second (0: as fast as possible)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same events")
    parser.add_argument(
        "--bad-share",
        type=_share,
        default=0.0,
        metavar="F",
        help="share (0..1) of events that the projector must dead-letter or ignore as duplicates",
    )
    parser.add_argument(
        "--now",
        type=_aware_datetime,
        default=None,
        help="the 'now' the traffic ends at, RFC 3339 with offset (default: the current time)",
    )
    add_broker_args(parser, settings)
    parser.set_defaults(func=_publish_demo)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("needs an offset, e.g. 2026-11-26T12:00:00Z")
    return value


def _publish_demo(args: argparse.Namespace) -> int:
    if not args.bootstrap_servers:
        print(f"no Kafka: pass --bootstrap-servers or set {ENV_BOOTSTRAP_SERVERS}", file=sys.stderr)
        return 2
    from kafka.errors import KafkaError

    from ingest.demo import DemoTraffic
    from ingest.publisher import Publisher

    traffic = iter(DemoTraffic(args.events, seed=args.seed, now=args.now, bad_share=args.bad_share))
    chunk = max(1, int(args.rate * _SLICE_SECONDS)) if args.rate else _UNLIMITED_CHUNK
    sent = 0
    started = time.monotonic()
    try:
        with Publisher(args.bootstrap_servers, args.topic) as publisher:
            while True:
                count = publisher.publish_raw(islice(traffic, chunk), flush=False)
                if not count:
                    break
                sent += count
                if args.rate:
                    # Sleep until the moment the events sent so far are due, so the average rate holds.
                    delay = started + sent / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            publisher.flush()
    except KafkaError as exc:
        print(f"publish-demo failed after {sent} events: {one_line(exc)}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    rate = sent / elapsed if elapsed > 0 else float("inf")
    print(f"published {sent} events to {args.topic} in {elapsed:.2f} s ({rate:,.0f} events/s)")
    return 0
