"""The demo traffic the benchmarks run on: one fast bulk publish, and steady publishers as processes."""

from __future__ import annotations

import argparse
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import children
from ingest.demo import DemoTraffic
from ingest.publisher import Publisher


@dataclass(frozen=True)
class Published:
    events: int
    value_bytes: int  # the raw JSON: what "file size < raw JSON" compares against
    key_bytes: int
    seconds: float


def publish_topic(bootstrap_servers: str, topic: str, events: int, seed: int, now: datetime | None) -> Published:
    """Publishes `events` demo events through ingest's raw path (no validation) and waits for every ack."""
    counted = {"values": 0, "keys": 0, "events": 0}

    def counting(pairs: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        for key, value in pairs:
            counted["values"] += len(value)
            counted["keys"] += len(key)
            counted["events"] += 1
            yield key, value

    traffic = counting(iter(DemoTraffic(events, seed=seed, now=now)))
    started = time.perf_counter()
    with Publisher(bootstrap_servers, topic) as publisher:
        publisher.publish_raw(traffic, flush=True)
    seconds = time.perf_counter() - started
    return Published(counted["events"], counted["values"], counted["keys"], seconds)


def start_steady_publisher(
    bootstrap_servers: str, topic: str, rate: float, seconds: float, seed: int, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`chat-analytics publish-demo --rate R` in a process of its own, for about `seconds` (stopped earlier
    by the caller). Its own seed keeps its interaction ids apart from the bulk topic's."""
    command = children.chat_analytics(
        "publish-demo",
        "--events",
        str(int(rate * seconds)),
        "--rate",
        str(rate),
        "--seed",
        str(seed),
        "--topic",
        topic,
        "--bootstrap-servers",
        bootstrap_servers,
    )
    return children.start(command, env, log)


def topic_end(bootstrap_servers: str, topic: str) -> int:
    """How many records the topic holds now (the sum of its partitions' end offsets), asked of Kafka."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, client_id="chat-analytics-bench")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return sum(int(offset) for offset in consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def topic_arguments(parser: argparse.ArgumentParser, events: int, measured: str) -> None:
    """The arguments of `given_or_demo_topic` (--bootstrap-servers, --topic, --events) and --workdir, for a
    tool that measures one topic; `measured` says what it does with the topic ("rebuild", "measure")."""
    parser.add_argument("--bootstrap-servers", help="default: the broker `make bench` picks (env, Docker, local)")
    parser.add_argument("--topic", help=f"the topic to {measured} (default: a fresh one of --events demo events)")
    parser.add_argument("--events", type=int, default=events, help="demo events to publish when no --topic")
    parser.add_argument("--workdir", type=Path, help="where the scratch files go (default: a temporary folder)")


@contextmanager
def given_or_demo_topic(
    bootstrap_servers: str | None, topic: str | None, events: int, prefix: str
) -> Iterator[tuple[str, str]]:
    """(bootstrap servers, topic) for a tool that measures one topic (bench.equal, bench.stages): the ones
    given, else the broker `make bench` picks (stopped at the end) and a fresh 6-partition topic of
    `events` demo events named `prefix-...`."""
    broker = None
    if bootstrap_servers is None:
        from broker.selection import select_broker
        from schemas.settings import Settings

        broker = select_broker(Path(Settings.from_env().home), ephemeral=True)
        bootstrap_servers = broker.bootstrap_servers
    try:
        if topic is None:
            from broker.topics import ensure_topic

            topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
            ensure_topic(bootstrap_servers, topic, partitions=6)
            published = publish_topic(bootstrap_servers, topic, events, 1, datetime.now(UTC))
            print(f"published {published.events:,} demo events to {topic}", flush=True)
        yield bootstrap_servers, topic
    finally:
        if broker is not None:
            broker.stop()
