"""Benchmark 1: rebuilding the read model from the topic, against the ceiling of reading it at all.

Both run as child processes over the same topic, timed from spawn to exit, so they stand on equal
footing (interpreter start-up included in both). The rebuild is `chat-analytics rebuild --db NEW_FILE`
when that command exists, else `bench.rebuild_worker` (ProjectorService.run_until_caught_up()).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import children, profiling
from bench.stats import rate
from schemas.readmodel import connect

TARGET_EVENTS_PER_S = 50_000
TARGET_RATIO = 0.6
TARGET_MEMORY_BYTES = 2**30
TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class RebuildCommand:
    argv: list[str]
    kind: str  # "chat-analytics rebuild" or "bench.rebuild_worker (ProjectorService)"


def rebuild_command(bootstrap_servers: str, topic: str, db: Path, env: dict[str, str]) -> RebuildCommand:
    """`chat-analytics rebuild` if this checkout has it (with the flags its --help offers), else the stand-in."""
    try:
        helped = subprocess.run(
            children.chat_analytics("rebuild", "--help"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(children.REPO_ROOT),
            check=False,
        )
    except subprocess.TimeoutExpired:
        helped = None
    if helped is not None and helped.returncode == 0 and "--db" in helped.stdout:
        argv = children.chat_analytics("rebuild", "--db", str(db))
        # Flags it does not offer come from the environment (CHAT_ANALYTICS_BOOTSTRAP_SERVERS, _TOPIC).
        if "--bootstrap-servers" in helped.stdout:
            argv += ["--bootstrap-servers", bootstrap_servers]
        if "--topic" in helped.stdout:
            argv += ["--topic", topic]
        return RebuildCommand(argv, "chat-analytics rebuild")
    return RebuildCommand(
        children.python_module("bench.rebuild_worker", bootstrap_servers, topic, str(db)),
        "bench.rebuild_worker (ProjectorService.run_until_caught_up)",
    )


def _last_json(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return dict(orjson.loads(line))
    raise RuntimeError(f"no JSON result in the output:\n{output[-2000:]}")


def _size_on_disk(db: Path) -> int:
    wal = db.with_name(db.name + ".wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _folded(db: Path, topic: str) -> dict[str, int]:
    """What the rebuilt file holds: proof that the timed run folded the whole topic."""
    con = connect(db, read_only=True)
    try:

        def one(sql: str, params: list[Any] | None = None) -> int:
            return int(con.execute(sql, params or []).fetchall()[0][0])

        return {
            "records_up_to_offsets": one("SELECT coalesce(sum(next_offset), 0) FROM offsets WHERE topic = ?", [topic]),
            "interactions": one("SELECT count(*) FROM interactions"),
            "applied_events": one("SELECT count(*) FROM applied_events"),
            "dead_letters": one("SELECT count(*) FROM dead_letters"),
            "pending_events": one("SELECT count(*) FROM pending_events"),
        }
    finally:
        con.close()


def _cpu(run: children.Finished, events: int) -> dict[str, float]:
    """What a run cost the machine: its processes' CPU time per event, all of them and the main one alone
    (a rebuild's writer; its readers are the rest), and the share of the machine's cores busy meanwhile
    (the broker's work included). A rate is at most cores / (CPU per event) whatever the overlap."""
    return {
        "seconds": round(run.cpu_s, 2),
        "main_process_seconds": round(run.root_cpu_s, 2),
        "us_per_event": round(run.cpu_s / events * 1e6, 1),
        "main_process_us_per_event": round(run.root_cpu_s / events * 1e6, 1),
        "machine_busy": round(run.machine_busy, 3),
        "cores": os.cpu_count() or 1,
    }


def run(
    bootstrap_servers: str, topic: str, events: int, raw_json_bytes: int, workdir: Path, env: dict[str, str]
) -> tuple[dict[str, Any], Path]:
    """Returns the figures and the rebuilt file (benchmark 2 serves a copy of it)."""
    raw = children.run_measured(
        children.python_module("bench.raw_read", bootstrap_servers, topic), env, workdir / "raw-read.log", TIMEOUT_S
    )
    if raw.exit_code != 0:
        raise RuntimeError(f"the raw read failed (exit {raw.exit_code}):\n{raw.output[-2000:]}")
    raw_figures = _last_json(raw.output)
    if raw_figures["events"] != events:
        raise RuntimeError(f"the raw read saw {raw_figures['events']} events, the topic has {events}")

    db = workdir / "rebuilt.duckdb"
    command = rebuild_command(bootstrap_servers, topic, db, env)
    print(f"[bench] rebuild with {command.kind}", flush=True)
    rebuilt = children.run_measured(command.argv, env, workdir / "rebuild.log", TIMEOUT_S)
    if rebuilt.exit_code != 0:
        raise RuntimeError(f"the rebuild failed (exit {rebuilt.exit_code}):\n{rebuilt.output[-3000:]}")
    folded = _folded(db, topic)
    if folded["records_up_to_offsets"] != events:
        raise RuntimeError(f"the rebuilt file's offsets cover {folded['records_up_to_offsets']} of {events} records")

    raw_rate = rate(events, raw.wall_s)
    rebuild_rate = rate(events, rebuilt.wall_s)
    file_bytes = _size_on_disk(db)
    ratio = rebuild_rate / raw_rate
    figures = {
        "events": events,
        "partitions": raw_figures["partitions"],
        "raw_read": {
            "seconds": round(raw.wall_s, 3),
            "events_per_s": round(raw_rate),
            "seconds_inside_reader": round(float(raw_figures["seconds"]), 3),
            "peak_memory_bytes": raw.max_tree_bytes,
            "cpu": _cpu(raw, events),
        },
        "rebuild": {
            "command": command.kind,
            "argv": command.argv[1:],
            "seconds": round(rebuilt.wall_s, 3),
            "events_per_s": round(rebuild_rate),
            # All its processes together (PSS, the target's figure), and the largest one alone (RSS).
            "peak_memory_bytes": rebuilt.max_tree_bytes,
            "peak_rss_largest_process_bytes": rebuilt.max_rss_bytes,
            "file_bytes": file_bytes,
            "folded": folded,
            "cpu": _cpu(rebuilt, events),
        },
        "ratio_rebuild_to_raw": round(ratio, 3),
        "raw_json_bytes": raw_json_bytes,
        "file_to_raw_json": round(file_bytes / raw_json_bytes, 3) if raw_json_bytes else None,
        "targets": {
            "rebuild_events_per_s": {"target": f">= {TARGET_EVENTS_PER_S}", "met": rebuild_rate >= TARGET_EVENTS_PER_S},
            "ratio_rebuild_to_raw": {"target": f">= {TARGET_RATIO}", "met": ratio >= TARGET_RATIO},
            "peak_memory": {"target": "< 1 GiB", "met": rebuilt.max_tree_bytes < TARGET_MEMORY_BYTES},
            "file_size": {"target": "< raw JSON", "met": file_bytes < raw_json_bytes},
        },
    }
    return figures, db


def profile_rebuild(
    bootstrap_servers: str, topic: str, workdir: Path, env: dict[str, str], out: Path
) -> dict[str, Any]:
    """The rebuild again, into another fresh file, under py-spy; writes the top entries to `out`.
    Its time is not a figure (sampling costs a little); its shares say where the measured run went."""
    db = workdir / "profiled.duckdb"
    command = rebuild_command(bootstrap_servers, topic, db, env)
    raw = workdir / "rebuild.pyspy"
    profiled = profiling.record_command(command.argv, raw, env, workdir / "rebuild-profile.log")
    if profiled.exit_code != 0:
        raise RuntimeError(f"the profiled rebuild failed (exit {profiled.exit_code}):\n{profiled.output[-3000:]}")
    out.write_text(profiling.summarize(raw, f"{command.kind} under py-spy", profiled.wall_s))
    return {"command": command.kind, "seconds_under_profiler": round(profiled.wall_s, 3), "profile": out.name}
