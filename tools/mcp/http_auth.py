"""The `--http` transport's guard: every request must carry `Authorization: Bearer <token>`.

The token comes from `KOTONE_MCP_HTTP_TOKEN`, or is generated at start and printed once on stderr. Loopback
is not a boundary on a shared machine: any local process could otherwise call every tool.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from tools.core.redaction import register_secret

TOKEN_ENV = "KOTONE_MCP_HTTP_TOKEN"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def http_token() -> str:
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    token = secrets.token_urlsafe(24)
    register_secret(token)  # masked in every artifact and reply, like the keys
    print(
        f"kotone MCP server: bearer token {token} (set {TOKEN_ENV} to choose it)", file=sys.stderr, flush=True
    )
    return token


UNAUTHORIZED = {
    "error": "unauthorized",
    "message": f"this server needs the header 'Authorization: Bearer <token>' (the token is {TOKEN_ENV}, "
    "or the one the server printed at start)",
}


def _bearer_credentials(header: bytes) -> bytes | None:
    """The credentials of an `Authorization: Bearer ...` header (the scheme is case-insensitive, RFC 9110)."""
    scheme, _, credentials = header.strip().partition(b" ")
    return credentials.strip() if scheme.lower() == b"bearer" else None


class BearerTokenGuard:
    """ASGI middleware: HTTP requests without the bearer token get 401 and never reach the app.

    The 401 carries no `WWW-Authenticate` challenge: MCP clients (the Inspector, desktop apps) read that
    header as an invitation to start OAuth discovery, and then report an OAuth failure instead of the
    missing token. The JSON body says what to send.
    """

    def __init__(self, app: App, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = _bearer_credentials(dict(scope.get("headers") or []).get(b"authorization", b""))
            if given is None or not hmac.compare_digest(given, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": json.dumps(UNAUTHORIZED).encode()})
                return
        await self.app(scope, receive, send)


def serve_http(app: App, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(BearerTokenGuard(app, http_token()), host=host, port=port, log_level="warning")
