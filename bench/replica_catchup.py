"""`python -m bench.replica_catchup`: how long a new read replica takes to be ready, from an empty file
and from a snapshot of another replica (docs/scaling.md).

On a fresh topic of `--events` demo events:
1. replica A starts on an empty file; time until its /readyz is 200 (it folded the whole topic);
2. `chat-analytics snapshot` copies A's file through A's API (time and size);
3. `--after` more events are published (the topic moved on since the snapshot);
4. replica B starts on the snapshot: time until ready (it folds only what came after);
5. replica C starts on an empty file again, for the same topic: time until ready.
The figures, with the machine's load average before and after, go to bench/results/replicas.json.
Measured on a busy machine they are not the product's figures: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import machine
from bench.traffic import publish_topic
from broker.selection import select_broker
from broker.topics import ensure_topic
from loopback.ports import free_port
from replicas.local import Replica
from schemas.settings import Settings

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-replicas-staff-token"


def _timed_start(replica: Replica, timeout: float) -> float:
    started = time.perf_counter()
    replica.start()
    replica.wait_ready(timeout)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replica_catchup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="demo events in the topic (default 1,000,000)")
    parser.add_argument("--after", type=int, default=10_000, help="events published after the snapshot (10,000)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the topic (default 6)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a replica may take to be ready")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    broker = select_broker(Path(Settings.from_env().home), ephemeral=True)
    replicas: list[Replica] = []
    try:
        topic = f"bench-replicas-{uuid.uuid4().hex[:10]}"
        ensure_topic(broker.bootstrap_servers, topic, args.partitions)
        load_before = machine.load_average()
        published = publish_topic(broker.bootstrap_servers, topic, args.events, seed=1, now=None)
        env = {
            "CHAT_ANALYTICS_API_TOKENS": f"{TOKEN}:staff",
            "CHAT_ANALYTICS_TOKENS_FILE": str(workdir / "tokens.json"),
        }

        def replica(name: str, db: Path) -> Replica:
            made = Replica(
                name=name,
                port=free_port(),
                db=db,
                group_id=f"{topic}-{name}",
                bootstrap_servers=broker.bootstrap_servers,
                topic=topic,
                log=workdir / f"{name}.log",
                env=env,
            )
            replicas.append(made)
            return made

        a = replica("a", workdir / "a.duckdb")
        from_empty_s = _timed_start(a, args.timeout)
        snapshot = workdir / "snapshot.duckdb"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "cli.main", "snapshot", "--db", str(snapshot), "--url", a.url, "--token", TOKEN],
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        snapshot_s = time.perf_counter() - started
        publish_topic(broker.bootstrap_servers, topic, args.after, seed=2, now=None)
        b_db = workdir / "b.duckdb"
        shutil.copyfile(snapshot, b_db)
        from_snapshot_s = _timed_start(replica("b", b_db), args.timeout)
        from_empty_again_s = _timed_start(replica("c", workdir / "c.duckdb"), args.timeout)
        result: dict[str, Any] = {
            "events": published.events,
            "events_after_snapshot": args.after,
            "partitions": args.partitions,
            "ready_from_empty_s": round(from_empty_s, 1),
            "snapshot_s": round(snapshot_s, 1),
            "snapshot_bytes": snapshot.stat().st_size,
            "ready_from_snapshot_s": round(from_snapshot_s, 1),
            "ready_from_empty_after_s": round(from_empty_again_s, 1),
            "load_average_before": load_before,
            "load_average_after": machine.load_average(),
            "cpus": os.cpu_count(),
        }
        args.results_dir.mkdir(parents=True, exist_ok=True)
        (args.results_dir / "replicas.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return 0
    finally:
        for made in replicas:
            made.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
