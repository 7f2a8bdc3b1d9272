"""Mutation testing of the modules that decide, each against the fast tests that specify it (mutmut).

    .venv/bin/pip install -e '.[mutation]'
    .venv/bin/python scripts/mutation.py                       # every module (about 10 minutes on 2 cores)
    .venv/bin/python scripts/mutation.py loop/gate.py          # one module
    .venv/bin/python scripts/mutation.py loop/stages/decide.py --only 'x_confirm*' 'x_log_decision*'
                                                               # only the mutants of those functions

Each module runs in its own copy of the project under artifacts/mutation/<module>/ (mutmut writes its mutants
next to the sources it copies; the working tree is never touched), with only that module mutated and only
its own test files selected. Prints the score per module and writes artifacts/mutation/summary.json and
artifacts/mutation/survivors.md (every mutant that was not killed, with its diff) for judging by hand.
A benchmark, run by hand: not part of CI.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "artifacts" / "mutation"
MUTMUT = Path(sys.executable).with_name("mutmut")
COPIED = ("agent", "loop", "tools", "tests", "data", "prompts", "pyproject.toml")

# module -> the fast test files that specify it
TARGETS: dict[str, list[str]] = {
    "loop/gate.py": ["tests/test_gate.py", "tests/test_gate_rules.py"],
    "tools/evaluation/stats.py": ["tests/test_stats.py", "tests/test_gate.py"],
    "tools/evaluation/metrics.py": ["tests/test_metrics.py", "tests/test_gate.py"],
    "tools/data/filters.py": ["tests/test_filters.py"],
    "tools/data/dataset.py": ["tests/test_dataset.py"],
    "tools/mcp/pathguard.py": ["tests/test_pathguard.py"],
    "agent/guardrails.py": ["tests/test_guardrails.py"],
    "loop/registry.py": ["tests/test_registry.py"],
    "loop/state.py": ["tests/test_cycle_state.py", "tests/faults/test_lock_race.py"],
    "loop/stages/decide.py": [
        "tests/test_decide_rules.py",
        "tests/test_log_stage.py",
    ],
    "loop/stages/candidate.py": [
        "tests/test_decide_rules.py",
        "tests/test_candidate_rules.py",
    ],
    "loop/stages/diagnose.py": ["tests/test_diagnose_stage.py", "tests/test_diagnose_rules.py"],
    "loop/stages/augment.py": ["tests/test_augment_stage.py", "tests/test_augment_rules.py"],
    "tools/student/recipes.py": [
        "tests/test_recipes.py",
        "tests/test_stack.py",
        "tests/test_recipe_rules.py",
    ],
}
# Timing tests fail on a loaded machine whatever the mutant: they would count as kills.
DESELECTED = [
    "tests/test_filters.py::test_a_thousand_candidates_against_the_shipped_splits_take_under_five_seconds"
]
# Detected too: a mutant whose tests hang past mutmut's timeout, or whose test process dies of a signal
# (mutmut's "suspicious", e.g. a mutated os.kill(pid, 0) that signals the test process itself).
KILLED = {"killed", "timeout", "suspicious", "caught by type check"}


def mutmut_config(module: str, tests: list[str]) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    deselect = [arg for test in DESELECTED if test.split("::")[0] in tests for arg in ("--deselect", test)]

    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["agent", "loop", "tools"]\n'
        f"only_mutate = {toml_list([module])}\n"
        'also_copy = ["data", "prompts"]\n'
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        f"pytest_add_cli_args = {toml_list(['-m', 'not slow', '-p', 'no:cacheprovider', *deselect])}\n"
    )


def prepare(module: str, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, folder / name)
    pyproject = folder / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + mutmut_config(module, TARGETS[module]))


def statuses(module: str, folder: Path, only: list[str]) -> dict[str, str]:
    """Each mutant's status; with `only`, just the mutants those patterns selected (the others never ran)."""
    from mutmut.stats import status_by_exit_code

    meta = json.loads((folder / "mutants" / f"{module}.meta").read_text())
    return {
        name: status_by_exit_code[code]
        for name, code in meta["exit_code_by_key"].items()
        if not only or _selected(name, module, only)
    }


def _selected(name: str, module: str, only: list[str]) -> bool:
    """`only` names functions by mutmut's mangled name (`x_gate*`, `x__row_errors*`) within the module."""
    prefix = module.removesuffix(".py").replace("/", ".") + "."
    return any(fnmatch.fnmatch(name, prefix + pattern) for pattern in only)


def show(name: str, folder: Path) -> str:
    shown = subprocess.run([str(MUTMUT), "show", name], cwd=folder, capture_output=True, text=True)
    return shown.stdout.strip() or shown.stderr.strip()


def run_module(module: str, max_children: int, only: list[str]) -> dict:
    folder = OUT / module.replace("/", "__").removesuffix(".py")
    prepare(module, folder)
    began = time.monotonic()
    prefix = module.removesuffix(".py").replace("/", ".") + "."
    with open(folder / "mutmut.log", "w") as log:
        done = subprocess.run(
            [str(MUTMUT), "run", "--max-children", str(max_children), *(prefix + p for p in only)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise SystemExit(f"{module}: mutmut failed (exit {done.returncode}), see {folder / 'mutmut.log'}")
    by_name = statuses(module, folder, only)
    counts: dict[str, int] = {}
    for status in by_name.values():
        counts[status] = counts.get(status, 0) + 1
    killed = sum(n for status, n in counts.items() if status in KILLED)
    survivors = {name: status for name, status in by_name.items() if status not in KILLED}
    return {
        "module": module,
        "tests": TARGETS[module],
        "only": only,
        "mutants": len(by_name),
        "killed": killed,
        "score": round(killed / len(by_name), 4) if by_name else None,
        "counts": counts,
        "wall_s": round(time.monotonic() - began, 1),
        "survivors": {
            name: {"status": status, "diff": show(name, folder)} for name, status in survivors.items()
        },
    }


def write_outputs(new: list[dict]) -> list[dict]:
    """Merge this run's modules into summary.json (a later run of one module replaces only its entry)."""
    OUT.mkdir(parents=True, exist_ok=True)
    summary = OUT / "summary.json"
    by_module = {r["module"]: r for r in json.loads(summary.read_text())} if summary.exists() else {}
    by_module.update({r["module"]: r for r in new})
    results = [by_module[m] for m in TARGETS if m in by_module]
    summary.write_text(json.dumps(results, indent=2))
    lines = ["# Surviving mutants", ""]
    for result in results:
        only = f", only {' '.join(result['only'])}" if result.get("only") else ""
        lines.append(f"## {result['module']} ({result['killed']}/{result['mutants']} killed{only})")
        for name, survivor in result["survivors"].items():
            lines += ["", f"### {name}: {survivor['status']}", "", "```diff", survivor["diff"], "```"]
        lines.append("")
    (OUT / "survivors.md").write_text("\n".join(lines))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(TARGETS)})"
    )
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="only the mutants of these functions (mutmut names: x_NAME for a function, xǁCLASSǁNAME for a "
        "method; wildcards allowed)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(TARGETS))
    if unknown:
        parser.error(f"not a module this script mutates: {', '.join(unknown)}")
    if not MUTMUT.exists():
        parser.error(f"{MUTMUT} not found: pip install -e '.[mutation]'")
    results = []
    for module in args.modules or list(TARGETS):
        result = run_module(module, args.max_children, args.only)
        results.append(result)
        print(
            f"{module:<32} {result['killed']:>4}/{result['mutants']:<4} killed "
            f"({100 * (result['score'] or 0):.1f}%)  {result['counts']}  {result['wall_s']:.0f} s",
            flush=True,
        )
        recorded = write_outputs(results)
    total = sum(r["mutants"] for r in recorded)
    killed = sum(r["killed"] for r in recorded)
    print(f"{'recorded modules':<32} {killed:>4}/{total:<4} killed ({100 * killed / max(1, total):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
