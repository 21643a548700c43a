"""The `Authorization: Token <token>` check shared by the API and the HTTP ingest endpoint."""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from auth.tokens import TokenStore


def check(request: Request, store: TokenStore, allowed_roles: Collection[str]) -> Response | None:
    """None when the request may proceed; else the 401 or 403 response to send."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "token" or not token.strip():
        return _unauthorized("Authentication credentials were not provided.")
    role = store.role_for(token.strip())
    if role is None:
        return _unauthorized("Invalid token.")
    if role not in allowed_roles:
        return JSONResponse({"detail": "You do not have permission to perform this action."}, status_code=403)
    request.state.role = role
    return None


def _unauthorized(detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Token"})
