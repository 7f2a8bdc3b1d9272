"""Every installed command answers `--version` and names itself as the user started it."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
VERSION = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
BIN = Path(sys.executable).parent


def _run(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "KOTONE_ARTIFACTS": str(tmp_path / "artifacts")}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_console_script_answers_version_under_its_own_name(script, tmp_path):
    launcher = BIN / script
    if not launcher.is_file():
        pytest.skip(f"{script} is not installed in this environment (pip install -e .)")
    result = _run([str(launcher), "--version"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{script} {VERSION}"
    assert not (tmp_path / "artifacts").exists(), "--version wrote something"


@pytest.mark.parametrize("script", ["kotone-predict", "kotone-publish"])
def test_a_usage_error_names_the_console_script_not_python_m(script, tmp_path):
    launcher = BIN / script
    if not launcher.is_file():
        pytest.skip(f"{script} is not installed in this environment (pip install -e .)")
    result = _run([str(launcher), "--no-such-flag"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: {script} "), result.stderr


def test_started_with_python_m_the_usage_says_so(tmp_path):
    module = SCRIPTS["kotone-predict"].split(":")[0]
    result = _run([sys.executable, "-m", module, "--version"], tmp_path)
    assert result.stdout.strip() == f"python -m {module} {VERSION}"
