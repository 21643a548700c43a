"""Response rendering: every body is serialised once, by orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

_INT_RANGE = range(-(2**63), 2**64)  # what orjson writes itself


def dumps(content: Any) -> bytes:
    """`content` as JSON. orjson refuses integers beyond 64 bits, which token sums can reach (each event's
    count is a BIGINT, their sums HUGEINTs): those few answers are written again with such integers
    spliced in as their digits."""
    try:
        return orjson.dumps(content)
    except orjson.JSONEncodeError:
        return orjson.dumps(_wide_ints_spliced(content))


def _wide_ints_spliced(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _wide_ints_spliced(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_wide_ints_spliced(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT_RANGE:
        return orjson.Fragment(str(value))
    return value


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # Interaction rows carry their stored JSON text as orjson.Fragment, spliced in without re-parsing.
        return dumps(content)


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return OrjsonResponse(content, status_code=status_code, headers=headers)


def detail(message: str, status_code: int, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"detail": message}, status_code, headers)
