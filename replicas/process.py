"""Child processes of the service as an orchestrator runs them: the arguments of a `serve` of one topic
(`serve_args`), and ending one (`terminate`: SIGTERM, then SIGKILL if it does not stop in time)."""

from __future__ import annotations

import subprocess
from os import PathLike


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def serve_args(
    *, port: int, bootstrap_servers: str, topic: str, db: str | PathLike[str], group_id: str, host: str = "127.0.0.1"
) -> list[str]:
    """`chat-analytics serve`'s arguments (after the program) for one topic, file and consumer group."""
    return [
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--bootstrap-servers",
        bootstrap_servers,
        "--topic",
        topic,
        "--db",
        str(db),
        "--group-id",
        group_id,
    ]
