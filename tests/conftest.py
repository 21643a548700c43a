"""Test-wide set-up. The fixtures are pytest plugins in tests/fixtures/ (listed below); the helpers the
tests share are in tests/support/. The markers are declared in pyproject.toml.
"""

from __future__ import annotations

import os

import pytest

from schemas.settings import ENV_RETENTION_DAYS

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.serve", "tests.fixtures.threads"]

# The tests' events carry fixed dates (late 2026): under the default 90-day retention, a `serve` or
# `project` started by a test would purge them once the calendar moved on. Tests of retention set it.
os.environ.setdefault(ENV_RETENTION_DAYS, "-1")


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.x loads its protocol schemas through importlib.resources' legacy API, hundreds of
    # times per import; the deprecation is theirs to fix and would bury every other warning.
    config.addinivalue_line("filterwarnings", "ignore:(read|open)_text is deprecated:DeprecationWarning")
