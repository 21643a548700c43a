"""Schemathesis fuzzes every operation of /api/schema/ (authenticated) over the hand-built read model:
no 500, and every response conforms to the documented status codes, headers and body schemas."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api.app import create_app
from auth.tokens import TokenStore
from tests.support.api_data import AUTH, NOW, TOKENS, build_read_model

# Loaded at import, not from a fixture: schemathesis' lazy fixture loader does not run on pytest 9
# (it sets Function._nodeid, which pytest 9 no longer has).
_DIR = Path(tempfile.mkdtemp(prefix="api-fuzz-"))
atexit.register(shutil.rmtree, _DIR, True)  # also when this module's tests are deselected
_HANDLE = build_read_model(_DIR / "rm.duckdb")
schema = schemathesis.openapi.from_asgi(
    "/api/schema/", create_app(_HANDLE, tokens=TokenStore(TOKENS), clock=lambda: NOW)
)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _HANDLE.connection.close()


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_response_matches_the_schema(case: Any) -> None:
    # Unknown query parameters are ignored, as the reference (and its clients, which send filters this
    # server does not know) expect: schemathesis' "invalid data must be rejected" check does not apply.
    # Negative cases are still sent, and must still be answered without a 500 and as documented.
    # The one 5xx allowed: a 503 for a `min_position` this file has not reached (it never moves here),
    # which is documented, and tells when to come back.
    excluded = [schemathesis.checks.negative_data_rejection, schemathesis.checks.not_a_server_error]
    response = case.call_and_validate(headers=AUTH, excluded_checks=excluded)
    if response.status_code >= 500:
        assert response.status_code == 503 and (case.query or {}).get("min_position"), response.text
        assert response.headers["retry-after"] == ["1"] and "behind min_position" in response.json()["detail"]
