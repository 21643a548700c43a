"""`python -m bench.versus`: the questions it asks both servers, and how its table reads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from bench import api_latency, miss_cost, versus

# The filters of the reference's own FilterSets (its list, KPI and feedbacks), which this API also takes.
REFERENCE_PARAMETERS = {"created_after", "created_before", "severity", "user_slug", "page", "submitted_to"}


def test_every_request_of_a_row_is_a_question_not_asked_before_in_the_reference_s_terms(small_read_model: Path) -> None:
    rows = versus.rows_of(api_latency.pick_samples(small_read_model), datetime.now(UTC))
    assert len(rows) == 10
    for row in rows:
        paths = row["paths"]
        # A retrieve or by-session has as many keys as the file has; every other row has MISS_SAMPLES.
        assert len(set(paths)) == len(paths), row["name"]
        for path in paths[:50]:
            assert {name for name, _ in parse_qsl(urlsplit(path).query)} <= REFERENCE_PARAMETERS, path


def test_this_api_answers_the_first_question_of_every_row(small_read_model: Path) -> None:
    rows = versus.rows_of(api_latency.pick_samples(small_read_model), datetime.now(UTC))
    app = miss_cost._app(small_read_model)

    async def ask() -> list[int]:
        return [(await miss_cost._get(app, row["paths"][0]))[0] for row in rows]

    assert asyncio.run(ask()) == [200] * len(rows)


def _run(rps: float, hits: int = 0, errors: int = 0) -> dict[str, object]:
    return {"requests_per_s": rps, "p50_ms": 10.0, "p99_ms": 20.0, "errors": errors, "first_error": None,
            "cache_hits": hits, "server_cpu_cores": 1.5}  # fmt: skip


def test_the_table_gives_the_best_run_of_each_side_their_multiple_and_whether_every_answer_was_a_miss() -> None:
    rows = [
        {"name": "list", "ours": [_run(150), _run(160)], "other": [_run(12), _run(10)], "floor": _run(660, hits=9)},
        {"name": "retrieve", "ours": [_run(260, hits=3)], "other": [_run(180)], "floor": _run(700, hits=9)},
        {"name": "kpi", "ours": [_run(90)], "other": [_run(0.2, errors=1)], "floor": _run(80)},
    ]
    setup = {"other": "http://ref", "connections": 8, "seconds_per_run": 15.0, "rounds": 2}
    figures = versus.summarize(rows, healthz=_run(6000), setup=setup)
    table = versus.table(figures)
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in table.splitlines() if line.startswith("| ") and not line.startswith("| row")}  # fmt: skip
    assert lines["list"][1] == "160 (10.0)" and lines["list"][2] == "12 (10.0)"
    assert lines["list"][3] == "13.33x" and lines["list"][5] == "55x" and lines["list"][7] == "yes"
    assert lines["retrieve"][7] == "**no**"  # a hit is not a miss: the row does not count
    assert lines["kpi"][2] == "0.2 (10.0)" and lines["kpi"][3] == "— (1 errors)"
    assert "not remembered" in lines["kpi"][4]  # its floor was no floor: every answer computed again
    assert [r["met"] for r in figures["rows"]] == [True, False, False]
