"""The MCP server's plumbing: the capability tools of `tools.mcp` (one module per capability, registered by
`capability_server`), stdio or `--http 127.0.0.1:PORT`, and the command's arguments (`main`).

The full server adds the loop's stage and steering tools (`loop.server.assemble`); `python -m tools.server`
hands its builder to `main`. Add a capability's module to `capability_server` to add its tools.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

INSTRUCTIONS = (
    "Evidence about the kotone-loop student model: W&B runs (training history, eval summaries with "
    "eval/ keys), Weave evaluation traces (one Evaluation.predict_and_score call per validation row), "
    "the champion, and the cycle history; predict_tool answers a request with the champion. "
    "Start with get_eval_snapshot_tool."
)


def capability_server() -> MCPServer:
    """A server with every capability tool of `tools.mcp` (no stage or steering tool)."""
    from mcp.server.mcpserver import MCPServer

    from tools.core.cli import project_version
    from tools.mcp import loop_tools, predict_tools, wandb_tools, weave_tools

    server = MCPServer(
        "kotone-loop", version=project_version(), instructions=INSTRUCTIONS, log_level="WARNING"
    )
    for capability in (wandb_tools, weave_tools, loop_tools, predict_tools):
        capability.register(server)
    return server


def die_with_parent() -> None:
    """Linux: end this server when the process that spawned it dies (a kill -9 of `loop.run` must not
    leave a training job running that a later `--resume` would race with)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        raise argparse.ArgumentTypeError("--http takes 127.0.0.1:PORT (the server only listens on loopback)")
    return host, int(port)


def main(argv: list[str] | None = None, build_server: Callable[[], MCPServer] = capability_server) -> None:
    from tools.core.cli import command_parser
    from tools.core.env_vars import describe

    parser = command_parser(
        "tools.server",
        "kotone-serve",
        description=__doc__,
        epilog="Environment (the loop's own settings come from artifacts/loop/config.json):\n"
        + describe(
            [
                "KOTONE_ARTIFACTS",
                "KOTONE_CACHE",
                "KOTONE_TRACKING",
                "KOTONE_WANDB_ENTITY",
                "KOTONE_WANDB_PROJECT",
                "KOTONE_PROGRESS_EVERY",
                "KOTONE_HEARTBEAT_S",
                "KOTONE_MCP_HTTP_TOKEN",
            ],
            extra={
                "MISTRAL_API_KEY": "the augment tool's teacher uses Mistral when set (teacher auto)",
                "WANDB_API_KEY": "read and log to the W&B cloud when KOTONE_TRACKING=online",
            },
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--http",
        type=_host_port,
        metavar="127.0.0.1:PORT",
        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio; every request needs "
        "Authorization: Bearer $KOTONE_MCP_HTTP_TOKEN (generated and printed when unset)",
    )
    args = parser.parse_args(argv)
    server = build_server()
    if args.http:
        from tools.mcp.http_auth import serve_http

        host, port = args.http
        serve_http(server.streamable_http_app(host=host), host, port)
    else:
        die_with_parent()
        server.run()
