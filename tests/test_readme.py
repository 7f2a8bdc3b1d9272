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


def test_the_layout_table_names_every_module_of_the_top_level_packages():
    root = Path(__file__).resolve().parent.parent
    layout = README[README.index("## Layout") :]
    for package in ("agent", "loop"):
        for module in sorted((root / package).glob("*.py")):
            if module.name != "__init__.py":
                assert f"`{module.name}`" in layout, (
                    f"{package}/{module.name} is missing from README's layout"
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
