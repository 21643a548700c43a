"""A minimal client for the admin endpoints of a running `serve` (standard library only: the command
line must work where only the runtime dependencies are installed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 60.0


class AdminError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message if status is None else f"HTTP {status}: {message}")
        self.status = status


class AdminClient:
    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON body); raises AdminError when the server cannot be reached or says 4xx/5xx,
        except 409 (a conflict the caller handles)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = f"{self.base_url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
        request = urllib.request.Request(url, method=method, data=data)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        request.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = body.decode(errors="replace")
            if exc.code == 409:
                return exc.code, decoded
            message = decoded.get("detail", decoded) if isinstance(decoded, dict) else decoded
            raise AdminError(exc.code, str(message)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise AdminError(None, f"cannot reach {self.base_url}: {exc}") from None
