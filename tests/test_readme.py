"""README's tables say what the code does: every loop setting with its true default, every module of the
layout named where it lives."""

from __future__ import annotations

import json
import re
from pathlib import Path

from loop.config import LoopConfig, config_env_names

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _settings_table() -> dict[str, str]:
    rows = re.findall(r"^\| `(KOTONE_[A-Z0-9_]+)` \| `([^`]*)` \|", README, flags=re.MULTILINE)
    return dict(rows)


def _default(field: str) -> object:
    config = LoopConfig().model_dump(mode="json")
    for part in field.split("."):
        config = config[part]
    return config


def test_the_settings_table_lists_every_setting_with_its_default():
    table = _settings_table()
    names = config_env_names()
    assert set(table) == set(names)
    for variable, field in names.items():
        default = _default(field)
        shown = table[variable] if isinstance(default, str) else json.loads(table[variable])
        assert shown == default, variable


def test_the_layout_table_has_a_row_for_every_package_and_names_every_module_of_agent_and_loop():
    root = Path(__file__).resolve().parent.parent
    layout = README[README.index("## Layout") :]
    rows = dict(re.findall(r"^\| `([a-z_/]+/)` \| (.*) \|$", layout, flags=re.MULTILINE))
    packages = sorted(
        init.parent.relative_to(root).as_posix() + "/"
        for top in ("agent", "loop", "tools")
        for init in (root / top).rglob("__init__.py")
    )
    assert set(packages) - {"tools/"} <= set(rows), set(packages) - set(rows)
    for package in packages:
        if package.startswith(("agent/", "loop/")):
            for module in sorted((root / package).glob("*.py")):
                if module.name != "__init__.py":
                    assert f"`{module.name}`" in rows[package], (
                        f"{package}{module.name} is missing from its row"
                    )


def test_every_tool_the_docs_name_is_a_tool_the_server_lists():
    import asyncio

    from mcp import Client

    import loop.stages
    from loop.server.assemble import build_server

    async def listed() -> set[str]:
        async with Client(build_server()) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    tools = asyncio.run(listed())
    named = set(re.findall(r"`([a-z_]+_tool)`", README + (loop.stages.__doc__ or "")))
    assert named and named <= tools, named - tools


def _stage_table() -> list[tuple[str, str, str]]:
    """README's stage table: (stage, tool or '—', result model) per row, in order."""
    table = README[README.index("| stage | MCP tool → result |") :].split("\n\n")[0]
    return re.findall(r"^\| (\w+) \| (`\w+`|— \(read-only tools\)) → `(\w+)` \|", table, flags=re.MULTILINE)


def test_the_stage_table_is_the_codes_stage_table_in_order():
    from loop.stages.table import BOOTSTRAP, CYCLE_STAGES

    expected = [
        (s.name, f"`{s.tool}`" if s.tool else "— (read-only tools)", s.result.__name__) for s in CYCLE_STAGES
    ]
    assert _stage_table() == expected
    assert f"cycle 0 is `{BOOTSTRAP.tool}` →\n`{BOOTSTRAP.result.__name__}`" in README
