"""What the fault tests (tests/ops/test_fault_*.py) share: a broker of their own that they can SIGKILL and
start again on the same data and ports, `serve` in a subprocess, readers that time every answer, a
steady publisher, and the clean fold that a faulted file must equal.

Every wait is bounded (a failure guard, never a timing assertion); latencies are printed, not asserted
tightly, because the machine the tests run on is shared.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from broker.jars import ensure_kafka_libs
from broker.lifetime import die_with_parent
from broker.local import _failure_check, _launch, format_storage, new_ports, render_properties
from broker.probe import wait_until_answering
from broker.topics import TOPIC_CONFIG
from loopback.ports import free_port
from projector.service import ProjectorService
from projector.snapshot import table_rows
from projector.source import TopicSource
from replicas.local import Replica
from schemas.readmodel import connect
from tests.support import REPO
from tests.support.broker import kafka_home
from tests.support.events import encode, key_of, stream

WAIT = 240.0  # seconds before a test gives up waiting for something (a guard, not a timing assertion)
STAFF = "fault-staff-token"
INGEST = "fault-ingest-token"
READ_PATHS = (
    "/api/anonymous-chat-interactions/?page_size=20",
    "/api/anonymous-chat-interactions/kpi/",
    "/api/anonymous-chat-interactions/by-user/?page_size=20",
)


@contextmanager
def private_tmpfs(mount: Path, size: str) -> Iterator[tuple[Path, list[str]]]:
    """A tmpfs of `size` at `mount`, in a mount namespace of its own held by a sleeping process (root
    needed, as in CI): nothing outside sees it. Yields the mount and the command prefix (`nsenter`)
    that runs a command inside that namespace; the mount goes away with the holder."""
    mount.mkdir(parents=True, exist_ok=True)
    script = f"mount -t tmpfs -o size={size} tmpfs {mount} && echo mounted && exec sleep 1200"
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline().decode().strip()
    assert line == "mounted", f"could not mount a tmpfs in a new mount namespace (root needed): {line}"
    try:
        # --wd: entering a mount namespace resets the working directory; commands run from the repository.
        yield mount, ["nsenter", "-t", str(holder.pid), "-m", f"--wd={REPO}", "--"]
    finally:
        holder.kill()
        holder.wait(30)


def wait_until(condition: Callable[[], Any], what: str, limit_s: float = WAIT) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            value = condition()
        except (httpx.TransportError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


# -- a broker the test owns -------------------------------------------------------------------------


class KillableBroker:
    """A single-node KRaft broker in `folder`, on ports fixed at creation, so that after a SIGKILL it
    starts again on the same data at the same address (clients reconnect by themselves)."""

    def __init__(self, folder: Path) -> None:
        self.libs = ensure_kafka_libs(kafka_home())
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        # Below the ephemeral range (loopback.ports): while the broker is down, its clients keep
        # reconnecting, and a port of that range can be given to one of them (even as a connection to
        # itself), so that the restart could not bind it.
        ports = new_ports()
        self.bootstrap_servers = f"127.0.0.1:{ports.broker}"
        self.properties = folder / "server.properties"
        self.log = folder / "broker.log"
        self.properties.write_text(render_properties(folder / "data", ports))
        format_storage(self.libs, self.properties, folder / "data", self.log)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Started from the test's main thread: the broker dies with the thread that started it.
        self.process = _launch(self.libs, self.properties, self.log, detached=False, preexec=die_with_parent())
        wait_until_answering(self.bootstrap_servers, WAIT, _failure_check(self.process, self.log))

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def create_topic(self, name: str, partitions: int = 3) -> str:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id="fault-tests")
        try:
            admin.create_topics(
                {name: {"num_partitions": partitions, "configs": dict(TOPIC_CONFIG)}}, wait_for_metadata=True
            )
        finally:
            admin.close()
        return name


@dataclass
class Publishing:
    """A background producer sending demo events at a steady rate; sends that fail (the broker is
    down) are dropped: only what reached the topic counts, and the clean fold reads the topic."""

    bootstrap_servers: str
    topic: str
    per_second: float = 100.0
    seed: int = 21
    sent: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="publishing", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)

    def _run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            max_block_ms=2000,
            linger_ms=5,
        )
        try:
            events = stream(10**6, seed=self.seed, sessions=300)
            interval = 1.0 / self.per_second
            while not self._stop.is_set():
                event = next(events)
                try:
                    producer.send(self.topic, key=key_of(event), value=encode(event))
                    self.sent += 1
                except Exception:
                    self.failed += 1
                self._stop.wait(interval)
            producer.flush(60)
        except Exception:  # a test that failed mid-outage: nothing left to deliver to
            self.failed += 1
        finally:
            with contextlib.suppress(Exception):
                producer.close(10)


def publish(bootstrap_servers: str, topic: str, count: int, seed: int = 5) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20)
    try:
        for event in stream(count, seed=seed, sessions=max(10, count // 20)):
            producer.send(topic, key=key_of(event), value=encode(event))
        producer.flush(120)
    finally:
        producer.close()


def end_offsets(bootstrap_servers: str, topic: str, isolation_level: str = "read_uncommitted") -> dict[int, int]:
    """The next offset of each partition; read committed, the last stable offset (before the first
    transaction still open)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, isolation_level=isolation_level)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def clean_fold(bootstrap_servers: str, topic: str, db: Path) -> dict[str, Any]:
    con = connect(db)
    try:
        source = TopicSource(bootstrap_servers, topic, group_id=None, batch_size=5000)
        service = ProjectorService(source, con)
        try:
            service.run_until_caught_up(300)
        finally:
            service.stop()  # its consumer, whose IO thread would outlive the test's broker
        return table_rows(con)
    finally:
        con.close()


def file_rows(db: Path) -> dict[str, Any]:
    con = connect(db, read_only=True)
    try:
        return table_rows(con)
    finally:
        con.close()


# -- serve in a subprocess --------------------------------------------------------------------------


class Serve:
    """`chat-analytics serve` in a subprocess; `prefix` runs it inside another command (nsenter)."""

    def __init__(
        self,
        tmp_path: Path,
        db: Path,
        bootstrap_servers: str,
        topic: str,
        *,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        name: str = "serve",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"{name}.log"
        self.env = {
            **os.environ,
            "CHAT_ANALYTICS_API_TOKENS": f"{STAFF}:staff,{INGEST}:ingest",
            "CHAT_ANALYTICS_TOKENS_FILE": str(tmp_path / "tokens.json"),
            **(env or {}),
        }
        # The same command line as a local replica's (replicas.local), run inside `prefix` when given.
        replica = Replica(
            name=name,
            port=self.port,
            db=db,
            group_id=f"fault-{topic}",
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            log=self.log,
            extra_args=extra_args,
        )
        self.command = [*prefix, *replica.command()]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Token {STAFF}"}, timeout=timeout)

    def wait_answering(self) -> None:
        with self.client() as http:
            wait_until(lambda: self._alive() and http.get("/livez").status_code == 200, f"{self.url} to answer")

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.tail()}")
        return True

    def readyz(self) -> dict[str, Any]:
        with self.client() as http:
            return dict(http.get("/readyz").json())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
            raise AssertionError(f"serve did not stop within {timeout} s:\n{self.tail()}") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


# -- readers that time every answer -----------------------------------------------------------------


@dataclass
class Sample:
    phase: str
    path: str
    status: int  # 0: no answer (connection error or timeout)
    seconds: float


# Answers per phase before a test moves on: its p99 is then the second slowest of them, at least.
PHASE_SAMPLES = 150


class Readers:
    """A few threads polling the read endpoints in turn, each answer timed and labelled with the
    phase (`phase = "..."`) it was asked in."""

    def __init__(self, url: str, threads: int = 3, paths: Sequence[str] = READ_PATHS) -> None:
        self.url = url
        self.paths = paths
        self.phase = "before"
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Readers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Token {STAFF}"}, timeout=30) as http:
            i = offset
            while not self._stop.is_set():
                path = self.paths[i % len(self.paths)]
                i += 1
                phase = self.phase
                started = time.perf_counter()
                try:
                    status = http.get(path).status_code
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.samples.append(Sample(phase, path, status, time.perf_counter() - started))
                self._stop.wait(0.05)

    def of(self, phase: str) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.phase == phase]

    def collect(self, count: int = PHASE_SAMPLES) -> None:
        """Returns once the current phase has `count` answers: enough for its p99, however fast or busy
        the machine (a fixed sleep gave a quiet machine many more than needed, a busy one perhaps too few)."""
        phase = self.phase
        wait_until(lambda: len(self.of(phase)) >= count, f"{count} reads during '{phase}'")

    def report(self, phase: str, label: str) -> dict[str, float]:
        """p50/p99 (ms) of the answers in `phase`, printed so that a run's figures can be quoted."""
        samples = self.of(phase)
        figures = latency_figures([s.seconds for s in samples])
        statuses = sorted({s.status for s in samples})
        print(
            f"[{label}] reads during '{phase}': n={len(samples)} p50={figures['p50_ms']:.1f} ms "
            f"p99={figures['p99_ms']:.1f} ms max={figures['max_ms']:.1f} ms statuses={statuses}"
        )
        return figures


def latency_figures(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000, "max_ms": ordered[-1] * 1000}


def serve_positions(url: str) -> dict[int, int]:
    with httpx.Client(base_url=url, timeout=30) as http:
        return {p["partition"]: p["position"] for p in http.get("/readyz").json()["partitions"]}


def wait_folded(serve: Serve, bootstrap_servers: str, topic: str, limit_s: float = WAIT) -> None:
    """Until serve's projector has folded everything the topic holds now."""
    ends = end_offsets(bootstrap_servers, topic)
    wait_until(
        lambda: serve._alive() and all(serve_positions(serve.url).get(p, 0) >= e for p, e in ends.items()),
        f"serve to fold up to {ends}",
        limit_s,
    )


def interactions_total(serve: Serve) -> int:
    with serve.client() as http:
        return int(http.get("/api/anonymous-chat-interactions/?page_size=1").headers["x-result-count"])
