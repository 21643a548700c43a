"""A local single-node Apache Kafka (KRaft combined mode) run straight from the Maven-resolved jars.

Two ways to run it:

- `start_detached(home)`: the long-lived broker behind `chat-analytics broker start|stop|status`, in
  `<home>/broker/` with a state file (pid, ports), detached from the terminal so that it outlives the
  command, idempotent, and restartable on its data.
- `start_ephemeral(home)`: a broker owned by the calling process (a test session, a benchmark), in a
  folder of its own that is deleted when it stops; it can never outlive its owner (see lifetime.py).

A static quorum (`controller.quorum.voters`) rather than a dynamic one keeps the data folder valid
when a restart has to move to other ports: the voter set is read from the properties file each
start instead of being frozen into the formatted metadata log.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from broker.jars import ensure_kafka_libs, file_lock, java_command
from broker.lifetime import die_with_parent, process_alive, start_watchdog
from broker.probe import answers_metadata, wait_until_answering
from loopback.ports import bindable, free_ports

HEAP = "-Xmx512m"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 3000

BROKER_SETTINGS: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "auto.create.topics.enable": "true",
    "num.partitions": "1",
    "offsets.topic.replication.factor": "1",
    # 50 partitions (the default) make the first consumer group on a fresh broker slow to come up.
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "10",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # The topic is the source of truth: nothing on this broker is ever deleted for age or size.
    "log.retention.ms": "-1",
    "log.retention.bytes": "-1",
}


@dataclass(frozen=True)
class Ports:
    broker: int
    controller: int


@dataclass(frozen=True)
class BrokerState:
    """What `<home>/broker/state.json` holds about the detached broker."""

    pid: int
    bootstrap_servers: str
    broker_port: int
    controller_port: int
    properties: str
    log: str
    started_at: float


def new_ports() -> Ports:
    # Below the kernel's ephemeral range (loopback.ports): the JVM binds them seconds after this choice,
    # and meanwhile an outgoing connection could be given a port of that range.
    base = free_ports(2)
    return Ports(broker=base, controller=base + 1)


def render_properties(data_dir: Path, ports: Ports) -> str:
    settings = {
        **BROKER_SETTINGS,
        "listeners": f"PLAINTEXT://127.0.0.1:{ports.broker},CONTROLLER://127.0.0.1:{ports.controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{ports.broker}",
        "controller.quorum.voters": f"1@127.0.0.1:{ports.controller}",
        "log.dirs": str(data_dir),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def new_cluster_id() -> str:
    # Kafka's own format (what `kafka-storage random-uuid` prints): 16 random bytes, base64url, no padding.
    # Like Kafka's Uuid.randomUuid, never one that starts with "-": the storage tool's argument parser
    # would read it as an option and formatting would fail (about one start in 64).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def _jvm(libs: Path, main_class: str, *args: str) -> list[str]:
    return [
        java_command(),
        HEAP,
        "-Djava.awt.headless=true",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def format_storage(libs: Path, properties: Path, data_dir: Path, log: Path) -> None:
    """Format the KRaft metadata folder once; a formatted folder keeps its cluster id and topics."""
    if (data_dir / "meta.properties").is_file():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    command = _jvm(libs, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(properties))
    with log.open("ab") as out:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"formatting Kafka storage in {data_dir} failed (exit {result.returncode}):\n{tail(log)}")


def tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"


def _launch(
    libs: Path,
    properties: Path,
    log: Path,
    *,
    detached: bool,
    preexec: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            _jvm(libs, "kafka.Kafka", str(properties)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            # A detached broker gets its own session so that the Ctrl-C of the shell that started it
            # (or of `make demo`) does not reach it.
            start_new_session=detached,
            preexec_fn=preexec,
            cwd=str(properties.parent),
        )


def _failure_check(process: subprocess.Popen[bytes], log: Path) -> Callable[[], str | None]:
    def check() -> str | None:
        code = process.poll()
        if code is None:
            return None
        return f"the Kafka broker exited with code {code} while starting; its log ({log}) ends with:\n{tail(log)}"

    return check


def _stop_process(pid: int, timeout_s: float, wait: Callable[[float], bool]) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait(timeout_s):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait(10.0)


def _wait_gone(pid: int) -> Callable[[float], bool]:
    def wait(timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while process_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    return wait


# --- the detached broker of `chat-analytics broker start|stop|status` ---------------------------------


def broker_dir(home: Path) -> Path:
    return home / "broker"


def state_path(home: Path) -> Path:
    return broker_dir(home) / "state.json"


def read_state(home: Path) -> BrokerState | None:
    try:
        return BrokerState(**json.loads(state_path(home).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _is_our_process(state: BrokerState) -> bool:
    """The pid is alive and still the java we started (pids are reused after a reboot)."""
    if not process_alive(state.pid):
        return False
    cmdline = Path(f"/proc/{state.pid}/cmdline")
    if cmdline.exists():
        try:
            return state.properties.encode() in cmdline.read_bytes()
        except OSError:
            return False
    return True


def status(home: Path) -> BrokerState | None:
    """The running detached broker, or None when there is none (a stale state file is ignored)."""
    state = read_state(home)
    if state is None or not _is_our_process(state):
        return None
    return state


def _pick_ports(previous: BrokerState | None) -> Ports:
    # Keep the previous address when possible, so that configured clients keep working after a restart.
    if previous is not None and bindable(previous.broker_port) and bindable(previous.controller_port):
        return Ports(broker=previous.broker_port, controller=previous.controller_port)
    return new_ports()


def start_detached(home: Path, timeout_s: float = START_TIMEOUT_S) -> BrokerState:
    """Start the detached broker, or return the running one; blocks until it answers metadata."""
    # Absolute, because Java runs in the broker's folder and the state file must not depend on our cwd.
    home = home.resolve()
    folder = broker_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / "lock"):
        running = status(home)
        if running is not None:
            wait_until_answering(running.bootstrap_servers, timeout_s)
            return running
        libs = ensure_kafka_libs(home)
        ports = _pick_ports(read_state(home))
        data_dir = folder / "data"
        properties = folder / "server.properties"
        log = folder / "broker.log"
        properties.write_text(render_properties(data_dir, ports))
        format_storage(libs, properties, data_dir, log)
        process = _launch(libs, properties, log, detached=True)
        state = BrokerState(
            pid=process.pid,
            bootstrap_servers=f"127.0.0.1:{ports.broker}",
            broker_port=ports.broker,
            controller_port=ports.controller,
            properties=str(properties.resolve()),
            log=str(log.resolve()),
            started_at=time.time(),
        )
        _write_state(home, state)
        try:
            wait_until_answering(state.bootstrap_servers, timeout_s, _failure_check(process, log))
        except BaseException:
            _stop_process(process.pid, 10.0, lambda t: _wait_popen(process, t))
            raise
        return state


def stop_detached(home: Path, timeout_s: float = STOP_TIMEOUT_S) -> BrokerState | None:
    """Stop the detached broker (a clean shutdown, so the next start does not recover logs); None if none ran."""
    folder = broker_dir(home)
    if not folder.is_dir():
        return None
    with file_lock(folder / "lock"):
        state = status(home)
        if state is not None:
            _stop_process(state.pid, timeout_s, _wait_gone(state.pid))
        return state


def is_answering(state: BrokerState) -> bool:
    return answers_metadata(state.bootstrap_servers)


def _write_state(home: Path, state: BrokerState) -> None:
    path = state_path(home)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(state), indent=2) + "\n")
    temporary.replace(path)


def _wait_popen(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


# --- a broker owned by the calling process -------------------------------------------------------------


class EphemeralBroker:
    """A private broker for one process; `stop()` kills it and deletes its folder."""

    def __init__(self, folder: Path, process: subprocess.Popen[bytes], bootstrap_servers: str) -> None:
        self.folder = folder
        self.process = process
        self.bootstrap_servers = bootstrap_servers
        self.log = folder / "broker.log"
        self._watchdog: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            # Its data is thrown away, so there is nothing a clean shutdown would protect.
            self.process.kill()
        _wait_popen(self.process, 30.0)
        if self._watchdog is not None:
            _wait_popen(self._watchdog, 5.0)
            if self._watchdog.poll() is None:
                self._watchdog.kill()
                _wait_popen(self._watchdog, 5.0)
        shutil.rmtree(self.folder, ignore_errors=True)
        atexit.unregister(self.stop)


def ephemeral_root(home: Path) -> Path:
    return home / "ephemeral"


def _sweep_orphans(root: Path) -> None:
    # Folders of owners that died before their watchdog could clean up (e.g. the machine was reset).
    if not root.is_dir():
        return
    for folder in root.iterdir():
        owner = folder.name.split("-", 1)[0]
        if owner.isdigit() and not process_alive(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)


def start_ephemeral(home: Path, timeout_s: float = START_TIMEOUT_S) -> EphemeralBroker:
    """Start a private broker and wait until it answers; it dies with this process at the latest."""
    home = home.resolve()
    libs = ensure_kafka_libs(home)
    root = ephemeral_root(home)
    _sweep_orphans(root)
    folder = root / f"{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    ports = new_ports()
    data_dir = folder / "data"
    properties = folder / "server.properties"
    log = folder / "broker.log"
    properties.write_text(render_properties(data_dir, ports))
    format_storage(libs, properties, data_dir, log)
    process = _launch(libs, properties, log, detached=False, preexec=die_with_parent())
    broker = EphemeralBroker(folder, process, f"127.0.0.1:{ports.broker}")
    atexit.register(broker.stop)
    broker._watchdog = start_watchdog(process.pid, folder)
    try:
        wait_until_answering(broker.bootstrap_servers, timeout_s, _failure_check(process, log))
    except BaseException as exc:
        log_text = tail(log)
        broker.stop()
        if isinstance(exc, RuntimeError | TimeoutError) and log_text not in str(exc):
            raise RuntimeError(f"{exc}\nbroker log:\n{log_text}") from exc
        raise
    return broker
