"""The unit the fold consumes: one Kafka record, without any Kafka library type.

Keeping the fold free of kafka-python lets unit tests feed it hand-made records, and lets a parser
process ship records to the writer process as plain picklable values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
