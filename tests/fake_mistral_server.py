"""A scripted Mistral chat-completions server on 127.0.0.1, for driving the real `mistralai` client.

Each POST /v1/chat/completions consumes the next scripted reply (a completion, an HTTP error, an error
that echoes the request's Authorization header, or no answer at all) and the request is recorded (path,
headers, JSON body). An exhausted script answers 400 so a test fails loudly.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import BaseModel


class ScriptedReply(BaseModel):
    status: int
    body: dict[str, Any]
    echo_authorization: bool = False
    hang: bool = False


class RecordedRequest(BaseModel):
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def completion(
    content: str | None = None,
    tool_calls: list[tuple[str, dict[str, Any]]] | None = None,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
) -> ScriptedReply:
    """A chat completion: final `content`, or `tool_calls` as (function name, arguments) pairs."""
    message: dict[str, Any] = {"role": "assistant", "content": content or ""}
    if tool_calls:
        message["tool_calls"] = [
            {"id": f"call{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(tool_calls)
        ]
    return ScriptedReply(
        status=200,
        body={
            "id": f"cmpl-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "mistral-large-latest",
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
            ],
        },
    )


def http_error(status: int, message: str = "scripted error") -> ScriptedReply:
    return ScriptedReply(status=status, body={"object": "error", "message": message, "code": str(status)})


def echoing_auth_error(status: int = 401) -> ScriptedReply:
    """An error whose message repeats the Authorization header it was sent (some proxies do)."""
    return ScriptedReply(
        status=status, body={"object": "error", "code": str(status)}, echo_authorization=True
    )


def never_answers() -> ScriptedReply:
    """Accept the request and never send a byte back (until the server is closed)."""
    return ScriptedReply(status=0, body={}, hang=True)


class FakeMistralServer:
    """`with FakeMistralServer([...]) as server:` then `Mistral(api_key="test", server_url=server.url)`."""

    def __init__(self, script: list[ScriptedReply]) -> None:
        self.script = list(script)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeMistralServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next_reply(self, request: RecordedRequest) -> ScriptedReply:
        with self._lock:
            self.requests.append(request)
            if not self.script:
                return http_error(400, "fake Mistral server: script exhausted")
            return self.script.pop(0)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                request = RecordedRequest(path=self.path, headers=dict(self.headers.items()), body=body)
                reply = (
                    server._next_reply(request)
                    if self.path == "/v1/chat/completions"
                    else http_error(404, f"no route {self.path}")
                )
                if reply.hang:
                    server._closing.wait()
                    return
                body = dict(reply.body)
                if reply.echo_authorization:
                    body["message"] = (
                        f"invalid credentials: Authorization: {self.headers.get('Authorization')}"
                    )
                payload = json.dumps(body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        return Handler
