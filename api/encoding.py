"""Response rendering: every body is serialised once, by orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # Interaction rows carry their stored JSON text as orjson.Fragment, spliced in without re-parsing.
        return orjson.dumps(content)


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return OrjsonResponse(content, status_code=status_code, headers=headers)


def detail(message: str, status_code: int, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"detail": message}, status_code, headers)
