"""`make bench` / `python -m bench`: the three benchmarks of issue 7, on a fresh topic of demo traffic.

Order: pick a broker (as the tests do), create a fresh topic, publish N demo events, then
1. replay (raw read vs rebuild into a fresh file), 2. API latency over a copy of the rebuilt file
with live ingest (closed loop, then at a fixed rate), 3. freshness on the same server. With `--topic
T --db FILE`, nothing is published or replayed: a copy of FILE is served with live ingest into T.
Each writes bench/results/<name>.json; the table is printed and written to bench/results/latest.md.
Everything started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import api_latency, children, freshness, machine, profiling, replay, report, traffic
from bench.server import READY_TIMEOUT_S, TOKENS_ENV, CheckpointWatch, Server, start_server
from broker.jars import KAFKA_VERSION
from broker.selection import LOCAL, SelectedBroker, select_broker
from broker.topics import ensure_topic
from schemas.settings import (
    ENV_API_TOKENS,
    ENV_BOOTSTRAP_SERVERS,
    ENV_GROUP_ID,
    ENV_TOKENS_FILE,
    ENV_TOPIC,
    Settings,
)

# Well above what staff dashboards send: ten dashboards, each asking ~6 questions every 10 s, send
# ~6 requests/s in all; this is 50 requests/s to each endpoint alone.
DEFAULT_FIXED_RATE = 50.0
# How long a given file (--db) may take to fold the records its topic gained since (earlier runs' ingest).
CATCH_UP_TIMEOUT_S = 1800.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="demo events in the topic (default 1,000,000)")
    parser.add_argument("--partitions", type=int, default=6, help="partitions of the topic (default 6)")
    parser.add_argument("--seed", type=int, default=1, help="demo traffic seed (default 1)")
    parser.add_argument(
        "--only",
        choices=("replay", "api", "freshness"),
        action="append",
        help="run only these benchmarks (repeatable; api and freshness still need the replay's rebuilt file)",
    )
    parser.add_argument("--connections", type=int, default=8, help="concurrent API connections (default 8)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per endpoint (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per endpoint first (default 1)")
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_FIXED_RATE,
        help=f"then each endpoint again at this fixed rate of requests/s (default {DEFAULT_FIXED_RATE:g}; 0: skip)",
    )
    parser.add_argument(
        "--live-rate",
        type=float,
        default=1000.0,
        help="ingest events/s during the API benchmark (default 1000; 0: no live ingest, the projector idles)",
    )
    parser.add_argument(
        "--no-closed-loop",
        action="store_true",
        help="API benchmark: only the fixed-rate run (every selected endpoint is offered --rate)",
    )
    parser.add_argument(
        "--endpoint",
        action="append",
        metavar="TEXT",
        help="API benchmark: only the endpoints whose name contains TEXT, or is NAME when written =NAME"
        " (repeatable; case-insensitive)",
    )
    parser.add_argument("--freshness-seconds", type=float, default=60.0, help="freshness run length (default 60)")
    parser.add_argument("--freshness-rate", type=float, default=2000.0, help="events/s during freshness")
    parser.add_argument("--probe-interval", type=float, default=0.1, help="seconds between freshness probes")
    parser.add_argument(
        "--freshness-probe",
        choices=freshness.PROBES,
        default="wait",
        help="how a probe is asked for: one request held until the server folded it (min_position), or polled"
        " (default wait)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile the rebuild and each endpoint with py-spy (results dir)"
    )
    parser.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR, help="where the results go")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the DuckDB files and logs")
    parser.add_argument(
        "--topic",
        help="with --db: an existing topic to serve with live ingest instead of publishing a fresh one (no replay)",
    )
    parser.add_argument(
        "--db",
        type=Path,
        help="with --topic: a read-model file already folded from that topic; a copy of it is served",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.partitions < 1 or args.connections < 1:
        parser.error("--events, --partitions and --connections must be positive")
    if args.rate < 0:
        parser.error("--rate must be 0 (skip) or positive")
    if args.no_closed_loop and not args.rate:
        parser.error("--no-closed-loop needs a fixed --rate")
    if args.live_rate < 0:
        parser.error("--live-rate must be 0 (no live ingest) or positive")
    if (args.topic is None) != (args.db is None):
        parser.error("--topic and --db go together")
    if args.db is not None:
        if args.only and "replay" in args.only:
            parser.error("--topic/--db skip the replay: use --only api and/or --only freshness")
        if not args.db.is_file():
            parser.error(f"--db {args.db}: no such file")
    return args


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def _kafka_line(broker: SelectedBroker) -> str:
    if broker.origin == LOCAL:
        return f"local Apache Kafka {KAFKA_VERSION} (KRaft, one node, same machine)"
    return broker.description


def child_env(bootstrap_servers: str, topic: str, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_BOOTSTRAP_SERVERS] = bootstrap_servers
    env[ENV_TOPIC] = topic
    env[ENV_API_TOKENS] = TOKENS_ENV
    # No token file: the server must know exactly the one benchmark token.
    env[ENV_TOKENS_FILE] = str(workdir / "no-tokens.json")
    env[ENV_GROUP_ID] = f"chat-analytics-bench-{uuid.uuid4().hex[:8]}"
    return env


@dataclass
class Run:
    """What the phases of one run share."""

    args: argparse.Namespace
    bootstrap_servers: str
    topic: str
    env: dict[str, str]
    workdir: Path
    machine: dict[str, Any]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, name: str, figures: dict[str, Any]) -> None:
        figures["load_average_after"] = machine.load_average()
        figures["speed_probe_s_after"] = machine.speed_probe()
        self.results[name] = figures
        report.write_json(self.args.results_dir, name, figures, self.machine)

    def publisher(self, rate: float, seed: int, log: str) -> subprocess.Popen[bytes]:
        if self.args.db is not None:
            # A reused topic already holds what earlier runs published with the same seed: the fold would
            # skip those events as duplicates, which costs far less than the new events live ingest means.
            seed += time.time_ns() % 1_000_000_007
        return traffic.start_steady_publisher(
            self.bootstrap_servers, self.topic, rate, 3600, seed, self.workdir / log, self.env
        )


def replay_phase(run: Run) -> Path:
    """Benchmark 1; returns the rebuilt file, which the other two serve a copy of."""
    args = run.args
    say(f"publishing {args.events:,} demo events (seed {args.seed}) to {run.topic} ({args.partitions} partitions)")
    published = traffic.publish_topic(run.bootstrap_servers, run.topic, args.events, args.seed, datetime.now(UTC))
    say(
        f"published {published.events:,} events, {published.value_bytes / 2**20:,.0f} MiB of JSON, in "
        f"{published.seconds:.1f} s ({published.events / published.seconds:,.0f} events/s)"
    )
    say("replay: the raw read, then the rebuild into a fresh file")
    figures, rebuilt = replay.run(
        run.bootstrap_servers, run.topic, published.events, published.value_bytes, run.workdir, run.env
    )
    figures["publish"] = {
        "seconds": round(published.seconds, 3),
        "events_per_s": round(published.events / published.seconds),
    }
    if args.profile:
        say("replay: the rebuild again under py-spy")
        figures["profile"] = replay.profile_rebuild(
            run.bootstrap_servers, run.topic, run.workdir, run.env, args.results_dir / "rebuild-profile.txt"
        )
    if args.only is None or "replay" in args.only:
        run.record("replay", figures)
        say("\n".join(report.replay_table(figures)))
    return rebuilt


def api_phase(run: Run, server: Server, samples: api_latency.Samples, served: Path) -> None:
    args = run.args
    if args.live_rate:
        say(f"API latency: live ingest at {args.live_rate:g} events/s from a publisher process")
        publisher = run.publisher(args.live_rate, args.seed + 1, "live.log")
    else:
        say("API latency: no live ingest (--live-rate 0), the projector idles")
        publisher = None
    try:
        time.sleep(2.0)  # let the publisher reach its pace before the first measurement
        figures = api_latency.run(
            server,
            samples,
            served,
            connections=args.connections,
            seconds=args.seconds,
            warmup_s=args.warmup,
            workdir=run.workdir,
            rate=args.rate or None,
            only=args.endpoint,
            closed_loop=not args.no_closed_loop,
        )
    finally:
        if publisher is not None:
            children.stop(publisher)
    # A projector that fell behind during the load would hand its backlog to the freshness run.
    end = traffic.topic_end(run.bootstrap_servers, run.topic)
    figures["backlog_drain_seconds"] = round(server.wait_folded(end), 3)
    run.record("api_latency", figures)
    say("\n".join(report.api_table(figures)))
    if args.profile:
        say("API: each endpoint again, alone, with py-spy attached to the server")
        api_latency.profile_endpoints(
            server,
            samples,
            connections=args.connections,
            seconds=min(args.seconds, 3.0),
            workdir=run.workdir,
            only=args.endpoint,
            out=args.results_dir / "api-profile.txt",
        )


def freshness_phase(run: Run, server: Server, served: Path) -> None:
    args = run.args
    background = max(0.0, args.freshness_rate - 1.0 / args.probe_interval)
    say(
        f"freshness: {args.freshness_rate:g} events/s for {args.freshness_seconds:g} s, probes every "
        f"{args.probe_interval * 1000:g} ms"
    )
    publisher = run.publisher(background, args.seed + 2, "freshness.log")
    raw = run.workdir / "freshness.pyspy"
    sampler = None
    try:
        time.sleep(2.0)
        if args.profile:
            sampler = profiling.attach(server.process.pid, args.freshness_seconds, raw, run.workdir / "fresh.log")
        # A checkpoint holds the projector's commits (and readers) for about a second: note any.
        watch = CheckpointWatch(served)
        watch.start()
        try:
            figures = freshness.run(
                server,
                run.bootstrap_servers,
                run.topic,
                seconds=args.freshness_seconds,
                interval_s=args.probe_interval,
                background_rate=args.freshness_rate,
                probe=args.freshness_probe,
            )
        finally:
            checkpoints = watch.stop()
        figures["checkpoints_during_run"] = checkpoints
    finally:
        children.stop(publisher)
    if sampler is not None:
        sampler.wait(timeout=60)
        title = f"serve during the freshness run ({args.freshness_rate:g} events/s, probes: {args.freshness_probe})"
        (args.results_dir / "freshness-profile.txt").write_text(profiling.summarize(raw, title, args.freshness_seconds))
    run.record("freshness", figures)
    say("\n".join(report.freshness_table(figures)))


def run_all(args: argparse.Namespace, workdir: Path) -> dict[str, dict[str, Any]]:
    wanted = set(args.only or ("replay", "api", "freshness"))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    say("choosing a Kafka broker (CHAT_ANALYTICS_BOOTSTRAP_SERVERS, else Docker, else the local broker)")
    broker = select_broker(Path(Settings.from_env().home), ephemeral=True)
    server: Server | None = None
    try:
        say(f"Kafka: {broker.description} at {broker.bootstrap_servers}")
        described = machine.describe(_kafka_line(broker))
        report.write_json(args.results_dir, "machine", described, described)
        topic = args.topic or f"bench-events-{uuid.uuid4().hex[:10]}"
        if args.topic is None:
            ensure_topic(broker.bootstrap_servers, topic, args.partitions)
        env = child_env(broker.bootstrap_servers, topic, workdir)
        run = Run(args, broker.bootstrap_servers, topic, env, workdir, described)

        # Given a folded file, serve a copy: the live ingest of this run must not change the caller's file.
        rebuilt = args.db if args.db is not None else replay_phase(run)
        if not wanted & {"api", "freshness"}:
            return run.results
        served = workdir / "served.duckdb"
        copy_read_model(rebuilt, served)
        samples = api_latency.pick_samples(served)
        origin = "the given" if args.db is not None else "the rebuilt"
        say(f"starting chat-analytics serve over a copy of {origin} file ({samples.interactions:,} interactions)")
        server = start_server(broker.bootstrap_servers, topic, served, env[ENV_GROUP_ID], env, workdir / "serve.log")
        # A given file folds what its topic gained since before it is ready: longer than a rebuilt file takes.
        server.wait_ready(CATCH_UP_TIMEOUT_S if args.db is not None else READY_TIMEOUT_S)
        if args.db is not None:
            # The given file may be far behind the topic (earlier runs' live ingest): a row measured
            # while it catches up is the catch-up's. Ready says caught up with the end the projector
            # found at start-up; this waits for the end as it is now, whatever readiness says.
            end = traffic.topic_end(broker.bootstrap_servers, topic)
            say(f"bringing the copy to the end of the topic ({end:,} records) before measuring")
            say(f"  folded in {server.wait_folded(end, timeout_s=CATCH_UP_TIMEOUT_S):.1f} s")
        if "api" in wanted:
            api_phase(run, server, samples, served)
        if "freshness" in wanted:
            freshness_phase(run, server, served)
        return run.results
    finally:
        if server is not None:
            server.stop()
        if broker.started_here:
            say("stopping the Kafka broker this run started")
        broker.stop()


def copy_read_model(source: Path, target: Path) -> None:
    """The file and its write-ahead log, if it has one (the log holds commits not yet checkpointed)."""
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + ".wal"))


def main(argv: list[str] | None = None) -> int:
    # `kill <pid>` or a CI timeout sends SIGTERM: clean up as for Ctrl-C instead of dying mid-way.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chat-analytics-bench-"))
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m bench", shlex.join(given)]).strip()
    try:
        results = run_all(args, workdir)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if args.keep_workdir:
            say(f"kept the work folder {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    # run_all wrote it before anything else, with the broker it chose.
    described = _load(args.results_dir / "machine.json")
    table = report.markdown(results, machine.one_line(described), command, machine.state_line(described, results))
    (args.results_dir / "latest.md").write_text(table)
    print()
    print(table, flush=True)
    return 0


def _load(path: Path) -> dict[str, Any]:
    return dict(orjson.loads(path.read_bytes()))


if __name__ == "__main__":
    sys.exit(main())
