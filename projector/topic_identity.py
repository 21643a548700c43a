"""Which topic a read-model file was folded from, so that its offsets are never applied to another one.

A file's stored offsets mean something only for the topic they were read from. A topic deleted and created
again under the same name (a cluster rebuilt, a mistake), or another cluster's topic of that name, starts
again at offset 0. The projector would seek to the file's offsets, kafka-python would find them out of
range and go back to the start of the log, and the fold would take every record below a stored offset
for one it already has: the new topic's events dropped without a word until its offsets passed the old
ones, and folded from there on, with the file claiming to be caught up all along.

Kafka gives every topic a random id when it is created (KIP-516). The file keeps the id of the topic it
folds (`meta.topic_id`), and every fold checks it before reading (`check`): the live projector on each
(re)connection, a rebuild and `rebuild --resume` before their first record. Another id under the same name
raises `TopicChanged`: nothing is folded, the file is served as it is, and the error says what to do. A file
without an id yet (folded before this check, or from a broker too old to send ids) gets the same answer
when a partition ends below what the file has folded, or is gone: only a new topic can do that (read
committed, the projector never folds past the last stable offset).
"""

from __future__ import annotations

from typing import Any

import duckdb

from schemas.readmodel import stored_offsets

TOPIC_ID_KEY = "topic_id"
_WHAT_TO_DO = (
    "its offsets do not apply to this topic: point the projector at the topic the file was folded from, or "
    "rebuild the read model from this one (`chat-analytics rebuild`), knowing that what only the file holds "
    "is then gone"
)


class TopicChanged(RuntimeError):
    """The topic under the file's topic name is not the one the file was folded from."""


def of_consumer(consumer: Any, topic: str) -> str | None:
    """The id the broker gave `topic`, from the metadata `consumer` holds (after `partitions_for_topic`);
    None when the broker sends none (before Kafka 2.8) or this kafka-python does not keep them."""
    cluster = getattr(getattr(consumer, "_client", None), "cluster", None)
    find = getattr(cluster, "topic_id", None)
    found = find(topic) if callable(find) else None
    return None if found is None else str(found)


def stored(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [TOPIC_ID_KEY]).fetchall()
    return str(rows[0][0]) if rows else None


def mismatch(
    topic: str, known: str | None, topic_id: str | None, folded: dict[int, int], ends: dict[int, int]
) -> str | None:
    """Why offsets `folded` of `topic`, from the topic of id `known`, cannot be those of the topic the broker
    has now (its id `topic_id`, its end offsets `ends`); None when they can be."""
    if known is not None and topic_id is not None and known != topic_id:
        return (
            f"topic {topic!r} is not the one this file was folded from (its id is {topic_id}, the file's "
            f"{known}: deleted and created again, or another cluster's); {_WHAT_TO_DO}"
        )
    past = {p: (ends.get(p), at) for p, at in sorted(folded.items()) if p not in ends or at > ends[p]}
    if past:
        return (
            f"topic {topic!r} ends before what this file has folded from it ((end, folded) per partition: "
            f"{past}): it was deleted and created again, or is another cluster's; {_WHAT_TO_DO}"
        )
    return None


def check(con: duckdb.DuckDBPyConnection, topic: str, topic_id: str | None, ends: dict[int, int]) -> None:
    """Raises TopicChanged unless the file's offsets of `topic` can be those of the topic the broker has
    now (its id `topic_id`, its end offsets `ends`); then remembers that id in the file, if it had none."""
    known = stored(con)
    why = mismatch(topic, known, topic_id, stored_offsets(con, topic), ends)
    if why is not None:
        raise TopicChanged(why)
    if known is None and topic_id is not None:
        con.execute("INSERT INTO meta VALUES (?, ?)", [TOPIC_ID_KEY, topic_id])


def deleted_unfolded(folded: dict[int, int], starts: dict[int, int]) -> dict[int, int]:
    """Per partition, the records the topic deleted (its retention) before the file folded them: its first
    offset now is past the file's next one. Kafka's consumer goes on from the first offset left, so they
    are lost to the read model; only saying so is left."""
    return {p: start - folded.get(p, 0) for p, start in sorted(starts.items()) if start > folded.get(p, 0)}
