"""The ceiling for a rebuild, run as its own process: kafka-python reading the whole topic and
`orjson.loads`-ing every value, doing nothing else. Prints one JSON line with what it read.

    python -m bench.raw_read BOOTSTRAP TOPIC
"""

from __future__ import annotations

import sys
import time

import orjson
from kafka import KafkaConsumer, TopicPartition

from projector.consumer import FETCH_MAX_BYTES, ISOLATION_LEVEL, MAX_PARTITION_FETCH_BYTES

# The same fetch sizes and isolation level as the projector's reader, so the ceiling is the one the rebuild
# could reach.
CONSUMER_CONFIG = {
    "isolation_level": ISOLATION_LEVEL,
    "group_id": None,
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "fetch_max_bytes": FETCH_MAX_BYTES,
    "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
    "max_poll_records": 10_000,
    "client_id": "chat-analytics-bench-raw-read",
}


def read_all(bootstrap_servers: str, topic: str) -> dict[str, float | int]:
    started = time.perf_counter()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, **CONSUMER_CONFIG)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise SystemExit(f"topic {topic!r} has no partitions")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = {tp: int(offset) for tp, offset in consumer.end_offsets(partitions).items()}
        remaining = {tp for tp, end in ends.items() if end > 0}
        events = value_bytes = 0
        loads = orjson.loads
        while remaining:
            for tp, messages in consumer.poll(timeout_ms=1000).items():
                for message in messages:
                    loads(message.value)
                    value_bytes += len(message.value)
                events += len(messages)
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        seconds = time.perf_counter() - started
    finally:
        consumer.close()
    return {"events": events, "value_bytes": value_bytes, "seconds": seconds, "partitions": len(partitions)}


def main() -> int:
    bootstrap_servers, topic = sys.argv[1], sys.argv[2]
    print(orjson.dumps(read_all(bootstrap_servers, topic)).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
