"""`chat-analytics demo` (what `make demo` runs) stops whole however it is asked to: Ctrl-C at a terminal
(SIGINT to its whole process group), or a SIGINT, SIGTERM or SIGHUP to the demo process alone (an IDE's
stop button, `timeout -s INT`, a supervisor, a closed terminal). Its `serve` then stops cleanly and the
port is free again.

The demo runs against the tests' broker (CHAT_ANALYTICS_BOOTSTRAP_SERVERS), on a topic and a home of
its own, on a free port (`--port`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from broker.probe import port_open
from loopback.ports import free_port
from tests.support import REPO
from tests.support.serve import wait_for

# The demo waited this long for a `serve` that a lone SIGINT had not reached before it stopped it: a
# stop must take less than that.
STOPPED_WITHIN_S = 10.0


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    port: int
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture
def demo(bootstrap_servers: str, topic: str, tmp_path: Path) -> Iterator[Demo]:
    port = free_port()
    env = {
        **os.environ,
        "CHAT_ANALYTICS_BOOTSTRAP_SERVERS": bootstrap_servers,
        "CHAT_ANALYTICS_TOPIC": topic,
        "CHAT_ANALYTICS_HOME": str(tmp_path / "home"),
        "CHAT_ANALYTICS_DB": str(tmp_path / "demo.duckdb"),
        "CHAT_ANALYTICS_GROUP_ID": f"demo-{topic}",
        "CHAT_ANALYTICS_TOKENS_FILE": str(tmp_path / "tokens.json"),
    }
    output = tmp_path / "demo.log"
    with output.open("wb") as sink:
        # A process group of its own, as a terminal gives a foreground job: os.killpg is then Ctrl-C.
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Demo(proc, port, output)
    try:
        try:
            wait_for(
                lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200, "readiness", proc
            )
        except AssertionError as exc:  # with what the demo printed
            raise AssertionError(f"the demo: {exc}\n{running.text()}") from None
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stopped(demo: Demo) -> float:
    started = time.monotonic()
    code = demo.proc.wait(timeout=60)
    took = time.monotonic() - started
    assert code == 0, demo.text()
    return took


def _assert_clean_stop(demo: Demo, took: float) -> None:
    text = demo.text()
    assert took < STOPPED_WITHIN_S, f"stopped after {took:.1f} s:\n{text}"
    assert not port_open(f"127.0.0.1:{demo.port}"), "the demo's server still listens"
    assert "Finished server process" in text, text  # uvicorn's last line of a clean stop
    assert "Traceback" not in text, text
    assert "parsing here for now" not in text, text  # the live parser was not killed under the projector
    assert "stopping the Kafka broker" not in text  # the tests' broker is not the demo's to stop


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["sigint", "sigterm", "sighup"])
def test_a_signal_to_the_demo_alone_stops_it_and_its_server(demo: Demo, sig: signal.Signals) -> None:
    demo.proc.send_signal(sig)
    _assert_clean_stop(demo, _stopped(demo))


def test_ctrl_c_stops_the_demo_and_its_server(demo: Demo) -> None:
    os.killpg(demo.proc.pid, signal.SIGINT)
    _assert_clean_stop(demo, _stopped(demo))
