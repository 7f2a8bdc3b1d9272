"""Commands start fast: `--help` of every command, and a prediction by a champion without a language model,
import none of the heavy libraries (a structural check of what is loaded, not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "wandb", "weave", "ray", "mcp", "mistralai")
# Also not needed to print a help text: numerical code, the baselines' libraries, the report's templates.
NOT_FOR_HELP = (*HEAVY, "numpy", "sklearn", "scipy", "jinja2")
COMMANDS = ("loop.run", "loop.report", "tools.server", "tools.predict", "tools.evaluate", "loop.publish")

PROBE = """
import json, sys
from {module} import main
try:
    main({argv!r})
except SystemExit:
    pass
print(json.dumps(sorted(name for name in {watched!r} if name in sys.modules)), file=sys.stderr)
"""


def loaded_after(module: str, argv: list[str], watched: tuple[str, ...], env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module, argv=argv, watched=watched)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), **env},
        timeout=120,
    )
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("module", COMMANDS)
def test_help_loads_no_heavy_library(module, tmp_path):
    assert loaded_after(module, ["--help"], NOT_FOR_HELP, {"KOTONE_ARTIFACTS": str(tmp_path)}) == []


def test_a_prediction_without_a_language_model_loads_none_of_the_model_or_tracking_stack(tmp_path):
    from test_predict import install_champion

    install_champion(tmp_path)
    watched = (*HEAVY, "sklearn")  # a fitted cheap model serves with numpy and scipy.sparse
    assert loaded_after("tools.predict", ["a calm song"], watched, {"KOTONE_ARTIFACTS": str(tmp_path)}) == []
