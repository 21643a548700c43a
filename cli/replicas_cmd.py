"""`chat-analytics replicas --count N`: N `serve` replicas and an HAProxy in front of them, on this
machine, in the foreground until Ctrl-C (the layout of docker-compose.yml's `replicas` profile, without
Docker). Each replica folds the whole topic into its own file in --dir; HAProxy sends requests only to
replicas whose /readyz is 200. See docs/scaling.md."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from cli.options import add_broker_args, positive_int
from schemas.settings import ENV_BOOTSTRAP_SERVERS, Settings


def register(sub: argparse._SubParsersAction) -> None:
    settings = Settings.from_env()
    parser = sub.add_parser(
        "replicas",
        help="run N serve replicas behind a local HAProxy (needs Debian's haproxy package)",
        description=__doc__,
    )
    parser.add_argument("--count", type=positive_int, default=2, help="replicas to start (default 2)")
    parser.add_argument("--port", type=int, default=8080, help="HAProxy's port on 127.0.0.1 (default 8080)")
    parser.add_argument(
        "--first-port", type=int, default=8101, help="the first replica's port; the others follow (default 8101)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("./data/replicas"),
        help="files, logs and haproxy.cfg (default ./data/replicas)",
    )
    parser.add_argument(
        "--seed",
        type=Path,
        help="a `chat-analytics snapshot` file to start every replica whose file does not exist yet from",
    )
    parser.add_argument(
        "--group-id",
        default=settings.group_id,
        help="consumer group prefix; replica i uses <group-id>-replica-i (default %(default)s)",
    )
    add_broker_args(parser, settings)
    parser.set_defaults(func=_replicas)


def _replicas(args: argparse.Namespace) -> int:
    from replicas.haproxy import haproxy_binary
    from replicas.local import ReplicaSet

    if not args.bootstrap_servers:
        print(
            f"replicas: no Kafka bootstrap servers: pass --bootstrap-servers or set {ENV_BOOTSTRAP_SERVERS}",
            file=sys.stderr,
        )
        return 2
    try:
        haproxy_binary()
    except FileNotFoundError as exc:
        print(f"replicas: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None and not args.seed.is_file():
        print(f"replicas: no snapshot file {args.seed}", file=sys.stderr)
        return 2
    replica_set = ReplicaSet(
        directory=args.dir,
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        count=args.count,
        port=args.port,
        first_port=args.first_port,
        group_id=args.group_id,
    )
    if args.seed is not None:
        for replica in replica_set.seed(args.seed):
            print(f"{replica.name}: seeded from {args.seed}")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    replica_set.start()
    try:
        print(f"HAProxy on {replica_set.url} (config {args.dir / 'haproxy.cfg'}, log {args.dir / 'haproxy.log'})")
        for replica in replica_set.replicas:
            print(f"{replica.name}: {replica.url}  file {replica.db}  group {replica.group_id}  log {replica.log}")
        print("in rotation once each /readyz is 200; Ctrl-C stops them all")
        while not stop.wait(1.0):
            assert replica_set.haproxy is not None
            if not replica_set.haproxy.running():
                print("replicas: haproxy exited; see its log", file=sys.stderr)
                return 1
            for replica in replica_set.replicas:
                if not replica.running():
                    print(f"replicas: {replica.name} exited; see {replica.log}", file=sys.stderr)
                    return 1
        return 0
    finally:
        replica_set.stop()
