"""`TopicSource`: where the projector reads, the four values every reader and writer of the read model
passes along together (the broker, the topic, the consumer group its lag is reported under, and how many
records a batch holds at most).

Frozen and made of plain values, so that it pickles: the parser processes of `projector.pipeline` are
spawned with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.settings import DEFAULT_BATCH_SIZE, DEFAULT_GROUP_ID


@dataclass(frozen=True)
class TopicSource:
    bootstrap_servers: str
    topic: str
    # None: no lag-monitoring commits to Kafka (the read model's own offsets are the position either way).
    group_id: str | None = DEFAULT_GROUP_ID
    batch_size: int = DEFAULT_BATCH_SIZE
