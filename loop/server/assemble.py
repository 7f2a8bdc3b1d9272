"""The full kotone-loop MCP server: the capability tools of `tools.mcp` plus the loop's stage and steering
tools. `python -m tools.server` (`kotone-serve`) serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer


def build_server() -> MCPServer:
    """Every tool: evidence (W&B, Weave, the loop's records, predictions), the stages, steering."""
    from loop.server import stage_tools, steering_tools
    from tools.mcp.server import capability_server

    server = capability_server()
    stage_tools.register(server)
    steering_tools.register(server)
    return server
