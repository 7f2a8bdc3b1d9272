"""The `--http` bearer guard, called in process as an ASGI app: what a client without the token sees."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from tools.mcp.http_auth import BearerTokenGuard

TOKEN = "s3cret-token-for-tests"


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"reached the app"})


def request(headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers}
    anyio.run(BearerTokenGuard(_app, TOKEN), scope, receive, send)
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(scheme):
    status, _, body = request([(b"authorization", f"{scheme} {TOKEN}".encode())])
    assert (status, body) == (200, b"reached the app")


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer wrong")],
        [(b"authorization", f"Basic {TOKEN}".encode())],
        [(b"authorization", TOKEN.encode())],
        [(b"authorization", b"Bearer")],
    ],
    ids=["no header", "wrong token", "other scheme", "no scheme", "no token"],
)
def test_a_request_without_the_token_gets_a_plain_401_that_says_what_to_send(headers):
    status, response_headers, body = request(headers)
    assert status == 401
    # No challenge: MCP clients take `WWW-Authenticate` as a cue to start OAuth discovery and then report
    # an OAuth failure instead of the missing token.
    assert b"www-authenticate" not in response_headers
    assert response_headers[b"content-type"] == b"application/json"
    error = json.loads(body)
    assert error["error"] == "unauthorized"
    assert "Authorization: Bearer <token>" in error["message"] and "KOTONE_MCP_HTTP_TOKEN" in error["message"]
    assert TOKEN not in body.decode()
