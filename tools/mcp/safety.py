"""What every MCP tool shares: expected failures become clear tool errors, secrets never leave."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import ValidationError

from tools.core.paths import PROJECT_ROOT
from tools.core.redaction import redact

F = TypeVar("F", bound=Callable[..., Any])


def describe_failure(exc: BaseException) -> str:
    """`Type: message` and the cause chain; for an unanticipated error also where it was raised."""
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, LookupError | ValueError | OSError) and exc.__traceback__ is not None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        text += f" (raised at {_project_relative(frame.filename)}:{frame.lineno})"
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and str(cause) and str(cause) not in text:
        text += f"; caused by {type(cause).__name__}: {cause}"
    return text


def _project_relative(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else path.name


def guarded(fn: F) -> F:
    """Run a tool body; every failure reaches the caller as a ToolError with its cause; results redacted.

    (The SDK would answer an unexpected exception with "Error executing tool X" alone: the caller,
    and the history line it writes, would never learn why.)
    """

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
        except Exception as exc:
            raise ToolError(redact(describe_failure(exc))) from None
        return redact(result)

    return wrapper  # type: ignore[return-value]


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)


def add_tools(
    server: MCPServer, *tools: Callable[..., Any], annotations: ToolAnnotations = READ_ONLY
) -> None:
    """Register tools under their function names, each wrapped by `guarded` (read-only unless told)."""
    for tool in tools:
        server.add_tool(guarded(tool), name=tool.__name__, annotations=annotations)
