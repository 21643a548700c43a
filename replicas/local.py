"""N local `serve` processes behind a local HAProxy: the compose `replicas` profile without Docker.

Each replica is `chat-analytics serve` on its own loopback port, with its own file and its own consumer
group, so each folds the whole topic by itself; HAProxy (replicas.haproxy) listens on one port and only
sends requests to replicas whose `/readyz` says they have caught up.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from replicas.haproxy import HAProxy, Server, render_config
from replicas.process import serve_args, terminate

# How much of a replica's log an error about it quotes: enough for a traceback's last frames.
LOG_TAIL_LINES = 40
LOG_TAIL_BYTES = 64 * 1024


@dataclass
class Replica:
    """One `serve` process; `start()` again after `kill()` restarts it on the same file."""

    name: str
    port: int
    db: Path
    group_id: str
    bootstrap_servers: str
    topic: str
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = serve_args(
            port=self.port,
            bootstrap_servers=self.bootstrap_servers,
            topic=self.topic,
            db=self.db,
            group_id=self.group_id,
        )
        return [sys.executable, "-m", "cli.main", *args, *self.extra_args]

    def start(self) -> None:
        if self.running():
            return
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(),
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parent.parent,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            # HTTPException: not an HTTP answer. A port of the ephemeral range can even be answered by the
            # probe itself: Linux may give its connection that port as its own, and TCP then connects
            # the socket to itself, which echoes the request (tests/ops/test_loopback_ports.py met it).
            return False

    def wait_ready(self, timeout: float) -> None:
        """Returns once `/readyz` answers 200; raises with the end of the replica's log when it exits or
        the time runs out, so that the error itself says why (a CI run keeps no log files)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; {self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout} s; {self.log_tail()}")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the replica's log, headed by the log's path."""
        try:
            with self.log.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
                tail = log.read().decode("utf-8", errors="replace").splitlines()[-lines:]
        except OSError as error:
            return f"its log {self.log} cannot be read: {error}"
        return f"the end of {self.log}:\n" + "\n".join(tail)

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does (no shutdown of any kind)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM, as an orchestrator stops a container: the batch in progress commits or rolls back whole."""
        terminate(self.proc, timeout)


@dataclass
class ReplicaSet:
    """Replicas `replica-1..N` on ports `first_port`.., in `directory`, and HAProxy on `port`. `slots` >
    N writes servers into the configuration for replicas started later (down until they are ready)."""

    directory: Path
    bootstrap_servers: str
    topic: str
    count: int
    port: int
    first_port: int
    group_id: str
    slots: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    extra_args: Sequence[str] = ()
    replicas: list[Replica] = field(default_factory=list)
    haproxy: HAProxy | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.replicas = [self.replica(i) for i in range(1, max(self.count, self.slots) + 1)]

    def replica(self, number: int) -> Replica:
        name = f"replica-{number}"
        return Replica(
            name=name,
            port=self.first_port + number - 1,
            db=self.directory / f"{name}.duckdb",
            group_id=f"{self.group_id}-{name}",
            bootstrap_servers=self.bootstrap_servers,
            topic=self.topic,
            log=self.directory / f"{name}.log",
            env=self.env,
            extra_args=self.extra_args,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        config = self.directory / "haproxy.cfg"
        servers = [Server(r.name, "127.0.0.1", r.port) for r in self.replicas]
        socket_path = self.directory / "haproxy.sock"
        config.write_text(render_config(servers, bind_host="127.0.0.1", bind_port=self.port, stats_socket=socket_path))
        return config

    def seed(self, snapshot: Path) -> list[Replica]:
        """Copies `snapshot` into every replica file that does not exist yet; returns those replicas."""
        seeded = []
        for replica in self.replicas[: self.count]:
            if not replica.db.exists():
                shutil.copyfile(snapshot, replica.db)
                seeded.append(replica)
        return seeded

    def start(self) -> None:
        config = self.write_config()
        self.haproxy = HAProxy(config, self.directory / "haproxy.log", self.directory / "haproxy.sock")
        self.haproxy.start()
        for replica in self.replicas[: self.count]:
            replica.start()

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        if self.haproxy is not None:
            self.haproxy.stop()
