"""Zero-downtime rebuild of a running `serve` (a subprocess on a loopback port, a real broker), driven
by `chat-analytics rebuild --live` while readers poll the API and a writer keeps publishing: every
request is answered, counts never go backwards, the service ends on a new file that holds every
event. Also: `serve` rebuilds a file of an older read-model version by itself at start-up, and warns
about a topic with finite retention."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaProducer

from cli.main import main
from projector.fold import apply_batch
from projector.snapshot import diff, table_rows
from schemas.readmodel import READMODEL_VERSION, connect
from tests.support.api_data import AUTH, PREFIX, STAFF
from tests.support.events import encode, feedback, key_of, stream, turn
from tests.support.kafka import publish, read_back
from tests.support.readmodel import rows_of
from tests.support.serve import Server, wait_for


@dataclass
class Poller:
    """A thread that keeps asking one endpoint for one count, and notes anything wrong."""

    base: str
    path: str
    count: Callable[[httpx.Response], int]
    stop: threading.Event
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    backwards: list[tuple[int, int]] = field(default_factory=list)
    last: int = -1

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers=AUTH, timeout=60) as http:
            while not self.stop.is_set():
                try:
                    response = http.get(self.path)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                self.requests += 1
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                n = self.count(response)
                if n < self.last:
                    self.backwards.append((self.last, n))
                self.last = max(self.last, n)


def header_count(response: httpx.Response) -> int:
    return int(response.headers["x-result-count"])


def test_live_rebuild_under_reads_and_writes_answers_everything_and_loses_nothing(
    bootstrap_servers: str, topic: str, tmp_path: Path, start_server: Callable[..., Server], capsys: Any
) -> None:
    publish(bootstrap_servers, topic, list(stream(25_000, seed=17, sessions=400)))
    server = start_server(topic, tmp_path / "served.duckdb")
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as http:
        wait_for(lambda: http.get("/readyz").status_code == 200, "readiness", server.proc)
    inode_before = server.db.stat().st_ino

    stop_reading, stop_writing = threading.Event(), threading.Event()
    pollers = [
        Poller(server.base, f"{PREFIX}/kpi/", lambda r: r.json()["interactions_total"], stop_reading),
        Poller(server.base, f"{PREFIX}/?page_size=5", header_count, stop_reading),
        Poller(server.base, f"{PREFIX}/by-user/?page_size=1", header_count, stop_reading),
        Poller(server.base, "/readyz", lambda r: 0, stop_reading),  # readiness must not flap either
    ]
    written: list[int] = [0]

    def write() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
        try:
            while not stop_writing.wait(0.05):
                burst = [turn(f"w-{uuid.uuid4().hex[:10]}", user_slug=f"u{written[0] % 7}") for _ in range(10)]
                burst.append(feedback(burst[0], 1))
                for event in burst:
                    producer.send(topic, key=key_of(event), value=encode(event))
                written[0] += len(burst)
            producer.flush(60)
        finally:
            producer.close()

    threads = [threading.Thread(target=p.run) for p in pollers] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    try:
        before = sum(p.requests for p in pollers)
        code = main(["rebuild", "--live", "--url", server.base, "--token", STAFF])
        during = sum(p.requests for p in pollers) - before
    finally:
        stop_writing.set()
        threads[-1].join(60)
    assert code == 0, capsys.readouterr().err
    assert during > 0  # the readers really were reading while the rebuild ran and switched
    assert written[0] > 0

    reference = connect(tmp_path / "reference.duckdb")
    apply_batch(reference, read_back(bootstrap_servers, topic))
    ((expected,),) = reference.execute("SELECT count(*) FROM interactions").fetchall()
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as http:
        wait_for(lambda: header_count(http.get(f"{PREFIX}/")) == expected, "every published turn", server.proc)
        progress = http.get("/api/admin/rebuild/").json()
        metrics = http.get("/metrics").text
    stop_reading.set()
    for t in threads[:-1]:
        t.join(60)

    for p in pollers:
        assert p.failures == [], (p.path, p.failures[:5])
        assert p.backwards == [], (p.path, p.backwards[:5])
        assert p.requests > 0
    assert progress["state"] == "done" and progress["events_done"] >= 25_000
    assert progress["requests_held_ms"] is not None
    assert "chat_analytics_rebuild_running 0" in metrics

    assert main(["status", "--url", server.base, "--token", STAFF, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["lag_total"] == 0 and status["readmodel_version"] == READMODEL_VERSION
    assert status["live"]["rebuild"]["state"] == "done"

    assert server.stop() == 0
    # The served path now holds another file (the rebuilt one), with exactly the topic's fold.
    assert server.db.stat().st_ino != inode_before
    assert diff(table_rows(reference), rows_of(server.db)) == {}
    reference.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("served.duckdb")) == ["served.duckdb"]


def test_serve_rebuilds_a_file_of_an_older_read_model_version_at_start_up(
    bootstrap_servers: str, topic: str, tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    publish(bootstrap_servers, topic, list(stream(2000, seed=2, sessions=50)))
    db = tmp_path / "old.duckdb"
    con = connect(db)
    apply_batch(con, read_back(bootstrap_servers, topic))
    ((old_count,),) = con.execute("SELECT count(*) FROM interactions").fetchall()
    con.execute("UPDATE meta SET value = '0' WHERE key = 'readmodel_version'")  # "the previous release"
    con.close()
    publish(bootstrap_servers, topic, [turn(f"after-{i}") for i in range(50)])

    server = start_server(topic, db)
    seen: list[tuple[int, int]] = []
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as http:

        def rebuilt() -> bool:
            listing = http.get(f"{PREFIX}/")
            ready = http.get("/readyz")
            seen.append((listing.status_code, ready.status_code))
            if listing.status_code != 200 or header_count(listing) != old_count + 50:
                return False
            # The new file answers a moment before the rebuild reports itself done (its projector is
            # started in between), so wait for both, as an operator watching the rebuild would.
            return http.get("/api/admin/rebuild/").json()["state"] == "done"

        wait_for(rebuilt, "the rebuilt file with the later turns", server.proc)
        progress = http.get("/api/admin/rebuild/").json()
    # The old file stayed readable, so the service answered (and was ready) all along.
    assert {s for s in seen} == {(200, 200)}
    assert progress["state"] == "done" and "read-model version 0 -> " in progress["reason"]
    assert server.stop() == 0
    con = connect(db, read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = 'readmodel_version'").fetchall() == [
        (str(READMODEL_VERSION),)
    ]
    con.close()
    assert "rebuilding it from" in server.log.read_text()


def test_serve_warns_at_start_up_when_the_topic_has_finite_retention(
    bootstrap_servers: str, tmp_path: Path, start_server: Callable[..., Server], kafka_admin: KafkaAdminClient
) -> None:
    name = f"test-finite-retention-{uuid.uuid4().hex[:10]}"
    kafka_admin.create_topics(
        {name: {"num_partitions": 1, "configs": {"retention.ms": "3600000"}}}, wait_for_metadata=True
    )
    try:
        server = start_server(name, tmp_path / "rm.duckdb")
        with httpx.Client(base_url=server.base, timeout=60) as http:
            wait_for(lambda: http.get("/healthz").status_code == 200, "the server", server.proc)
        assert server.stop() == 0
        log = server.log.read_text()
        assert "finite retention (retention.ms=3600000)" in log and "topic create --force" in log
    finally:
        kafka_admin.delete_topics([name], raise_errors=False)
