"""The `Authorization: Token <token>` check shared by the API and the HTTP ingest endpoint."""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from auth.tokens import TokenStore, TokensUnavailable


def check(request: Request, store: TokenStore, allowed_roles: Collection[str]) -> Response | None:
    """None when the request may proceed (`request.state.role` and `.token_id` are then set); else the
    401, 403 or 503 (the tokens file is broken: logged by the store) response to send."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "token" or not token.strip():
        return _unauthorized("Authentication credentials were not provided.")
    try:
        identity = store.identify(token.strip())
    except TokensUnavailable:
        return JSONResponse(
            {"detail": "Authentication is unavailable: the server cannot read its tokens file."},
            status_code=503,
            headers={"Retry-After": "30"},
        )
    if identity is None:
        return _unauthorized("Invalid token.")
    if identity.role not in allowed_roles:
        return JSONResponse({"detail": "You do not have permission to perform this action."}, status_code=403)
    request.state.role = identity.role
    request.state.token_id = identity.id
    return None


def _unauthorized(detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Token"})
