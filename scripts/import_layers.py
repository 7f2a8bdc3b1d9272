"""Draw the floors of the code from its real imports (lazy ones included): `python scripts/import_layers.py`.

A unit is a package folder (`tools/core/`, `agent/`, `loop/stages/`, ...; `loop/` alone means its own
modules, the loop's rules) or the commands (the modules `pyproject.toml` names as scripts and those run with
`python -m`). A unit's floor is one above the highest unit it imports; the drawing lists the floors top
down, each unit with the units it imports. README's layout section holds this output (a test keeps it so).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("agent", "loop", "tools")
COMMANDS_UNIT = "commands"


def command_modules() -> set[str]:
    """Modules run as commands: pyproject's scripts, and every `python -m` module at the top of a package."""
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {target.split(":")[0] for target in scripts.values()}
    for top in TOP_LEVEL:
        for path in (PROJECT_ROOT / top).glob("*.py"):
            if '__name__ == "__main__"' in path.read_text():
                commands.add(f"{top}.{path.stem}")
    return commands


def packages() -> list[str]:
    """Every package of the project, dotted (`tools.core`, `loop.stages`, ...)."""
    return sorted(
        ".".join(init.parent.relative_to(PROJECT_ROOT).parts)
        for top in TOP_LEVEL
        for init in (PROJECT_ROOT / top).rglob("__init__.py")
    )


def unit_of(module: str, commands: set[str], known: list[str]) -> str:
    """The unit a dotted module belongs to: the commands, or the deepest package that holds it."""
    if module in commands:
        return COMMANDS_UNIT
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return parts[0]


def imported_modules(path: Path) -> tuple[set[str], list[str]]:
    """Project modules `path` imports (at any depth, lazy ones included), and any import it hides
    (`importlib.import_module` on a name the check cannot read; a package's own `{__name__}.x` is read)."""
    found: set[str] = set()
    hidden: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            base = node.module
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
        ):
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                found.add(target.value)
            elif not (
                isinstance(target, ast.JoinedStr)
                and target.values
                and isinstance(target.values[0], ast.FormattedValue)
                and getattr(target.values[0].value, "id", None) == "__name__"
            ):
                hidden.append(f"line {node.lineno}")
    return {m for m in found if m.split(".")[0] in TOP_LEVEL}, hidden


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_graph() -> dict[str, set[str]]:
    """unit -> the other units its modules import."""
    commands, known = command_modules(), packages()
    graph: dict[str, set[str]] = {}
    for top in TOP_LEVEL:
        for path in sorted((PROJECT_ROOT / top).rglob("*.py")):
            unit = unit_of(module_name(path), commands, known)
            imports, _ = imported_modules(path)
            graph.setdefault(unit, set()).update(unit_of(m, commands, known) for m in imports)
    for unit, imports in graph.items():
        imports.discard(unit)
        # `from tools.core import x` names the package of `x` too: `tools` itself holds no code
        imports.discard("tools")
    return graph


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each unit's floor: 0 for a unit that imports no other, else one above the highest it imports."""
    floor: dict[str, int] = {}

    def place(unit: str, path: tuple[str, ...]) -> int:
        if unit in path:
            raise ValueError(f"import cycle: {' -> '.join((*path, unit))}")
        if unit not in floor:
            below = [place(other, (*path, unit)) for other in graph.get(unit, ())]
            floor[unit] = 1 + max(below) if below else 0
        return floor[unit]

    for unit in graph:
        place(unit, ())
    return floor


def label(unit: str) -> str:
    if unit == COMMANDS_UNIT:
        return "commands"
    return unit.replace(".", "/") + "/"


def drawing() -> str:
    graph = unit_graph()
    floor = floors(graph)
    graph.pop("tools", None)  # tools/__init__.py: a docstring
    floor.pop("tools", None)
    lines = []
    for level in sorted(set(floor.values()), reverse=True):
        for unit in sorted(u for u in floor if floor[u] == level):
            imports = " ".join(sorted(label(u) for u in graph[unit] if u != "tools"))
            lines.append(f"{level:>2}  {label(unit):<18} imports {imports or 'nothing of the project'}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(drawing())
    sys.exit(0)
