"""Helpers the tests share (not tests themselves): event builders, the hand-built read model of the API
tests, Kafka and process helpers, fault injection. Fixtures are in tests/fixtures/ (pytest plugins)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
