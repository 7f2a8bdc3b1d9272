"""The folder layout is the architecture: every package and the commands import only the floors below them
(lazy imports counted, none hidden behind `importlib`), and README draws the floors the real imports make."""

from __future__ import annotations

import ast
import re

from scripts.import_layers import (
    COMMANDS_UNIT,
    PROJECT_ROOT,
    TOP_LEVEL,
    command_modules,
    drawing,
    floors,
    imported_modules,
    module_name,
    packages,
    unit_of,
)

CAPABILITIES = {
    "tools.core",
    "tools.data",
    "tools.evaluation",
    "tools.student",
    "tools.tracking",
    "tools.serving",
    "tools.mcp",
}
# What each unit may import besides itself: the floors below it, as the folders show them.
ALLOWED: dict[str, set[str]] = {
    "tools": set(),  # tools/__init__.py: the package's docstring
    "tools.core": set(),
    "tools.data": {"tools.core"},
    "tools.evaluation": {"tools.core", "tools.data"},
    "tools.student": {"tools.core", "tools.data", "tools.evaluation"},
    "tools.tracking": {"tools.core", "tools.evaluation"},
    "tools.serving": {"tools.core", "tools.data", "tools.student"},
    "tools.mcp": CAPABILITIES - {"tools.mcp"},
    "agent": CAPABILITIES,
    "loop": CAPABILITIES | {"agent"},  # the loop's rules: config, gate, state, registry, history, ...
    "loop.stages": CAPABILITIES | {"agent", "loop"},
    "loop.server": CAPABILITIES | {"agent", "loop", "loop.stages"},
    "loop.driver": CAPABILITIES | {"agent", "loop", "loop.stages", "loop.server"},
    COMMANDS_UNIT: CAPABILITIES | {"agent", "loop", "loop.stages", "loop.server", "loop.driver"},
}


def _python_files() -> list:
    return sorted(p for top in TOP_LEVEL for p in (PROJECT_ROOT / top).rglob("*.py"))


def test_every_package_and_command_imports_only_the_floors_below_it():
    commands, known = command_modules(), packages()
    violations = []
    for path in _python_files():
        unit = unit_of(module_name(path), commands, known)
        imports, hidden = imported_modules(path)
        where = path.relative_to(PROJECT_ROOT)
        violations += [f"{where} hides an import ({line})" for line in hidden]
        for imported in sorted({unit_of(m, commands, known) for m in imports} - {unit, "tools"}):
            if imported not in ALLOWED[unit]:
                violations.append(f"{where} ({unit}) imports {imported}")
    assert violations == []


def test_every_package_has_its_place_in_the_layering():
    assert set(packages()) | {COMMANDS_UNIT} == set(ALLOWED)


def test_the_allowed_floors_form_no_cycle():
    assert floors({unit: set(allowed) for unit, allowed in ALLOWED.items()})


def test_the_commands_are_the_scripts_and_the_python_dash_m_modules():
    assert command_modules() == {
        "loop.publish",
        "loop.report",
        "loop.run",
        "loop.steer",
        "tools.evaluate",
        "tools.generator",
        "tools.predict",
        "tools.server",
    }


def test_the_layering_check_sees_lazy_and_hidden_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import importlib\n"
        "def f(name):\n"
        "    from tools.mcp.server import capability_server\n"
        "    import agent.planner\n"
        "    importlib.import_module('loop.stages.table')\n"
        "    importlib.import_module(name)\n"
        "    importlib.import_module(f'{__name__}.own')\n"
    )
    imports, hidden = imported_modules(module)
    known = packages()
    assert {unit_of(m, set(), known) for m in imports} == {"tools.mcp", "agent", "loop.stages"}
    assert hidden == ["line 6"]


def test_readme_draws_the_floors_of_the_real_imports():
    """`python scripts/import_layers.py` prints it; paste its output into README's layout section."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Layout.*?```text\n(.*?)```", readme, flags=re.DOTALL)
    assert block is not None, "README's layout section has no ```text block with the floors"
    assert block.group(1).rstrip("\n") == drawing()


def test_every_package_says_what_lives_there():
    for package in packages():
        init = PROJECT_ROOT.joinpath(*package.split(".")) / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), package
