"""The `mcpServers` snippets in the README work as pasted: the stdio one starts the server, which lists its tools."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "/path/to/kotone-loop"


def readme_servers() -> dict[str, dict[str, Any]]:
    """Every server of every ```json block of the README that holds `mcpServers`."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    servers: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"```json\n(.*?)```", readme, flags=re.DOTALL):
        config = json.loads(block)
        servers.update(config.get("mcpServers", {}))
    return servers


def test_the_readme_offers_a_stdio_and_a_loopback_http_server():
    servers = readme_servers()
    assert any("command" in s for s in servers.values())
    (http,) = [s for s in servers.values() if "url" in s]
    port = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/mcp", http["url"]).group(1)
    assert f"kotone-serve --http 127.0.0.1:{port}" in (PROJECT_ROOT / "README.md").read_text()
    assert http["headers"]["Authorization"].startswith("Bearer ")


def test_the_stdio_snippet_starts_the_server_and_lists_its_tools(tmp_path):
    (server,) = [s for s in readme_servers().values() if "command" in s]
    command = server["command"].replace(PLACEHOLDER, str(PROJECT_ROOT))
    if not Path(command).is_file():
        pytest.fail(f"{command} is missing: the package's console scripts are not installed (make setup)")
    env = {k: v.replace(PLACEHOLDER, str(PROJECT_ROOT)) for k, v in server.get("env", {}).items()}
    env.update(KOTONE_ARTIFACTS=str(tmp_path), PATH="/usr/bin:/bin")  # an empty store, not the user's
    params = StdioServerParameters(command=command, args=server.get("args", []), env=env)

    async def go() -> Any:
        async with Client(params) as client:
            return client.server_info, (await client.list_tools()).tools

    info, tools = anyio.run(go)
    assert info.name == "kotone-loop"
    names = {tool.name for tool in tools}
    assert {"query_wandb_tool", "query_weave_traces_tool", "get_eval_snapshot_tool", "predict_tool"} <= names
