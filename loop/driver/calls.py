"""How the loop runs a stage: one MCP tools/call, logged; a tool error stops the cycle (resumable)."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger("kotone.loop")


class StageFailed(RuntimeError):
    """An action tool returned an error; the cycle stops here and can be resumed."""


async def act(session: Any, stage: str, tool: str, arguments: dict[str, Any]) -> Any:
    """Call `tool` for `stage`; its result, or `StageFailed` with the tool's error."""
    log.info("[%s] tools/call %s %s", stage, tool, json.dumps(arguments))
    record = await session.call_tool(tool, arguments)
    if record.is_error:
        cause = str(record.error).removeprefix(f"Error executing tool {record.name}: ")
        raise StageFailed(f"stage {stage} ({record.name}): {cause}")
    return record.result
