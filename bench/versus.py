"""Throughput on a cache miss beside another server that answers the same API: issue 14's comparison with
the reference's own stack (Django and DRF on PostgreSQL), which this repository does not carry.

    python -m bench.versus --db FILE --other http://HOST:PORT --other-token TOKEN [--other-pid PID ...]

FILE is a read model; the other server must hold the same turns (loaded from FILE). A copy of FILE is
served by `chat-analytics serve` with a projector on a fresh, empty topic: the production configuration,
with nothing to fold. Then the rows below, each request a key no earlier request had (as after every
projector commit in production), are driven closed loop at both servers in turn, the same paths at both,
alternating which goes first, and their requests/s are printed side by side. The paths use the
reference's names of the filters (`created_after`, `created_before`), which this API also takes; a bound
before the data or after today keeps every row and makes each request a distinct question. Each run
at this server takes keys no earlier run took; the answer-cache hits it counted meanwhile are reported
and must be 0 for its row to be a miss. `--other-pid` names the other server's process trees (its web
server's master, its database's postmaster) so that its CPU is reported beside ours.

It also measures each row's floor at this server: the row's first question asked again and again, its
answer remembered (HTTP, the token, routing, the snapshot's mark and the answer cache; the row's query
costs nothing). No miss of the row is served faster than that, so the floor divided by the other
server's requests/s is the largest multiple any query path of this server could reach.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from bench import api_latency, machine, report
from bench.__main__ import child_env, copy_read_model, say
from bench.server import HOST, TOKEN, Server, start_server
from broker.selection import select_broker
from broker.topics import ensure_topic
from schemas.settings import ENV_GROUP_ID, Settings

TARGET_MULTIPLE = 10.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="the read model both servers hold (not changed)")
    parser.add_argument("--other", required=True, help="base URL of the other server, e.g. http://127.0.0.1:8100")
    parser.add_argument("--other-token", required=True, help="its token (sent as `Authorization: Token …`)")
    parser.add_argument("--other-pid", type=int, action="append", default=[], help="a process tree of it (repeat)")
    parser.add_argument("--row", action="append", help="rows whose name contains this (=NAME: exactly); repeat")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections per run (default 8)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run (default 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each row at each server (default 2)")
    parser.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR)
    return parser.parse_args(argv)


def rows_of(samples: api_latency.Samples, today: datetime) -> list[dict[str, Any]]:
    """The questions of the issue's comparison, each as up to MISS_SAMPLES distinct paths. Left out: answers
    that can outlast the reference's 30 s web-server timeout under load (alone, the whole conversations
    list takes it 16-19 s and the heaviest visitor's transcript 8-13 s)."""
    path, users, n = api_latency.api_path, samples.users, api_latency.MISS_SAMPLES
    week_ago = (today - timedelta(days=6)).date().isoformat()
    deep_page = api_latency.deep_page(samples.interactions)
    # The middle half of the sampled visitors by turns: a typical visitor's whole transcript, not the
    # heaviest's (tens of thousands of turns, longer than the reference's timeout).
    by_turns = sorted(users, key=lambda u: (samples.user_turns[u], u))
    typical = by_turns[len(by_turns) // 4 : 3 * len(by_turns) // 4] or by_turns
    median = samples.user_turns[typical[len(typical) // 2]]

    def every_row(i: int) -> dict[str, str]:
        return {"created_after": api_latency.before_data(i)}

    rows: list[tuple[str, list[str]]] = [
        ("list", [path("", every_row(i)) for i in range(n)]),
        ("list ?severity=high", [path("", {"severity": "high", **every_row(i)}) for i in range(n)]),
        ("list ?user_slug", [path("", {"user_slug": users[i % len(users)], **every_row(i)}) for i in range(n)]),
        (f"list ?page={deep_page}", [path("", {"page": deep_page, **every_row(i)}) for i in range(n)]),
        ("retrieve", [path(f"{u}/") for u in samples.many_uuids]),
        ("by-session/{id}", [path(f"by-session/{quote(s, safe='')}/") for s in samples.many_sessions]),
        (f"by-user/{{slug}}, a typical visitor's whole transcript (median {median:,} turns)",
         [path(f"by-user/{typical[i % len(typical)]}/", every_row(i)) for i in range(n)]),
        ("by-user aggregate", [path("by-user/", every_row(i)) for i in range(n)]),
        ("kpi ?created_after&created_before",
         [path("kpi/", {"created_after": week_ago, "created_before": api_latency.after_today(today, i)})
          for i in range(n)]),
        ("feedbacks list ?submitted_to",
         [f"/api/anonymous-chat-feedbacks/?submitted_to={api_latency.after_today(today, i)}" for i in range(n)]),
    ]  # fmt: skip
    return [{"name": name, "paths": paths} for name, paths in rows]


def _first_answer(host: str, port: int, token: str, path: str) -> dict[str, Any]:
    """Status, size and (when the body says) the row count of one request: both servers must hold the
    same data for their figures to compare."""
    request = urllib.request.Request(f"http://{host}:{port}{path}", headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read()
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    # A page says its list's length in X-Result-Count (the reference's LinkHeaderPagination); a KPI in its body.
    count = headers.get("X-Result-Count") or (parsed.get("interactions_total") if isinstance(parsed, dict) else None)
    return {"status": status, "bytes": len(body), "count": count}


def _spec(host: str, port: int, token: str, pids: int | list[int] | None, rows: list[dict[str, Any]],
          args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    return {
        "host": host,
        "port": port,
        "token": token,
        "connections": args.connections,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "server_pid": pids,
        "endpoints": rows,
    }


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("requests_per_s", "p50_ms", "p99_ms", "errors", "first_error", "cache_hits", "server_cpu_cores")
    return {k: result.get(k) for k in keys}


def compare(server: Server, samples: api_latency.Samples, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    other = urlsplit(args.other)
    other_host, other_port = other.hostname or HOST, other.port or 80
    planned = api_latency.select(rows_of(samples, datetime.now(UTC)), args.row)
    rows = []
    for row in planned:
        ours = _first_answer(HOST, server.port, TOKEN, row["paths"][0])
        theirs = _first_answer(other_host, other_port, args.other_token, row["paths"][0])
        say(f"{row['name']}: first answer ours {ours}, other {theirs}")
        rows.append({"name": row["name"], "example": row["paths"][0], "ours_first": ours, "other_first": theirs,
                     "ours": [], "other": []})  # fmt: skip
    for k in range(args.rounds):
        # Round k takes every rounds-th key from k + 1: no run at this server repeats an earlier run's key,
        # nor the first question, asked above (and again for the floor below).
        sliced = [{"name": r["name"], "paths": r["paths"][1 + k :: args.rounds]} for r in planned]
        drives = [
            ("ours", _spec(HOST, server.port, TOKEN, server.process.pid, sliced, args)),
            ("other", _spec(other_host, other_port, args.other_token, args.other_pid or None, sliced, args)),
        ]
        for side, spec in drives if k % 2 == 0 else drives[::-1]:
            say(f"round {k + 1} of {args.rounds}: {side}")
            for row, result in zip(rows, api_latency.drive_load(spec, workdir), strict=True):
                row[side].append(_brief(result))
    # Each row's floor: its first question asked again and again, so that after the warm-up every answer
    # is the one remembered (the row's query costs nothing); and /healthz, which takes no token and reads
    # nothing: what HTTP and routing alone cost.
    floors = [{"name": r["name"], "paths": r["paths"][:1]} for r in planned]
    floors.append({"name": "healthz", "paths": ["/healthz"]})
    say("each row's floor: one remembered answer asked again and again")
    *remembered, healthz = map(
        _brief, api_latency.drive_load(_spec(HOST, server.port, TOKEN, server.process.pid, floors, args), workdir)
    )
    for row, floor in zip(rows, remembered, strict=True):
        row["floor"] = floor
    setup = {"other": args.other, "connections": args.connections, "seconds_per_run": args.seconds,
             "rounds": args.rounds, "interactions_in_read_model": samples.interactions}  # fmt: skip
    return summarize(rows, healthz=healthz, setup=setup)


def summarize(rows: list[dict[str, Any]], *, healthz: dict[str, Any], setup: dict[str, Any]) -> dict[str, Any]:
    """Each row's best run at each side (`ours_best`, `other_best`), its errors, their multiple, and its
    floor's (`floor`: its answer from memory): a row counts when neither side had an error and every
    answer of ours was a miss."""
    for row in rows:
        row["ours_best"] = max(row["ours"], key=lambda r: r["requests_per_s"])
        row["other_best"] = max(row["other"], key=lambda r: r["requests_per_s"])
        row["errors"] = sum(r["errors"] for r in row["ours"] + row["other"])
        ours, theirs = row["ours_best"]["requests_per_s"], row["other_best"]["requests_per_s"]
        valid = theirs > 0 and row["errors"] == 0
        row["ours_requests_per_s"], row["other_requests_per_s"] = ours, theirs
        row["multiple"] = round(ours / theirs, 2) if valid else None
        row["floor_multiple"] = round(row["floor"]["requests_per_s"] / theirs, 2) if valid else None
        row["all_misses"] = all(r["cache_hits"] == 0 for r in row["ours"])
        row["met"] = row["all_misses"] and row["multiple"] is not None and row["multiple"] >= TARGET_MULTIPLE
    return {**setup, "target_multiple": TARGET_MULTIPLE, "healthz": healthz, "rows": rows}


def _rate(requests_per_s: float) -> str:
    return f"{requests_per_s:,.0f}" if requests_per_s >= 10 else f"{requests_per_s:.1f}"


def _run_cell(run: dict[str, Any]) -> str:
    p50 = run["p50_ms"]
    return f"{_rate(run['requests_per_s'])} ({'—' if p50 is None else f'{p50:,.1f}'})"


def table(figures: dict[str, Any]) -> str:
    healthz = figures["healthz"]
    lines = [
        f"### This server vs {figures['other']}: closed loop, {figures['connections']} connections, every request a"
        f" miss, best of {figures['rounds']} runs of {figures['seconds_per_run']:g} s each",
        "",
        "| row | ours req/s (p50 ms) | other req/s (p50 ms) | multiple | ours from memory req/s (p50 ms) |"
        " from memory / other | ours CPU, other CPU (cores) | misses only |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in figures["rows"]:
        best_ours, best_other, errors = row["ours_best"], row["other_best"], row["errors"]
        multiple = "—" if row["multiple"] is None else f"{row['multiple']:g}x"
        ceiling = "—" if row["floor_multiple"] is None else f"{row['floor_multiple']:g}x"
        remembered = row["floor"]["cache_hits"] is not None and row["floor"]["cache_hits"] > 0
        lines.append(
            f"| {row['name']} | {_run_cell(best_ours)} | {_run_cell(best_other)} | {multiple}"
            f"{'' if not errors else f' ({errors} errors)'} |"
            f" {_run_cell(row['floor'])}{'' if remembered else ' (not remembered: each a miss)'} | {ceiling} |"
            f" {best_ours['server_cpu_cores']}, {best_other['server_cpu_cores']} |"
            f" {'yes' if row['all_misses'] else '**no**'} |"
        )
    lines += [
        "",
        "'from memory': the row's first question asked again and again, its answer remembered after the first:"
        " no miss of the row can be served faster, so 'from memory / other' is the largest multiple any query path"
        f" could reach; the target is {figures['target_multiple']:g}x. /healthz (no token, nothing read):"
        f" {_rate(healthz['requests_per_s'])} requests/s ({healthz['server_cpu_cores']} cores).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chat-analytics-versus-"))
    broker = select_broker(Path(Settings.from_env().home), ephemeral=True)
    server: Server | None = None
    try:
        served = workdir / "served.duckdb"
        copy_read_model(args.db, served)
        samples = api_latency.pick_samples(served)
        topic = f"versus-{uuid.uuid4().hex[:10]}"
        ensure_topic(broker.bootstrap_servers, topic, 1)
        env = child_env(broker.bootstrap_servers, topic, workdir)
        say(f"serving a copy of {args.db} ({samples.interactions:,} interactions), nothing to fold")
        server = start_server(broker.bootstrap_servers, topic, served, env[ENV_GROUP_ID], env, workdir / "serve.log")
        server.wait_ready()
        described = machine.describe(broker.description)
        figures = compare(server, samples, args, workdir)
        report.write_json(args.results_dir, "versus", figures, described)
        text = f"{machine.one_line(described)}\n\n{table(figures)}"
        print(text, flush=True)
        return 0
    finally:
        if server is not None:
            server.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
