"""The results: one JSON file per benchmark (overwritten each run), the printed table, latest.md."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_json(results_dir: Path, name: str, figures: dict[str, Any], machine: dict[str, Any]) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    body = {"benchmark": name, "ran_at": datetime.now(UTC).isoformat(timespec="seconds"), **figures}
    if name != "machine":
        body["machine"] = machine
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    return path


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _met(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "**no**")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def replay_table(r: dict[str, Any]) -> list[str]:
    targets = r["targets"]
    raw, rebuild = r["raw_read"], r["rebuild"]
    return [
        f"### Replay: {r['events']:,} demo events, {r['partitions']} partitions",
        "",
        "| measure | result | target | met |",
        "|---|---|---|---|",
        f"| raw read (kafka-python + orjson.loads, nothing else) | {raw['events_per_s']:,} events/s "
        f"({raw['seconds']:.1f} s) | ceiling | |",
        f"| rebuild into a fresh file ({rebuild['command']}) | {rebuild['events_per_s']:,} events/s "
        f"({rebuild['seconds']:.1f} s) | {targets['rebuild_events_per_s']['target']} events/s "
        f"| {_met(targets['rebuild_events_per_s']['met'])} |",
        f"| rebuild / raw read | {r['ratio_rebuild_to_raw']:.2f} | {targets['ratio_rebuild_to_raw']['target']} "
        f"| {_met(targets['ratio_rebuild_to_raw']['met'])} |",
        f"| rebuild peak memory: all its processes, PSS (largest process alone, RSS) "
        f"| {_mib(rebuild['peak_memory_bytes'])} ({_mib(rebuild['peak_rss_largest_process_bytes'])}) "
        f"| {targets['peak_memory']['target']} | {_met(targets['peak_memory']['met'])} |",
        f"| file size vs raw JSON | {_mib(rebuild['file_bytes'])} vs {_mib(r['raw_json_bytes'])} "
        f"({r['file_to_raw_json']:.2f}) | {targets['file_size']['target']} | {_met(targets['file_size']['met'])} |",
        *_cpu_rows(raw, rebuild),
    ]


def _cpu_rows(raw: dict[str, Any], rebuild: dict[str, Any]) -> list[str]:
    """CPU time per event of the raw read and of the rebuild (writer and readers), and how busy the cores
    were: a rebuild can go no faster than the machine's cores divided by its CPU time per event."""
    if "cpu" not in rebuild or "cpu" not in raw:
        return []  # results of a run before these figures
    cpu, raw_cpu = rebuild["cpu"], raw["cpu"]
    readers = cpu["us_per_event"] - cpu["main_process_us_per_event"]
    ceiling = cpu["cores"] / cpu["us_per_event"] * 1e6 if cpu["us_per_event"] else 0
    return [
        f"| raw read: CPU per event (cores busy meanwhile, anyone's) | {raw_cpu['us_per_event']:,.1f} µs "
        f"({raw_cpu['machine_busy']:.0%} of {raw_cpu['cores']}) | | |",
        f"| rebuild: CPU per event, writer + readers (cores busy meanwhile, the broker's work included) "
        f"| {cpu['us_per_event']:,.1f} µs = {cpu['main_process_us_per_event']:,.1f} + {readers:,.1f} "
        f"({cpu['machine_busy']:.0%} of {cpu['cores']}): at most {ceiling:,.0f} events/s on {cpu['cores']} cores "
        f"| | |",
    ]


def _endpoint_rows(endpoints: list[dict[str, Any]]) -> list[str]:
    rows = []
    for e in endpoints:
        target = "" if e["target_p99_ms"] is None else f"< {e['target_p99_ms']:g} ms"
        server_cpu = "—" if e.get("server_cpu_cores") is None else f"{e['server_cpu_cores']:.2f}"
        mark = " †" if e.get("checkpoints") else ""
        cached = _share(e.get("cache_hits"), e.get("cache_misses"))
        rows_cached = _share(e.get("row_cache_hits"), e.get("row_cache_misses"))
        p50, p99 = _ms(e["p50_ms"]), _ms(e["p99_ms"])
        if e["p50_ms"] is None:
            p50, p99 = _none_finished(e)
        rows.append(
            f"| {e['name']} | {p50} | {p99}{mark} | {e['requests_per_s']:,.0f} "
            f"| {e['errors']} | {server_cpu} | {cached} | {rows_cached} | {target} | {_met(e['met'])} |"
        )
    return rows


def _share(hits: int | None, misses: int | None) -> str:
    """Hits as a share of hits and misses; — when none were counted."""
    served = None if hits is None else hits + (misses or 0)
    return "—" if not served else f"{hits / served:.0%}"


def _none_finished(e: dict[str, Any]) -> tuple[str, str]:
    """The latency cells of a row none of whose measured requests finished: every answer took longer
    than the window, and the warm-up's answers (discarded otherwise) say by how much."""
    start, end = e["window_monotonic"]
    window_s = round(end - start, 1)
    slowest = e.get("warmup_max_ms")
    over = "—" if slowest is None else f"> {window_s * 1000:,.0f} (warm-up up to {slowest:,.0f})"
    return f"none in {window_s:g} s", over


_HEADER = [
    "| endpoint | p50 ms | p99 ms | req/s | errors | server CPU (cores) | cache hits | rows from memory"
    " | p99 target | met |",
    "|---|---|---|---|---|---|---|---|---|---|",
]


def whole_lists_table(r: dict[str, Any]) -> list[str]:
    """The whole (unpaginated) lists again: when their first bytes arrived and their size, since a long
    one is streamed (docs/api.md) and its last byte measures its size more than the server."""
    runs = (("closed loop", r["endpoints"]), ("one at a time", r.get("one_at_a_time") or []))
    rows = [(how, e) for how, endpoints in runs for e in endpoints if "whole list" in e["name"] and e.get("first_byte")]
    if not rows:
        return []
    lines = [
        "",
        "Whole lists: first bytes (status line and headers: a long list is streamed, its rows still being read "
        "after them) and the whole answer, with its mean size.",
        "",
        "| endpoint | run | first bytes p50 ms | first bytes p99 ms | whole p50 ms | whole p99 ms | mean MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for how, e in rows:
        size = "—" if e.get("mean_response_bytes") is None else f"{e['mean_response_bytes'] / 1e6:,.1f}"
        first = e["first_byte"]
        whole = (_ms(e["p50_ms"]), _ms(e["p99_ms"])) if e["p50_ms"] is not None else _none_finished(e)
        lines.append(
            f"| {e['name']} | {how} | {_ms(first['p50_ms'])} | {_ms(first['p99_ms'])} | {whole[0]} | {whole[1]} "
            f"| {size} |"
        )
    return lines


def api_table(r: dict[str, Any]) -> list[str]:
    fixed = r.get("fixed_rate")
    lines = [
        f"### API latency: {r['interactions_in_read_model']:,} interactions, {r['connections']} connections, "
        f"{r['seconds_per_endpoint']:g} s per endpoint, live ingest folded at "
        f"{r['live_events_folded_per_s'] or 0:,.0f} events/s",
        "",
    ]
    if fixed:
        lines += [
            f"At a fixed rate: {fixed['requests_per_s']:g} requests/s per endpoint, due on a fixed schedule over "
            f"the {r['connections']} connections; latency counted from when each request was due.",
            "",
            *_HEADER,
            *_endpoint_rows(fixed["endpoints"]),
            "",
        ]
        if fixed.get("below_rate"):
            lines += [
                "Not offered that rate, since they served fewer requests/s than it in the closed loop below "
                f"(see their rows there): {', '.join(fixed['below_rate'])}.",
                "",
            ]
        alone = r.get("one_at_a_time") or []
        if alone:
            lines += [
                "Those again, one request at a time (one connection, the next request sent when the previous "
                "answer has arrived): what one staff member waits for each, with nothing queued before it. "
                "A weaker condition than the fixed rate, which they cannot sustain.",
                "",
                *_HEADER,
                *_endpoint_rows(alone),
                "",
            ]
    if r["endpoints"]:  # none with --no-closed-loop
        lines += [
            f"Closed loop (saturation): each of the {r['connections']} connections sends its next request as soon as "
            "the previous answer arrives, so req/s is the most the machine served and the latencies include the "
            "wait behind the other connections' requests.",
            "",
            *_HEADER,
            *_endpoint_rows(r["endpoints"]),
            "",
        ]
    lines += [
        "Rows marked (miss) send an answer-cache key no earlier request sent (bench/api_latency.py,"
        " `miss_endpoints`): what a staff member sees right after a projector commit. cache hits: the share of"
        " answers the server took from its snapshot cache while the row was measured; rows from memory: the share"
        " of the rows of list pages it took from its row cache (api/row_cache.py).",
    ]
    lines += whole_lists_table(r)
    every = [*r["endpoints"], *(fixed["endpoints"] if fixed else []), *(r.get("one_at_a_time") or [])]
    if any(e.get("checkpoints") for e in every):
        lines += [
            "",
            "† DuckDB checkpointed the served file (the projector's writes) while this endpoint was measured.",
        ]
    return lines


def freshness_table(r: dict[str, Any]) -> list[str]:
    f = r["freshness"]
    checkpoints = r.get("checkpoints_during_run") or []
    mark = " †" if checkpoints else ""
    return [
        f"### Freshness: {r['background_rate_events_per_s']:,.0f} events/s for {r['seconds']:g} s, "
        f"one probe turn per {r['probe_interval_s'] * 1000:g} ms, {_PROBE_WORDS.get(r.get('probe', 'poll'), '')}",
        "",
        "| probes seen | missed | p50 ms | p99 ms | max ms | p99 target | met |",
        "|---|---|---|---|---|---|---|",
        f"| {r['seen']} of {r['probes']} | {r['missed']} | {_ms(f['p50_ms'])} | {_ms(f['p99_ms'])}{mark} "
        f"| {_ms(f['max_ms'])} | < {r['target_p99_ms']:g} ms | {_met(r['met'])} |",
        *(
            ["", f"† DuckDB checkpointed the served file {len(checkpoints)} time(s) during the run."]
            if checkpoints
            else []
        ),
        *_batches_line(r.get("projector_batches")),
    ]


_PROBE_WORDS = {"wait": "each asked once with min_position (held until folded)", "poll": "polled"}


def _batches_line(b: dict[str, Any] | None) -> list[str]:
    """The projector's batches during the run (`chat_analytics_projector_batches_total` and the rest)."""
    if not b or not b.get("batches"):
        return []
    return [
        "",
        f"Meanwhile the projector folded {b['batches']:,} batches of {b['mean_records']:,.0f} records on average,"
        f" each in {_ms(b['mean_fold_ms'])} ms ({_ms(b['mean_fold_cpu_ms'])} ms of its thread's CPU), folding"
        f" {b['folding_share']:.0%} of the time: an event waits for the end of the batch being folded when it"
        " arrives, then for its own.",
    ]


def markdown(results: dict[str, dict[str, Any]], machine_line: str, command: str, state_line: str) -> str:
    lines = [
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with `{command}` on: {machine_line}.",
        "",
        state_line,
        "",
    ]
    for name, build in (("replay", replay_table), ("api_latency", api_table), ("freshness", freshness_table)):
        if name in results:
            lines += [*build(results[name]), ""]
    return "\n".join(lines)
