"""What `chat-analytics status` reports about a read-model file, and the topic it follows.

The figures come from the file itself (stored offsets, applied counts, dead letters, waiting events,
version, size) and, when a broker is given, from the topic's end offsets, so the lag is the number
of records between what the file has folded and what the topic holds now. The same figures serve
`status` on a file nobody writes (opened read-only) and `GET /api/admin/status/` of a running `serve`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb

from projector import topic_identity
from schemas.readmodel import READMODEL_VERSION, file_version, other_topics
from schemas.settings import DEFAULT_DISK_WARN_BYTES
from schemas.storage import disk_figures, size_text


def file_size(path: str | os.PathLike[str] | None) -> int | None:
    """Bytes on disk: the file and its write-ahead log, if any."""
    if path is None:
        return None
    total = 0
    found = False
    for candidate in (Path(path), Path(f"{path}.wal")):
        try:
            total += candidate.stat().st_size
            found = True
        except FileNotFoundError:
            pass
    return total if found else None


def _has_table(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
    return bool(rows[0][0])


def file_figures(cur: duckdb.DuckDBPyConnection, topic: str) -> dict[str, Any]:
    """Everything the file knows about itself. Tables a file of an older version lacks read as None."""
    stored = {
        int(p): int(o)
        for p, o in cur.execute("SELECT partition, next_offset FROM offsets WHERE topic = ?", [topic]).fetchall()
    }
    applied: dict[str, int] | None = None
    if _has_table(cur, "applied_counts"):
        applied = {
            str(t): int(n) for t, n in cur.execute("SELECT type, events FROM applied_counts ORDER BY type").fetchall()
        }
    dead = {
        str(r): int(n)
        for r, n in cur.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1 ORDER BY 1").fetchall()
    }
    ((pending,),) = cur.execute("SELECT count(*) FROM pending_events").fetchall()
    ((interactions,),) = cur.execute("SELECT count(*) FROM interactions").fetchall()
    privacy = None
    if _has_table(cur, "erasures"):
        from projector.forget import privacy_figures

        privacy = privacy_figures(cur)
    return {
        "readmodel_version": file_version(cur),
        "code_readmodel_version": READMODEL_VERSION,
        "stored_offsets": stored,
        "topic_id": topic_identity.stored(cur),
        "events_applied": applied,
        "dead_letters": dead,
        "pending_events": int(pending),
        "interactions": int(interactions),
        "other_topics": other_topics(cur, topic),
        "privacy": privacy,
    }


def report(
    figures: dict[str, Any],
    *,
    topic: str,
    path: str | os.PathLike[str] | None,
    end_offsets: dict[int, int] | None,
    broker_error: str | None = None,
    disk_warn_bytes: int | None = None,
    retention: dict[str, Any] | None = None,
    topic_id: str | None = None,
    start_offsets: dict[int, int] | None = None,
) -> dict[str, Any]:
    """`retention`: the topic's retention against the policy (`broker.topics.describe_retention`)."""
    """The status document: the file's figures with per-partition end offset, stored offset and lag."""
    stored: dict[int, int] = figures["stored_offsets"]
    ends = end_offsets or {}
    partitions = []
    for p in sorted(set(stored) | set(ends)):
        end = ends.get(p) if end_offsets is not None else None
        position = stored.get(p, 0)
        partitions.append(
            {
                "partition": p,
                "end_offset": end,
                "stored_offset": position,
                "lag": None if end is None else max(0, end - position),
            }
        )
    lags = [p["lag"] for p in partitions if p["lag"] is not None]
    return {
        "file": None if path is None else str(path),
        "file_size_bytes": file_size(path),
        "topic": topic,
        "readmodel_version": figures["readmodel_version"],
        "code_readmodel_version": figures["code_readmodel_version"],
        "partitions": partitions,
        "lag_total": sum(lags) if end_offsets is not None else None,
        "broker_error": broker_error,
        # Whether the file's offsets can be this topic's at all (projector/topic_identity.py); None: they can.
        "topic_changed": None
        if end_offsets is None
        else topic_identity.mismatch(topic, figures["topic_id"], topic_id, stored, end_offsets),
        # Records the topic deleted before the file folded them, per partition (lost to the read model).
        "deleted_unfolded": None if start_offsets is None else topic_identity.deleted_unfolded(stored, start_offsets),
        "events_applied": figures["events_applied"],
        "dead_letters": figures["dead_letters"],
        "pending_events": figures["pending_events"],
        "interactions": figures["interactions"],
        "other_topics": figures["other_topics"],
        "disk": disk_figures(path, DEFAULT_DISK_WARN_BYTES if disk_warn_bytes is None else disk_warn_bytes),
        "privacy": figures.get("privacy"),
        "retention": retention,
    }


STATUS_BROKER_TIMEOUT_S = 15.0  # how long `status` waits for the broker before saying it cannot tell


def render_text(doc: dict[str, Any]) -> str:
    """The human form of `report`."""
    lines = [
        f"file:               {doc['file']} ({size_text(doc['file_size_bytes'])})",
        f"read-model version: {doc['readmodel_version']} (this release writes {doc['code_readmodel_version']})",
        f"topic:              {doc['topic']}",
    ]
    if doc["readmodel_version"] != doc["code_readmodel_version"]:
        lines.append("                    -> version differs: rebuild the file (`chat-analytics rebuild`)")
    if doc["broker_error"]:
        lines.append(f"broker:             {doc['broker_error']} (end offsets and lag unknown)")
    if doc.get("topic_changed"):
        lines.append(f"                    -> TOPIC CHANGED: {doc['topic_changed']}")
    if doc.get("deleted_unfolded"):
        lines.append(
            f"                    -> WARNING: {sum(doc['deleted_unfolded'].values())} records (per partition: "
            f"{doc['deleted_unfolded']}) were deleted by the topic's retention before this file folded them"
        )
    lines.append("partition  end offset  stored offset  lag")
    for p in doc["partitions"]:
        end = "?" if p["end_offset"] is None else p["end_offset"]
        lag = "?" if p["lag"] is None else p["lag"]
        lines.append(f"{p['partition']:>9}  {end:>10}  {p['stored_offset']:>13}  {lag}")
    if doc["lag_total"] is not None:
        lines.append(f"lag total:          {doc['lag_total']}")
    applied = doc["events_applied"]
    if applied is None:
        lines.append("events applied:     unknown (a file of an older read-model version)")
    else:
        lines.append(f"events applied:     {sum(applied.values())}")
        lines.extend(f"  {t}: {n}" for t, n in sorted(applied.items()))
    dead = doc["dead_letters"]
    lines.append(f"dead letters:       {sum(dead.values())}")
    lines.extend(f"  {r}: {n}" for r, n in sorted(dead.items()))
    lines.append(f"waiting events:     {doc['pending_events']} (feedback, clicks, reviews whose turn has not arrived)")
    lines.append(f"interactions:       {doc['interactions']}")
    lines.extend(_privacy_lines(doc.get("privacy"), doc.get("retention")))
    disk = doc.get("disk") or {}
    if disk.get("free_bytes") is not None:
        lines.append(f"disk free:          {size_text(disk['free_bytes'])} in {disk['data_dir']}")
    if disk.get("warning"):
        lines.append(f"                    -> WARNING: {disk['warning']}")
    if doc["other_topics"]:
        lines.append(f"also holds offsets of: {', '.join(doc['other_topics'])} (built from another topic?)")
    return "\n".join(lines)


def _privacy_lines(privacy: dict[str, Any] | None, retention: dict[str, Any] | None) -> list[str]:
    lines: list[str] = []
    if retention is not None:
        days = retention["policy_days"]
        policy = "keep everything (-1)" if days == -1 else f"{days} days"
        lines.append(
            f"retention policy:   {policy}; the topic should have retention.ms={retention['wanted']['retention.ms']}"
        )
        topic = retention.get("topic")
        if topic is not None:
            lines.append(f"topic retention:    {', '.join(f'{k}={v}' for k, v in sorted(topic.items()))}")
        if retention.get("warning"):
            lines.append(f"  WARNING: {retention['warning']}")
    if privacy is None:
        lines.append("privacy:            unknown (a file of an older read-model version)")
        return lines
    horizon = privacy["retention_horizon"]
    lines.append(f"read model keeps:   {'everything' if horizon is None else f'turns created on {horizon} or later'}")
    lines.append(f"turns purged:       {privacy['turns_purged_by_retention']} (by retention)")
    lines.append(f"erasures applied:   {privacy['erasures_applied']} ({privacy['erasure_rows_removed']} turns removed)")
    return lines
