"""`chat-analytics demo` (what `make demo` runs): a broker, the topic, demo traffic, and the API in the
foreground, in one command.

Steps: pick the broker (CHAT_ANALYTICS_BOOTSTRAP_SERVERS, else Docker, else `chat-analytics broker
start`), create the topic, publish 5000 demo events (before the service starts, so the first request
already has data), keep a slow publisher running in the background, and run `chat-analytics serve` until
Ctrl-C. On the way out it stops the background publisher and whatever broker it started itself.

The service and the publishers run as `chat-analytics` sub-processes, exactly as a user would run them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from broker.errors import one_line
from broker.lifetime import die_with_parent
from broker.selection import LOCAL, select_broker
from broker.topics import DEFAULT_PARTITIONS, FiniteRetentionError, ensure_topic, retention_warning
from replicas.process import terminate
from schemas.settings import (
    ENV_API_TOKENS,
    ENV_BOOTSTRAP_SERVERS,
    ENV_USER_SLUG_SALT,
    Settings,
)

HOST = "127.0.0.1"
PORT = 8000
DEMO_TOKENS = "demo-staff-token:staff,demo-ingest-token:ingest"
DEMO_SALT = "demo-salt"
STAFF_TOKEN = "demo-staff-token"
SEED_EVENTS = ["publish-demo", "--events", "5000", "--seed", "7"]
TRICKLE = ["publish-demo", "--events", "1000000", "--rate", "5"]
STOP_TIMEOUT_S = 15.0  # then SIGKILL
# What stops the demo: Ctrl-C or `kill -INT`, `kill <pid>` or a CI timeout, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def chat_analytics(*args: str) -> list[str]:
    # The same interpreter, so the demo runs in the project's virtualenv wherever it was started from.
    return [sys.executable, "-m", "cli", *args]


def demo_environment(bootstrap_servers: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment[ENV_BOOTSTRAP_SERVERS] = bootstrap_servers
    if not environment.get(ENV_API_TOKENS):
        environment[ENV_API_TOKENS] = DEMO_TOKENS
    # An empty salt is a real setting (no user slugs), so only an absent one gets the demo salt.
    environment.setdefault(ENV_USER_SLUG_SALT, DEMO_SALT)
    return environment


def sign_in_hint(environment: dict[str, str]) -> str:
    """How to sign in to the dashboard: the demo's staff token, unless the tokens came from the user."""
    if environment.get(ENV_API_TOKENS) == DEMO_TOKENS:
        return f"sign in with the token {STAFF_TOKEN}"
    return f"sign in with a staff token of {ENV_API_TOKENS}"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="a broker, the topic, demo traffic and `serve` on http://127.0.0.1:8000 (what `make demo` runs)"
    )
    parser.add_argument("--port", type=int, default=PORT, help=f"the API's port on {HOST} (default {PORT})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace | None = None) -> int:
    port = args.port if args is not None else PORT
    # Each cleans up as Ctrl-C does instead of dying mid-way (`serve`, in a session of its own, hears of
    # none of them but from here). SIGINT explicitly too: Python leaves it ignored when the process
    # started with it ignored (anything a script started in the background with `&`), and then a SIGINT
    # would never stop the demo.
    for stop in STOP_SIGNALS:
        signal.signal(stop, _raise_interrupt)
    settings = Settings.from_env()
    home = Path(settings.home)
    say("choosing a Kafka broker (CHAT_ANALYTICS_BOOTSTRAP_SERVERS, else Docker, else the local broker)")
    try:
        broker = select_broker(home, ephemeral=False)
    except Exception as exc:
        say(f"no Kafka broker: {one_line(exc)}")
        return 1
    trickle: subprocess.Popen[bytes] | None = None
    serve: subprocess.Popen[bytes] | None = None
    try:
        say(f"Kafka: {broker.description} at {broker.bootstrap_servers}")
        environment = demo_environment(broker.bootstrap_servers)
        try:
            # The demo's own topic follows the retention policy (docs/privacy.md), set if it had another.
            result = ensure_topic(
                broker.bootstrap_servers,
                settings.topic,
                DEFAULT_PARTITIONS,
                retention_days=settings.retention_days,
                force=True,
            )
        except FiniteRetentionError as exc:
            say(f"refusing to use the topic: {exc}")
            return 2
        state = "created" if result.created else "retention set" if result.retention_fixed else "exists"
        say(f"topic {settings.topic!r}: {state}, {result.partitions} partitions, {result.retention}")
        warning = retention_warning(broker.bootstrap_servers, settings.topic, settings.retention_days)
        if warning:
            say(f"warning: {warning}")

        say("publishing 5000 demo events (seed 7)")
        subprocess.run(chat_analytics(*SEED_EVENTS), env=environment, check=True)

        trickle_log = home / "demo-publisher.log"
        trickle_log.parent.mkdir(parents=True, exist_ok=True)
        with trickle_log.open("ab") as log:
            # Its own session keeps Ctrl-C from interrupting it mid-send; it is stopped below, and the
            # parent-death signal covers a demo that is killed outright.
            trickle = subprocess.Popen(
                chat_analytics(*TRICKLE),
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        say(f"a slow publisher (5 events/s) runs in the background; its log: {trickle_log}")

        url = f"http://{HOST}:{port}"
        say(f"dashboard: {url}/  ({sign_in_hint(environment)})")
        say(f"API: {url}/api/anonymous-chat-interactions/")
        say("try:")
        print(
            f"  curl -H 'Authorization: Token {STAFF_TOKEN}' {url}/api/anonymous-chat-interactions/kpi/",
            flush=True,
        )
        say("Ctrl-C stops the demo")
        # In a session of its own, like the publisher: however the demo is asked to stop (Ctrl-C, which
        # the terminal sends to its whole foreground group, or any of STOP_SIGNALS to this process alone),
        # it stops `serve` the same way below, with one SIGTERM and a wait for its clean stop.
        serve = subprocess.Popen(
            chat_analytics("serve", "--host", HOST, "--port", str(port)),
            env=environment,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        return serve.wait()
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except subprocess.CalledProcessError as exc:
        say(f"{' '.join(exc.cmd[2:])} failed with exit code {exc.returncode}")
        return 1
    finally:
        for stop in STOP_SIGNALS:  # a second signal (Ctrl-C again, a supervisor's repeat) must not cut it short
            signal.signal(stop, signal.SIG_IGN)
        for process in (serve, trickle):
            if process is not None:
                terminate(process, STOP_TIMEOUT_S)
        if broker.started_here:
            kept = "; its data is kept for the next start" if broker.origin == LOCAL else ""
            say(f"stopping the Kafka broker this demo started{kept}")
        broker.stop()
