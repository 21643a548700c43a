"""Where the tests find the Kafka jars (and the state of a local broker)."""

from __future__ import annotations

from pathlib import Path

from schemas.settings import ENV_HOME, env
from tests.support import REPO


def kafka_home() -> Path:
    """CHAT_ANALYTICS_HOME, else the repository's own cache: anchored at the repository, so running pytest
    from another folder re-uses the same jar cache."""
    configured = env(ENV_HOME)
    return Path(configured) if configured else REPO / ".cache" / "chat-analytics"
