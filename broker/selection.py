"""Which Kafka broker to use, in one place for the tests, the demo and the benchmarks.

In this order:

1. `CHAT_ANALYTICS_BOOTSTRAP_SERVERS`, when set: an existing broker; nothing is started or stopped.
2. A Docker engine, when one answers a ping: an `apache/kafka` container through testcontainers.
3. The local broker from Maven-resolved jars (Java 17+ and Maven needed, no Docker).

`select_broker()` returns a `SelectedBroker` whose `stop()` stops only what that call started.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from schemas.settings import ENV_BOOTSTRAP_SERVERS, Settings, env

ENV = "env"
DOCKER = "docker"
LOCAL = "local"
CONNECT_TIMEOUT_S = 60.0


@dataclass
class SelectedBroker:
    bootstrap_servers: str
    origin: str  # ENV, DOCKER or LOCAL
    description: str
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def started_here(self) -> bool:
        return self._stop is not None

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __enter__(self) -> SelectedBroker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def remote_broker_available() -> str | None:
    """Why no local broker is needed (env or Docker), or None when the local broker would be used."""
    from broker.container import docker_available

    if env(ENV_BOOTSTRAP_SERVERS):
        return f"{ENV_BOOTSTRAP_SERVERS} is set"
    if docker_available():
        return "a Docker engine answers"
    return None


def select_broker(home: Path | None = None, *, ephemeral: bool = True) -> SelectedBroker:
    """A broker that answers metadata, or an exception saying why none could be had.

    `ephemeral=True` (tests, benchmarks): a local broker is private to this process and dies with it.
    `ephemeral=False` (the demo): the local broker is the detached one of `chat-analytics broker start`,
    whose data outlives the call; `stop()` stops it only if this call started it.
    """
    from broker.container import ApacheKafkaContainer, docker_available
    from broker.local import start_detached, start_ephemeral, status, stop_detached
    from broker.probe import wait_until_answering

    configured = env(ENV_BOOTSTRAP_SERVERS)
    if configured:
        wait_until_answering(configured, CONNECT_TIMEOUT_S)
        return SelectedBroker(configured, ENV, f"{ENV_BOOTSTRAP_SERVERS}={configured}")

    if docker_available():
        container = ApacheKafkaContainer().start()
        atexit.register(container.stop)

        def stop_container() -> None:
            container.stop()
            atexit.unregister(container.stop)

        bootstrap = container.get_bootstrap_server()
        wait_until_answering(bootstrap, CONNECT_TIMEOUT_S)
        return SelectedBroker(bootstrap, DOCKER, f"Docker container {container.image}", stop_container)

    home = home if home is not None else Path(Settings.from_env().home)
    if ephemeral:
        broker = start_ephemeral(home)
        return SelectedBroker(broker.bootstrap_servers, LOCAL, f"local Kafka in {broker.folder}", broker.stop)

    already_running = status(home) is not None
    state = start_detached(home)

    def stop_local() -> None:
        stop_detached(home)

    return SelectedBroker(
        state.bootstrap_servers,
        LOCAL,
        f"local Kafka (pid {state.pid}, log {state.log})",
        None if already_running else stop_local,
    )
