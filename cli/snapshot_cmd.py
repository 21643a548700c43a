"""`chat-analytics snapshot --db OUT`: a consistent copy of the read model of a running `serve`, taken
while it serves (GET /api/admin/snapshot/), to seed another replica: a `serve` started on the copy folds
on from the offsets stored in it instead of replaying the whole topic."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from cli.admin_client import TIMEOUT_S
from schemas.settings import DEFAULT_URL, ENV_ADMIN_TOKEN, ENV_URL, Settings, env

CHUNK = 1 << 20


def register(sub: argparse._SubParsersAction) -> None:
    settings = Settings.from_env()
    parser = sub.add_parser(
        "snapshot",
        help="copy the read model of a running serve, consistently, into a new file (to seed a replica)",
        description="Downloads a copy of the read model a running `serve` holds, as of one projector commit and "
        "with the offsets of that commit, while it keeps serving. Start `serve --db OUT` on the copy: it folds "
        "on from those offsets.",
    )
    parser.add_argument("--db", required=True, type=Path, help="the file to write (must not exist, unless --force)")
    parser.add_argument(
        "--url", default=env(ENV_URL, DEFAULT_URL), help=f"the serve (env {ENV_URL}, else {DEFAULT_URL})"
    )
    parser.add_argument("--token", default=env(ENV_ADMIN_TOKEN), help=f"a staff API token (env {ENV_ADMIN_TOKEN})")
    parser.add_argument("--topic", default=settings.topic, help="the topic, to show the copy's offsets")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.set_defaults(func=_snapshot)


def _snapshot(args: argparse.Namespace) -> int:
    out: Path = args.db
    if (out.exists() or Path(f"{out}.wal").exists()) and not args.force:
        print(f"snapshot: {out} exists (--force to replace it)", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    request = urllib.request.Request(f"{args.url.rstrip('/')}/api/admin/snapshot/")
    if args.token:
        request.add_header("Authorization", f"Token {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, partial.open("wb") as file:
            position = response.headers.get("X-Read-Model-Position", "?")
            shutil.copyfileobj(response, file, CHUNK)
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        print(f"snapshot: HTTP {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        print(f"snapshot: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    try:
        offsets, version = _check(partial, args.topic)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        print(f"snapshot: the downloaded copy does not open as a read model: {exc}", file=sys.stderr)
        return 1
    Path(f"{out}.wal").unlink(missing_ok=True)
    os.replace(partial, out)
    size = out.stat().st_size
    print(f"{out}: {size:,} bytes, read-model version {version}, position {position}")
    print(f"stored offsets of {args.topic}: {offsets or '(none: built from another topic?)'}")
    return 0


def _check(path: Path, topic: str) -> tuple[dict[int, int], int | None]:
    from schemas.readmodel import connect, file_version, stored_offsets

    con = connect(path, read_only=True)
    try:
        return stored_offsets(con, topic), file_version(con)
    finally:
        con.close()
