"""`chat-analytics broker start|stop|status|fetch`: the local Apache Kafka broker (no Docker needed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from schemas.settings import ENV_HOME, Settings

# `status` exit codes follow the LSB convention for init scripts, so shell scripts can test them.
STATUS_RUNNING = 0
STATUS_UNRESPONSIVE = 1
STATUS_STOPPED = 3


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("broker", help="run a local single-node Apache Kafka (KRaft) from Maven-resolved jars")
    commands = parser.add_subparsers(dest="broker_command", required=True, metavar="ACTION")

    def add(name: str, help_: str, func) -> argparse.ArgumentParser:  # noqa: ANN001
        command = commands.add_parser(name, help=help_, description=help_)
        command.add_argument(
            "--home",
            type=Path,
            default=None,
            help=f"folder for the Kafka jars and the broker's data (default: ${ENV_HOME} or ./.cache/chat-analytics)",
        )
        command.set_defaults(func=func)
        return command

    start = add("start", "start the broker in the background (or find it running); print its bootstrap address", _start)
    start.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for it to answer (default 120)")
    add("stop", "stop the broker started by `broker start` (its data is kept)", _stop)
    add("status", "say whether the broker runs; exit 0 running, 1 unresponsive, 3 stopped", _status)
    fetch = add("fetch", "download the Kafka jars through Maven now (else they come on first start)", _fetch)
    fetch.add_argument(
        "--if-needed",
        action="store_true",
        help="skip when CHAT_ANALYTICS_BOOTSTRAP_SERVERS is set or a Docker engine answers (no local broker needed)",
    )


def _home(args: argparse.Namespace) -> Path:
    return args.home if args.home is not None else Path(Settings.from_env().home)


def _start(args: argparse.Namespace) -> int:
    from broker.jars import MissingToolError
    from broker.local import start_detached

    try:
        state = start_detached(_home(args), timeout_s=args.timeout)
    except (MissingToolError, RuntimeError, TimeoutError) as exc:
        print(f"chat-analytics broker start: {exc}", file=sys.stderr)
        return 1
    print(f"Kafka broker running (pid {state.pid}, log {state.log})", file=sys.stderr)
    print(state.bootstrap_servers)
    return 0


def _stop(args: argparse.Namespace) -> int:
    from broker.local import stop_detached

    state = stop_detached(_home(args))
    if state is None:
        print("no broker was running")
    else:
        print(f"stopped the broker at {state.bootstrap_servers} (pid {state.pid})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from broker.local import is_answering, status

    state = status(_home(args))
    if state is None:
        print("stopped")
        return STATUS_STOPPED
    if not is_answering(state):
        print(f"unresponsive: pid {state.pid} runs but {state.bootstrap_servers} does not answer (log {state.log})")
        return STATUS_UNRESPONSIVE
    print(f"running {state.bootstrap_servers} (pid {state.pid}, log {state.log})")
    return STATUS_RUNNING


def _fetch(args: argparse.Namespace) -> int:
    from broker.jars import MissingToolError, ensure_kafka_libs

    if args.if_needed:
        from broker.selection import remote_broker_available

        reason = remote_broker_available()
        if reason is not None:
            print(f"local Kafka jars not needed: {reason}")
            return 0
    try:
        print(ensure_kafka_libs(_home(args)))
    except (MissingToolError, RuntimeError) as exc:
        print(f"chat-analytics broker fetch: {exc}", file=sys.stderr)
        return 1
    return 0
