"""MCP client configuration, in one place, and a session that records every tools/call.

Endpoints:
- `McpEndpoint.local_stdio()` (default): our server, `python -m tools.server`, spawned over stdio with
  an explicit child environment (see `child_environment`);
- `McpEndpoint.wandb_hosted()`: the hosted W&B MCP server over streamable HTTP, authenticated with
  `Authorization: Bearer $WANDB_API_KEY` (read-only tools, when online);
- `McpEndpoint.local_http(port)`: our server started with `--http 127.0.0.1:PORT`.

`endpoint_from_env()` picks one from `KOTONE_MCP` (`stdio` | `wandb` | an http URL on 127.0.0.1).
`open_session(target)` also accepts an in-process `MCPServer` (tests). The same agent code runs on
every endpoint: it only sees `ToolSession.list_tools()` and `ToolSession.call_tool()`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, model_validator

from agent.transcript import ToolCallRecord, Transcript, utc_now
from tools.core.paths import PROJECT_ROOT, artifacts_dir

if TYPE_CHECKING:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

WANDB_HOSTED_MCP_URL = "https://mcp.withwandb.com/mcp"

# Environment the stdio child gets on top of what the SDK always passes (HOME, LOGNAME, PATH, SHELL,
# TERM, USER). Everything else is dropped: the server must not see secrets it has no use for.
_CHILD_ENV_NAMES = ("PATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TZ", "LANG", "TQDM_DISABLE")
_CHILD_ENV_PREFIXES = ("WANDB_", "WEAVE_", "KOTONE_", "RAY_")
_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
_OFFLINE_DEFAULTS = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_WEAVE": "true",
    "WANDB_ERROR_REPORTING": "false",
    "WEAVE_PRINT_CALL_LINK": "false",
}


def child_environment(source: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for our stdio server: paths, settings, and the secrets its tools use, no others.

    `MISTRAL_API_KEY` is passed when set (the augment tool's teacher uses Mistral with it), and so is the
    OpenAI-compatible teacher's key (`OPENAI_API_KEY`, or the variable `KOTONE_OPENAI_AUTH_ENV` names);
    `WANDB_API_KEY` only when tracking is online (`KOTONE_TRACKING`, else `WANDB_MODE`, is `online`);
    any other variable whose name looks like a secret (KEY/TOKEN/SECRET/PASSWORD) never is.
    """
    source = dict(os.environ if source is None else source)
    env = {name: source[name] for name in _CHILD_ENV_NAMES if name in source}
    for name, value in source.items():
        if name.startswith(_CHILD_ENV_PREFIXES) and not any(m in name for m in _SECRET_MARKERS):
            env[name] = value
    for name, value in _OFFLINE_DEFAULTS.items():
        env.setdefault(name, value)
    tracking = source.get("KOTONE_TRACKING") or source.get("WANDB_MODE") or "offline"
    if tracking.lower() == "online" and "WANDB_API_KEY" in source:
        env["WANDB_API_KEY"] = source["WANDB_API_KEY"]
    if source.get("MISTRAL_API_KEY"):
        env["MISTRAL_API_KEY"] = source["MISTRAL_API_KEY"]
    openai_key = source.get("KOTONE_OPENAI_AUTH_ENV") or "OPENAI_API_KEY"  # the teacher 'openai' uses it
    if source.get(openai_key):
        env[openai_key] = source[openai_key]
    python_path = [str(PROJECT_ROOT), *filter(None, source.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(python_path))
    env["KOTONE_ARTIFACTS"] = source.get("KOTONE_ARTIFACTS", str(artifacts_dir()))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class McpEndpoint(BaseModel):
    """Where the agent's MCP tools live. Serialisable: secrets are named by env var, never stored."""

    transport: Literal["stdio", "http"] = "stdio"
    label: str = "kotone-stdio"
    command: str = Field(default_factory=lambda: sys.executable)
    args: list[str] = Field(default_factory=lambda: ["-m", "tools.server"])
    cwd: str = str(PROJECT_ROOT)
    env: dict[str, str] = Field(
        default_factory=child_environment,
        repr=False,
        exclude=True,
        description="the whole environment handed to the stdio child (see child_environment)",
    )
    url: str | None = None
    bearer_token_env: str | None = Field(
        None, description="name of the env var holding the bearer token for an http endpoint"
    )
    read_timeout_s: float = 120.0

    @model_validator(mode="after")
    def _check_url(self) -> McpEndpoint:
        if self.transport == "http":
            if not self.url:
                raise ValueError("an http MCP endpoint needs a url")
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https"):
                raise ValueError(f"MCP url must be http(s), got {self.url!r}")
            if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
                raise ValueError(f"plain-http MCP endpoints must be on 127.0.0.1, got {self.url!r}")
        return self

    @classmethod
    def local_stdio(
        cls, extra_args: list[str] | None = None, env: dict[str, str] | None = None
    ) -> McpEndpoint:
        return cls(args=["-m", "tools.server", *(extra_args or [])], env=env or child_environment())

    @classmethod
    def wandb_hosted(cls, url: str = WANDB_HOSTED_MCP_URL) -> McpEndpoint:
        return cls(transport="http", label="wandb-hosted", url=url, bearer_token_env="WANDB_API_KEY", env={})

    @classmethod
    def local_http(cls, port: int, host: str = "127.0.0.1") -> McpEndpoint:
        return cls(
            transport="http",
            label=f"kotone-http-{port}",
            url=f"http://{host}:{port}/mcp",
            bearer_token_env="KOTONE_MCP_HTTP_TOKEN",
            env={},
        )

    def http_headers(self) -> dict[str, str]:
        if not self.bearer_token_env:
            return {}
        token = os.environ.get(self.bearer_token_env)
        if not token:
            raise McpConfigError(
                f"{self.label}: ${self.bearer_token_env} is not set (needed as the bearer token)"
            )
        return {"Authorization": f"Bearer {token}"}


class McpConfigError(RuntimeError):
    """The MCP endpoint cannot be used as configured."""


def endpoint_from_env() -> McpEndpoint:
    """`KOTONE_MCP`: unset or `stdio` → our stdio server; `wandb` → hosted W&B MCP; a URL → HTTP."""
    choice = os.environ.get("KOTONE_MCP", "stdio").strip()
    if choice == "stdio":
        return McpEndpoint.local_stdio()
    if choice == "wandb":
        return McpEndpoint.wandb_hosted()
    if choice.startswith(("http://", "https://")):
        return McpEndpoint(
            transport="http",
            label="kotone-http",
            url=choice,
            bearer_token_env="KOTONE_MCP_HTTP_TOKEN",
            env={},
        )
    raise McpConfigError(f"KOTONE_MCP must be 'stdio', 'wandb' or an http(s) URL, got {choice!r}")


class ToolSpec(BaseModel):
    """One listed tool: what the planner shows a model and uses to pick arguments."""

    name: str
    description: str = ""
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    read_only_hint: bool | None = None

    def accepts(self, argument: str) -> bool:
        return argument in self.input_schema.get("properties", {})


class ToolCallFailed(RuntimeError):
    def __init__(self, record: ToolCallRecord) -> None:
        super().__init__(f"MCP tool {record.name} failed: {record.error}")
        self.record = record


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _is_wrapped_output(schema: dict[str, Any] | None) -> bool:
    """MCPServer wraps non-object returns (None, list, str) as {"result": ...}, titled `<name>Output`."""
    if not schema:
        return False
    return set(schema.get("properties", {})) == {"result"} and str(schema.get("title", "")).endswith("Output")


LOCK_TOKEN_ARGUMENT = "lock_token"


class ToolSession:
    """An open MCP session. Every call is recorded (arguments, result, error, latency) in `transcript`."""

    def __init__(self, client: Client, endpoint_label: str, transcript: Transcript) -> None:
        self._client = client
        self.endpoint_label = endpoint_label
        self.transcript = transcript
        self._tools: dict[str, ToolSpec] | None = None

    async def list_tools(self) -> list[ToolSpec]:
        if self._tools is None:
            specs: dict[str, ToolSpec] = {}
            cursor: str | None = None
            while True:
                page = await self._client.list_tools(cursor=cursor)
                for tool in page.tools:
                    annotations = tool.annotations
                    specs[tool.name] = ToolSpec(
                        name=tool.name,
                        description=tool.description or "",
                        input_schema=dict(tool.input_schema),
                        output_schema=dict(tool.output_schema) if tool.output_schema else None,
                        read_only_hint=annotations.read_only_hint if annotations else None,
                    )
                cursor = page.next_cursor
                if cursor is None:
                    break
            self._tools = specs
        if self.endpoint_label not in self.transcript.listed_tools:
            # Also when the loop swaps in a fresh transcript after the listing was cached.
            self.transcript.record_tool_listing(self.endpoint_label, list(self._tools))
        return list(self._tools.values())

    async def has_tool(self, name: str) -> bool:
        return any(spec.name == name for spec in await self.list_tools())

    async def tool_spec(self, name: str) -> ToolSpec | None:
        return next((spec for spec in await self.list_tools() if spec.name == name), None)

    async def call_tool(self, name: str, arguments: dict[str, Any] | None = None) -> ToolCallRecord:
        """Call a tool; the record is appended to the transcript whatever happens."""
        from mcp import MCPError

        arguments = dict(arguments or {})
        spec = await self.tool_spec(name)
        started_at = utc_now()
        start = time.perf_counter()
        try:
            result = await self._client.call_tool(name, arguments)
        except MCPError as error:
            return self._record(name, arguments, None, True, str(error), start, started_at)
        text = "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")
        if result.is_error:
            return self._record(name, arguments, _maybe_json(text), True, text, start, started_at)
        if result.structured_content is not None:
            value: Any = result.structured_content
            if _is_wrapped_output(spec.output_schema if spec else None):
                value = value["result"]
            if isinstance(value, str):
                value = _maybe_json(value)
        else:
            value = _maybe_json(text)
        # The W&B MCP server reports failures as a JSON {"error": ...} in a successful result.
        if isinstance(value, dict) and set(value) == {"error"}:
            return self._record(name, arguments, value, True, str(value["error"]), start, started_at)
        return self._record(name, arguments, value, False, None, start, started_at)

    async def call_json(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """Call a tool and return its result; a failed call raises `ToolCallFailed`."""
        record = await self.call_tool(name, arguments)
        if record.is_error:
            raise ToolCallFailed(record)
        return record.result

    def _record(
        self,
        name: str,
        arguments: dict[str, Any],
        result: Any,
        is_error: bool,
        error: str | None,
        start: float,
        started_at: str,
    ) -> ToolCallRecord:
        record = ToolCallRecord(
            name=name,
            # The lock token is a capability of this run: it is sent, never recorded.
            arguments={k: ("[lock token]" if k == LOCK_TOKEN_ARGUMENT else v) for k, v in arguments.items()},
            result=result,
            is_error=is_error,
            error=error,
            latency_ms=round((time.perf_counter() - start) * 1000, 3),
            started_at=started_at,
            endpoint=self.endpoint_label,
        )
        self.transcript.record_tool_call(record)
        return record


@asynccontextmanager
async def open_session(
    target: McpEndpoint | MCPServer | None = None, transcript: Transcript | None = None
) -> AsyncIterator[ToolSession]:
    """Open an MCP session on an endpoint (default: `endpoint_from_env()`) or an in-process server."""
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's own timeouts for MCP over HTTP

    target = endpoint_from_env() if target is None else target
    transcript = transcript or Transcript()
    async with AsyncExitStack() as stack:
        if not isinstance(target, McpEndpoint):
            client = Client(target)
            label = f"in-process:{getattr(target, 'name', type(target).__name__)}"
        elif target.transport == "stdio":
            params = StdioServerParameters(
                command=target.command, args=target.args, env=target.env, cwd=target.cwd
            )
            client = Client(params, read_timeout_seconds=target.read_timeout_s)
            label = target.label
        else:
            assert target.url is not None
            http_client = await stack.enter_async_context(
                create_mcp_http_client(headers=target.http_headers())
            )
            transport = streamable_http_client(target.url, http_client=http_client)
            client = Client(transport, read_timeout_seconds=target.read_timeout_s)
            label = target.label
        await stack.enter_async_context(client)
        yield ToolSession(client, label, transcript)
