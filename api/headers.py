"""Headers every response of the API gets: the data is personal (chat transcripts, pseudonymous users).

`X-Content-Type-Options: nosniff` on every response, so that a browser never guesses a JSON body to be
something it would execute; `Cache-Control: no-store` on everything under /api/, so that no browser,
proxy or CDN keeps a copy of an answer on disk. The probes and /metrics carry no personal data and
keep their default caching.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")
PRIVATE_PREFIX = "/api/"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [NOSNIFF]
        if str(scope.get("path", "")).startswith(PRIVATE_PREFIX):
            extra.append(NO_STORE)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in extra if pair[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
