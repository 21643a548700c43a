"""Shared fixtures: a real Kafka broker for the session and a fresh topic per test.

The broker comes from `broker.selection.select_broker` (CHAT_ANALYTICS_BOOTSTRAP_SERVERS, else Docker,
else a local broker from Maven-resolved jars). A broker this session starts is stopped at its end and
cannot outlive it even if pytest is killed (see broker/lifetime.py). When no broker can be had, every
test that asks for one fails with the reason: such a test is never skipped.

    def test_x(topic: str, bootstrap_servers: str): ...            # fresh 3-partition topic

    @pytest.mark.partitions(1)
    def test_y(topic: str): ...                                     # fresh 1-partition topic

    def test_z(make_topic): a = make_topic(partitions=6); b = make_topic()
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from broker.selection import SelectedBroker, select_broker
from schemas.settings import ENV_HOME, ENV_RETENTION_DAYS, env

# The tests' events carry fixed dates (late 2026): under the default 90-day retention, a `serve` or
# `project` started by a test would purge them once the calendar moved on. Tests of retention set it.
os.environ.setdefault(ENV_RETENTION_DAYS, "-1")

if TYPE_CHECKING:
    # Imported where used: kafka's import-time warnings must come after pytest_configure's filter.
    from kafka import KafkaAdminClient

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEST_PARTITIONS = 3


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "partitions(n): number of partitions of the `topic` fixture's topic (default 3)")
    # kafka-python 3.x loads its protocol schemas through importlib.resources' legacy API, hundreds of
    # times per import; the deprecation is theirs to fix and would bury every other warning.
    config.addinivalue_line("filterwarnings", "ignore:(read|open)_text is deprecated:DeprecationWarning")


def _home() -> Path:
    # Anchored at the repository, so running pytest from another folder re-uses the same jar cache.
    configured = env(ENV_HOME)
    return Path(configured) if configured else REPO_ROOT / ".cache" / "chat-analytics"


@pytest.fixture
def broker_home(tmp_path: Path) -> Path:
    """An empty CHAT_ANALYTICS_HOME that shares the session's Kafka jars (no second download)."""
    from broker.jars import ensure_kafka_libs, kafka_dir

    ensure_kafka_libs(_home())
    home = tmp_path / "home"
    home.mkdir()
    kafka_dir(home).symlink_to(kafka_dir(_home().resolve()), target_is_directory=True)
    return home


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[SelectedBroker]:
    try:
        selected = select_broker(_home(), ephemeral=True)
    except Exception as exc:
        pytest.fail(
            "No Kafka broker for the tests: "
            f"{type(exc).__name__}: {exc}\n"
            "Set CHAT_ANALYTICS_BOOTSTRAP_SERVERS, start a Docker engine, or install Java 17+ and Maven.",
            pytrace=False,
        )
    try:
        yield selected
    finally:
        selected.stop()


@pytest.fixture(scope="session")
def bootstrap_servers(kafka_broker: SelectedBroker) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_admin(bootstrap_servers: str) -> Iterator[KafkaAdminClient]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="chat-analytics-tests")
    try:
        yield admin
    finally:
        admin.close()


def _topic_name(request: pytest.FixtureRequest) -> str:
    # Named after the test, so that a topic seen in a broker's log points back to its test.
    readable = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-.")[:150]
    return f"test-{readable}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_topic(
    request: pytest.FixtureRequest, kafka_broker: SelectedBroker, kafka_admin: KafkaAdminClient
) -> Iterator[Callable[..., str]]:
    """A factory: `make_topic(partitions=3)` creates a fresh, uniquely named topic and returns its name."""
    from broker.topics import TOPIC_CONFIG

    created: list[str] = []

    def make(partitions: int = DEFAULT_TEST_PARTITIONS) -> str:
        name = _topic_name(request)
        # The same infinite retention as `chat-analytics topic create`, so tests see the production setup.
        kafka_admin.create_topics(
            {name: {"num_partitions": partitions, "configs": dict(TOPIC_CONFIG)}}, wait_for_metadata=True
        )
        created.append(name)
        return name

    yield make
    # A private broker is thrown away whole at the end; a shared one (env) is kept tidy.
    if created and not kafka_broker.started_here:
        kafka_admin.delete_topics(created, raise_errors=False)


@pytest.fixture
def topic(request: pytest.FixtureRequest, make_topic: Callable[..., str]) -> str:
    """A fresh topic for this test: 3 partitions, or `@pytest.mark.partitions(n)`."""
    marker = request.node.get_closest_marker("partitions")
    partitions = int(marker.args[0]) if marker is not None else DEFAULT_TEST_PARTITIONS
    return make_topic(partitions=partitions)
