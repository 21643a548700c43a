"""bench/results/latest.md: where each API row lands in the report."""

from __future__ import annotations

from typing import Any

from bench.report import api_table


def _row(name: str, p50: float, p99: float, per_s: float) -> dict[str, Any]:
    return {
        "name": name, "p50_ms": p50, "p99_ms": p99, "requests_per_s": per_s, "errors": 0, "target_p99_ms": 100.0,
        "met": p99 < 100.0, "window_monotonic": [0.0, 5.0], "first_byte": {"p50_ms": 20.0, "p99_ms": 40.0},
        "mean_response_bytes": 91_000_000,
    }  # fmt: skip


def test_a_row_too_slow_for_the_fixed_rate_is_reported_one_request_at_a_time() -> None:
    results = {
        "interactions_in_read_model": 605_675, "connections": 8, "seconds_per_endpoint": 5,
        "live_events_folded_per_s": 1000.0,
        "endpoints": [_row("list", 20.0, 80.0, 300.0), _row("conversations whole list", 2860.0, 3039.0, 2.0)],
        "fixed_rate": {"requests_per_s": 50, "endpoints": [_row("list", 4.0, 50.0, 50.0)],
                       "below_rate": ["conversations whole list"]},
        "one_at_a_time": [_row("conversations whole list", 412.0, 530.0, 2.4)],
    }  # fmt: skip
    text = "\n".join(api_table(results))
    alone = text.split("Those again, one request at a time")[1].split("Closed loop")[0]
    assert "| conversations whole list | 412.0 | 530.0 | 2 |" in alone
    assert "| list |" not in alone
    assert "| conversations whole list | one at a time | 20.0 | 40.0 | 412.0 | 530.0 | 91.0 |" in text
    assert "| conversations whole list | closed loop | 20.0 | 40.0 | 2,860.0 | 3,039.0 | 91.0 |" in text


def test_without_slow_rows_there_is_no_one_at_a_time_table() -> None:
    results = {
        "interactions_in_read_model": 10, "connections": 8, "seconds_per_endpoint": 5,
        "live_events_folded_per_s": 0.0, "endpoints": [_row("list", 2.0, 8.0, 900.0)],
        "fixed_rate": {"requests_per_s": 50, "endpoints": [_row("list", 1.0, 4.0, 50.0)], "below_rate": []},
        "one_at_a_time": [],
    }  # fmt: skip
    assert "one request at a time" not in "\n".join(api_table(results))


def test_the_freshness_report_says_what_the_projector_batches_were_like() -> None:
    from bench.freshness import batches_between
    from bench.report import freshness_table

    names = ("batches_total", "batch_records_total", "fold_seconds_total", "fold_cpu_seconds_total")
    before = dict(zip(names, (10, 1000, 2.0, 1.5), strict=True))
    after = dict(zip(names, (20, 13000, 7.0, 5.5), strict=True))
    batches = batches_between(before, after, elapsed_s=10.0)
    assert batches == {
        "batches": 10,
        "mean_records": 1200.0,
        "mean_fold_ms": 500.0,
        "mean_fold_cpu_ms": 400.0,
        "folding_share": 0.5,
    }
    figures = {
        "background_rate_events_per_s": 2000.0,
        "seconds": 60.0,
        "probe_interval_s": 0.1,
        "seen": 600,
        "probes": 600,
        "missed": 0,
        "freshness": {"p50_ms": 900.0, "p99_ms": 1500.0, "max_ms": 1700.0},
        "target_p99_ms": 1000.0,
        "met": False,
        "projector_batches": batches,
    }
    text = "\n".join(freshness_table(figures))
    assert "folded 10 batches of 1,200 records on average, each in 500.0 ms (400.0 ms of its thread's CPU)" in text
    assert "folding 50% of the time" in text
    # No batch between the readings (an idle projector): no line rather than a division by zero.
    assert batches_between(before, before, elapsed_s=10.0) == {"batches": 0}
    assert "folded" not in "\n".join(freshness_table({**figures, "projector_batches": {"batches": 0}}))


def test_the_replay_table_says_what_a_rebuild_costs_per_event_and_the_rate_that_allows() -> None:
    from bench.report import replay_table

    def cpu(seconds: float, main: float, busy: float) -> dict[str, Any]:
        return {
            "seconds": seconds, "main_process_seconds": main, "us_per_event": seconds,
            "main_process_us_per_event": main, "machine_busy": busy, "cores": 2,
        }  # fmt: skip

    met = {"target": "x", "met": False}
    figures = {
        "events": 1_000_000, "partitions": 6, "ratio_rebuild_to_raw": 0.25, "raw_json_bytes": 2**30,
        "file_to_raw_json": 0.5,
        "raw_read": {"events_per_s": 60_000, "seconds": 16.7, "cpu": cpu(14.5, 14.5, 0.6)},
        "rebuild": {
            "command": "chat-analytics rebuild", "events_per_s": 16_000, "seconds": 62.5, "peak_memory_bytes": 2**29,
            "peak_rss_largest_process_bytes": 2**28, "file_bytes": 2**29, "cpu": cpu(100.0, 40.0, 0.97),
        },
        "targets": {"rebuild_events_per_s": met, "ratio_rebuild_to_raw": met, "peak_memory": met, "file_size": met},
    }  # fmt: skip
    text = "\n".join(replay_table(figures))
    assert "| raw read: CPU per event (cores busy meanwhile, anyone's) | 14.5 µs (60% of 2) |" in text
    # 100 µs an event on 2 cores: 20,000 events/s at the very most.
    assert "| 100.0 µs = 40.0 + 60.0 (97% of 2): at most 20,000 events/s on 2 cores |" in text
    # Results written before these figures are still reported, without the lines.
    del figures["rebuild"]["cpu"]
    assert "CPU per event" not in "\n".join(replay_table(figures))


def test_the_report_gives_the_machine_speed_at_the_start_and_after_each_benchmark() -> None:
    from bench.machine import state_line

    described = {"load_average_at_start": [0.6, 0.94, 1.24], "speed_probe_s_at_start": 0.151}
    results = {"replay": {"speed_probe_s_after": 0.163}, "api_latency": {"speed_probe_s_after": 0.149}}
    line = state_line(described, results)
    assert line.startswith("Load average at the start: 0.6, 0.94, 1.24.")
    assert "0.151 s at the start, 0.163 s after the replay, 0.149 s after the api latency." in line
    # A results folder written before the probe existed has none: the line says so instead of failing.
    assert "not taken at the start" in state_line({"load_average_at_start": None}, {"replay": {}})
