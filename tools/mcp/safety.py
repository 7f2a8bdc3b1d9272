"""What every MCP tool shares: expected failures become clear tool errors, secrets never leave."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ValidationError

SECRET_ENV_VARS = ("WANDB_API_KEY", "MISTRAL_API_KEY")
REDACTED = "[redacted]"

F = TypeVar("F", bound=Callable[..., Any])


def _secret_values() -> list[str]:
    return [v for v in (os.environ.get(name, "") for name in SECRET_ENV_VARS) if len(v) >= 4]


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """Replace every secret value inside strings, dicts, lists and pydantic models."""
    secrets = _secret_values() if secrets is None else secrets
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, BaseModel):
        dumped = redact(value.model_dump_json(), secrets)
        return type(value).model_validate(json.loads(dumped))
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, secrets) for v in value)
    return value


def guarded(fn: F) -> F:
    """Run a tool body: lookup / validation / value errors are reported by message; results redacted."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except ToolError as exc:
            raise ToolError(redact(str(exc))) from None
        except ValidationError as exc:
            errors = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolError(redact(f"invalid arguments: {errors}")) from None
        except (LookupError, ValueError, OSError) as exc:
            raise ToolError(redact(f"{type(exc).__name__}: {exc}")) from None
        return redact(result)

    return wrapper  # type: ignore[return-value]


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)


def add_tools(
    server: MCPServer, *tools: Callable[..., Any], annotations: ToolAnnotations = READ_ONLY
) -> None:
    """Register tools under their function names, each wrapped by `guarded` (read-only unless told)."""
    for tool in tools:
        server.add_tool(guarded(tool), name=tool.__name__, annotations=annotations)
