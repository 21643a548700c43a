"""Read replicas behind a real HAProxy, with a real broker and real DuckDB files, under a steady publish
stream and 8 reading clients (`replicas.local`, what `chat-analytics replicas` runs):

- every answer is what a single reference fold of the topic up to that answer's position gives;
- a client that sends back the last position it saw (`min_position`, and the page links) never sees
  an older one, whichever replica answers;
- SIGKILL of a replica under load costs no request (HAProxy retries the ones in flight elsewhere);
  the killed replica restarts on its file, catches up from its stored offsets and rejoins;
- a snapshot taken through the load balancer while the stream runs is consistent (it equals the
  reference fold at its own offsets), and a third replica seeded from it joins;
- once the stream stops, the three replicas give byte-identical answers to every endpoint.

Latencies are recorded (printed), not asserted tightly: this machine is shared.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from kafka import KafkaProducer

from api.app import create_app
from auth.tokens import TokenStore
from ingest.demo import DemoTraffic
from loopback.ports import free_ports
from projector.rebuild import LogBounds, fold_to, log_bounds, rebuild_source
from projector.snapshot import diff, table_rows
from replicas.haproxy import HAProxy
from replicas.local import ReplicaSet
from schemas.position import Position
from schemas.readmodel import READMODEL_VERSION, connect, stored_offsets
from serving.handle import ReadModelHandle
from tests.support import REPO
from tests.support.api_data import AUTH, PREFIX, STAFF, TOKENS

WAIT = 180.0  # a failure guard for start-up and catch-up, not a timing assertion
CLIENTS = 8
RATE = 150  # events/s published during the load
INITIAL_EVENTS = 3000


class Stream:
    """Publishes demo traffic at about RATE events/s from a thread until stopped."""

    def __init__(self, bootstrap_servers: str, topic: str, now: datetime) -> None:
        self.producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
        self.topic = topic
        self.events = iter(DemoTraffic(1_000_000, seed=2, now=now))
        self.stop_flag = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def publish(self, count: int) -> None:
        for _ in range(count):
            key, value = next(self.events)
            self.producer.send(self.topic, key=key, value=value)
        self.sent += count
        self.producer.flush(60)

    def _run(self) -> None:
        while not self.stop_flag.wait(0.1):
            self.publish(RATE // 10)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(60)
        self.producer.flush(60)
        self.producer.close()


@dataclass
class Seen:
    path: str
    params: dict[str, str]
    status: int
    position: str
    body: bytes
    date: str
    started: float
    seconds: float


@dataclass
class Client:
    """Reads through the load balancer, always sending back the last position it saw."""

    url: str
    samples: dict[str, list[str]]
    seed: int
    seen: list[Seen] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    last: Position | None = None
    next_link: str | None = None

    def request(self) -> tuple[str, dict[str, str]]:
        rng = self.rng
        if self.next_link and rng.random() < 0.4:
            # Paging: the link carries the page's own position as min_position.
            parts = urlsplit(self.next_link)
            return parts.path, dict(parse_qsl(parts.query))
        kind = rng.choice(["list", "list", "kpi", "budget", "by-user", "session", "user", "retrieve"])
        if kind == "list":
            return f"{PREFIX}/", rng.choice([{"page_size": "5"}, {"severity": "none"}, {"o": "-result_count"}])
        if kind == "kpi":
            return f"{PREFIX}/kpi/", rng.choice([{}, {"is_flagged": "true"}])
        if kind == "budget":
            return f"{PREFIX}/budget/", {}
        if kind == "by-user":
            return f"{PREFIX}/by-user/", {"page_size": "20"}
        if kind == "session":
            return f"{PREFIX}/by-session/{rng.choice(self.samples['session_id'])}/", {}
        if kind == "user":
            return f"{PREFIX}/by-user/{rng.choice(self.samples['user_slug'])}/", {}
        return f"{PREFIX}/{rng.choice(self.samples['uuid'])}/", {}

    def run(self, stop: threading.Event) -> None:
        self.rng = random.Random(self.seed)
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=60) as http:
            while not stop.is_set():
                path, params = self.request()
                params = {k: v for k, v in params.items() if k != "min_position"}
                sent = dict(params)
                if self.last is not None:
                    sent["min_position"] = self.last.token()
                started = time.monotonic()
                try:
                    response = http.get(path, params=sent)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
                    continue
                seconds = time.monotonic() - started
                if response.status_code != 200:
                    self.failures.append(f"{path} {sent}: {response.status_code} {response.text[:200]}")
                    continue
                position = Position.parse(response.headers["x-read-model-position"])
                if self.last is not None and not position.covers(self.last):
                    self.regressions.append(f"{path}: {position.token()} after {self.last.token()}")
                self.last = position
                if path == f"{PREFIX}/" and "page_size" in params:
                    links = dict(
                        (part.split(">")[1].split('"')[1], part.split(">")[0].strip(" <"))
                        for part in response.headers["link"].split(",")
                    )
                    self.next_link = links.get("next")
                self.seen.append(
                    Seen(
                        path,
                        params,
                        200,
                        position.token(),
                        response.content,
                        response.headers["date"],
                        started,
                        seconds,
                    )
                )


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")


def reference_answers(
    bootstrap_servers: str, topic: str, path: Path, positions: list[Position], answers: list[Seen]
) -> Iterator[tuple[Seen, bytes, str]]:
    """Folds the topic into a fresh file up to each position in turn (a chain: each covers the one
    before) with the real fold, and answers each recorded request at that position from it."""
    con = connect(path)
    handle = ReadModelHandle(con, path)
    partitions = sorted(log_bounds(bootstrap_servers, topic, timeout_s=15.0).ends)
    try:
        for position in positions:
            targets = {p: position.offset(p) for p in partitions}
            bounds = LogBounds(starts=dict.fromkeys(partitions, 0), ends=targets, targets=targets)
            fold_to(con, source=rebuild_source(bootstrap_servers, topic), bounds=bounds, parse_process=False)
            assert stored_offsets(con, topic) == {p: o for p, o in targets.items() if o}
            for seen in answers:
                if seen.position != position.token():
                    continue
                date = email.utils.parsedate_to_datetime(seen.date)
                app = create_app(handle, tokens=TokenStore(TOKENS), clock=lambda d=date: d, topic=topic)
                yield seen, *_asgi_get(app, seen)
    finally:
        con.close()


def _asgi_get(app: Any, seen: Seen) -> tuple[bytes, str]:
    import asyncio

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ref") as ref:
            return await ref.get(seen.path, params=seen.params, headers=AUTH)

    response = asyncio.run(get())
    assert response.status_code == 200, (seen.path, response.text)
    return response.content, response.headers["x-read-model-position"]


def chain(answers: list[Seen], most: int) -> list[Position]:
    """Up to `most` positions that were answered at, each covering the one before."""
    counts: dict[str, int] = {}
    for seen in answers:
        counts[seen.position] = counts.get(seen.position, 0) + 1
    ordered = sorted((Position.parse(t) for t in counts), key=lambda p: (sum(p.offsets), p.offsets))
    picked: list[Position] = []
    for position in ordered:
        if not picked or position.covers(picked[-1]):
            picked.append(position)
    if len(picked) <= most:
        return picked
    step = len(picked) / most
    return [picked[int(i * step)] for i in range(most)]


def test_replicas_behind_haproxy_stay_correct_monotonic_and_available(
    bootstrap_servers: str, make_topic: Any, tmp_path: Path
) -> None:
    topic = make_topic(partitions=3)
    now = datetime.now(UTC)
    stream = Stream(bootstrap_servers, topic, now)
    initial = DemoTraffic(INITIAL_EVENTS, seed=1, now=now)
    for key, value in initial:
        stream.producer.send(topic, key=key, value=value)
    stream.producer.flush(60)

    base = free_ports(4)
    replica_set = ReplicaSet(
        directory=tmp_path / "replicas",
        bootstrap_servers=bootstrap_servers,
        topic=topic,
        count=2,
        slots=3,
        port=base,
        first_port=base + 1,
        group_id=f"replicas-{topic}",
        env={
            "CHAT_ANALYTICS_API_TOKENS": f"{STAFF}:staff",
            "CHAT_ANALYTICS_TOKENS_FILE": str(tmp_path / "tokens.json"),
            "CHAT_ANALYTICS_MIN_POSITION_WAIT_MS": "15000",
        },
    )
    r1, r2, r3 = replica_set.replicas
    lb = replica_set.url
    figures: dict[str, Any] = {}
    try:
        replica_set.start()
        haproxy = replica_set.haproxy
        assert haproxy is not None
        for replica in (r1, r2):
            replica.wait_ready(WAIT)
            haproxy.wait_status(replica.name, "UP", WAIT)
        assert haproxy.stats()[r3.name]["status"].startswith("DOWN"), "a replica that is not running gets nothing"

        with httpx.Client(base_url=lb, headers=AUTH, timeout=60) as http:
            rows = http.get(f"{PREFIX}/", params={"page_size": 300}).json()
        samples = {
            "uuid": [r["uuid"] for r in rows],
            "session_id": sorted({r["session_id"] for r in rows}),
            "user_slug": sorted({r["user_slug"] for r in rows if r["user_slug"]}) or ["nobody"],
        }

        stream.start()
        stop = threading.Event()
        clients = [Client(lb, samples, seed) for seed in range(CLIENTS)]
        threads = [threading.Thread(target=c.run, args=(stop,), daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        try:
            time.sleep(6)
            killed_at = time.monotonic()
            r2.kill()
            time.sleep(6)
            survivor_until = time.monotonic()
            # The killed replica restarts on its own file, catches up from its offsets and rejoins.
            served_before = int(haproxy.stats()[r2.name]["stot"])
            r2.start()
            r2.wait_ready(WAIT)
            haproxy.wait_status(r2.name, "UP", WAIT)
            rejoined_at = time.monotonic()
            # A snapshot through the load balancer, while the stream runs and the clients read.
            snapshot = tmp_path / "snapshot.duckdb"
            done = subprocess.run(
                [sys.executable, "-m", "cli.main", "snapshot", "--db", str(snapshot), "--url", lb, "--token", STAFF],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=WAIT,
            )
            assert done.returncode == 0, done.stderr
            replica_set.replicas[2].db.parent.mkdir(exist_ok=True)
            r3.db.write_bytes(snapshot.read_bytes())
            r3.start()
            r3.wait_ready(WAIT)
            haproxy.wait_status(r3.name, "UP", WAIT)
            time.sleep(3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(120)
            stream.stop()
        stats = haproxy.stats()

        answers = [seen for c in clients for seen in c.seen]
        failures = [f for c in clients for f in c.failures]
        regressions = [r for c in clients for r in c.regressions]
        before = [s.seconds for s in answers if s.started < killed_at]
        after = [s.seconds for s in answers if killed_at <= s.started < survivor_until]
        figures = {
            "requests": len(answers),
            "failed": len(failures),
            "p99_before_kill_ms": round(p99(before) * 1000, 1),
            "p99_survivor_alone_ms": round(p99(after) * 1000, 1),
            "requests_survivor_alone": len(after),
            "rejoin_s": round(rejoined_at - survivor_until, 1),
            "haproxy": {
                name: {k: row[k] for k in ("status", "stot", "wretr", "wredis")} for name, row in stats.items()
            },
        }
        print("replica figures:", json.dumps(figures))
        assert not failures, failures[:5]
        assert not regressions, regressions[:5]
        assert len(after) > 0 and len(answers) > 100
        assert int(stats[r2.name]["stot"]) > served_before, "the restarted replica gets requests again"
        assert int(stats[r3.name]["stot"]) > 0, "the seeded replica gets requests"

        # Every answer is the reference fold's answer at that answer's position.
        positions = chain(answers, most=4)
        compared = 0
        for seen, body, position in reference_answers(
            bootstrap_servers, topic, tmp_path / "ref.duckdb", positions, answers
        ):
            assert position == seen.position
            assert body == seen.body, f"{seen.path} {seen.params} at {seen.position}"
            compared += 1
        assert compared >= len(positions) >= 2

        # The snapshot is consistent: exactly the reference fold at its own stored offsets.
        snap = connect(snapshot, read_only=True)
        try:
            snap_offsets = stored_offsets(snap, topic)
            assert sum(snap_offsets.values()) > INITIAL_EVENTS, "taken while the stream ran"
            ref = connect(tmp_path / "snapshot-ref.duckdb")
            try:
                partitions = sorted(log_bounds(bootstrap_servers, topic, timeout_s=15.0).ends)
                targets = {p: snap_offsets.get(p, 0) for p in partitions}
                bounds = LogBounds(starts=dict.fromkeys(partitions, 0), ends=targets, targets=targets)
                fold_to(ref, source=rebuild_source(bootstrap_servers, topic), bounds=bounds, parse_process=False)
                assert diff(table_rows(snap), table_rows(ref)) == {}
            finally:
                ref.close()
        finally:
            snap.close()

        # Quiet again: every replica folds to the end, then all three answer every endpoint identically.
        ends = log_bounds(bootstrap_servers, topic, timeout_s=15.0).ends
        head = Position.of(READMODEL_VERSION, topic, ends).token()
        requests = [
            (f"{PREFIX}/", {"page_size": "50"}),
            (f"{PREFIX}/", {"page_size": "7", "page": "3", "o": "-result_count"}),
            (f"{PREFIX}/", {"query": "storage", "has_feedback": "true"}),
            (f"{PREFIX}/kpi/", {}),
            (f"{PREFIX}/kpi/", {"severity": "none", "window_days": "7"}),
            (f"{PREFIX}/budget/", {}),
            (f"{PREFIX}/by-user/", {"page_size": "300"}),
            *[(f"{PREFIX}/by-session/{s}/", {}) for s in samples["session_id"][:3]],
            *[(f"{PREFIX}/by-user/{u}/", {}) for u in samples["user_slug"][:3]],
            *[(f"{PREFIX}/{u}/", {}) for u in samples["uuid"][:3]],
        ]
        for path, params in requests:
            bodies = set()
            for replica in (r1, r2, r3):
                response = httpx.get(
                    f"{replica.url}{path}", params={**params, "min_position": head}, headers=AUTH, timeout=60
                )
                assert response.status_code == 200, (replica.name, path, response.text)
                assert response.headers["x-read-model-position"] == head
                bodies.add((response.content, response.headers.get("x-result-count")))
            assert len(bodies) == 1, f"replicas differ on {path} {params}"
    finally:
        replica_set.stop()
        if not stream.stop_flag.is_set():
            stream.stop()
    if figures:
        (tmp_path / "figures.json").write_text(json.dumps(figures))


def test_the_replicas_command_runs_the_layout_until_interrupted(
    bootstrap_servers: str, make_topic: Any, tmp_path: Path
) -> None:
    topic = make_topic(partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    for key, value in DemoTraffic(300, seed=3):
        producer.send(topic, key=key, value=value)
    producer.flush(60)
    producer.close()
    base = free_ports(3)
    folder = tmp_path / "layout"
    command = [
        *(sys.executable, "-m", "cli.main", "replicas", "--count", "2", "--dir", str(folder)),
        *("--port", str(base), "--first-port", str(base + 1), "--bootstrap-servers", bootstrap_servers),
        *("--topic", topic, "--group-id", f"layout-{topic}"),
    ]
    env = {
        **os.environ,
        "CHAT_ANALYTICS_API_TOKENS": f"{STAFF}:staff",
        "CHAT_ANALYTICS_TOKENS_FILE": str(tmp_path / "tokens.json"),
    }
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        haproxy = HAProxy(folder / "haproxy.cfg", folder / "haproxy.log", folder / "haproxy.sock")
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if all(row["status"].startswith("UP") for row in haproxy.stats().values()):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("the replicas did not come up behind HAProxy")
        response = httpx.get(f"http://127.0.0.1:{base}{PREFIX}/kpi/", headers=AUTH, timeout=60)
        assert response.status_code == 200 and response.json()["interactions_total"] > 0
        assert response.headers["x-read-model-position"].startswith(f"{READMODEL_VERSION}.")
        assert {f"replica-{n}.duckdb" for n in (1, 2)} <= {p.name for p in folder.iterdir()}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT) == 0
    for port in (base, base + 1, base + 2):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers after Ctrl-C"


def test_the_local_layout_refuses_to_start_without_a_broker(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "replicas", "--count", "2", "--dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/sbin"},
        timeout=60,
    )
    assert done.returncode == 2 and "bootstrap servers" in done.stderr
