"""The folder layout is the architecture: lower layers of `tools` never import upper ones."""

from __future__ import annotations

import ast
from pathlib import Path

from tools.core.paths import PROJECT_ROOT

# What each subpackage of tools/ may import from the project besides itself (tools/__init__.py explains).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "data": {"tools.core"},
    "evaluation": {"tools.core", "tools.data"},
    "student": {"tools.core", "tools.data", "tools.evaluation"},
    "tracking": {"tools.core", "tools.evaluation"},
    "serving": {"tools.core", "tools.data", "tools.student"},
    "mcp": {
        "tools.core",
        "tools.data",
        "tools.evaluation",
        "tools.student",
        "tools.tracking",
        "tools.serving",
        "loop.stages",
        "loop.state",
    },
}


def project_imports(path: Path) -> set[str]:
    """`tools.<sub>` / `loop.<sub>` / `agent` prefixes a module imports (at any depth, lazy ones included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
        for name in names:
            parts = name.split(".")
            if parts[0] in ("tools", "loop"):
                found.add(".".join(parts[:2]))
            elif parts[0] == "agent":
                found.add("agent")
    return found


def test_every_tools_subpackage_imports_only_the_layers_below_it():
    violations = []
    for sub, allowed in ALLOWED.items():
        for path in sorted((PROJECT_ROOT / "tools" / sub).glob("*.py")):
            extra = project_imports(path) - allowed - {f"tools.{sub}"}
            violations += [f"{path.relative_to(PROJECT_ROOT)} imports {name}" for name in sorted(extra)]
    assert violations == []


def test_the_layering_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tools.mcp.server import build_server\n    import agent.planner\n")
    assert project_imports(module) == {"tools.mcp", "agent"}


def test_every_subpackage_says_what_lives_there():
    for package in [*(PROJECT_ROOT / "tools").iterdir(), PROJECT_ROOT / "loop" / "stages"]:
        if package.is_dir() and (package / "__init__.py").exists():
            assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), package
