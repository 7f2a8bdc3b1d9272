"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer, built once per test run; the order in
which the test files start."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tools.student.base_model import build_tiny_model

# The long files first, so the two workers of `make test` do not end on one of them while the other idles
# (`--dist loadfile --no-loadscope-reorder` keeps this order; xdist hands each worker its first two files at
# once). Measured idle: loop_e2e 525 s (it builds `one_cycle`, 115 s), parallel 180 s, llamacpp 68 s,
# steering 206 s (after `one_cycle`: second on its worker, it finds it built instead of waiting for it),
# offline entry points 137 s, secrets 82 s.
LONGEST_FIRST = (
    "tests/test_loop_e2e.py",
    "tests/test_parallel.py",
    "tests/test_openai_llamacpp.py",
    "tests/test_steering_e2e.py",
    "tests/faults/test_offline_entry_points.py",
    "tests/faults/test_secrets_and_tool_errors.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: position for position, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder built once per test run, by whichever worker asks first; the others wait for it, then share it.
    Tests copy it before writing."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one run's folder, all workers'
    folder = root / name
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def cycle_zero(tmp_path_factory: pytest.TempPathFactory, tiny_base_model: Path) -> Path:
    """Cycle 0 on the end-to-end settings (the first champion): artifacts to copy, built once per test run."""
    from loop_runs import loop_env, run_loop

    def build(folder: Path) -> None:
        result = run_loop(loop_env(folder / "artifacts", tiny_base_model), "--cycle", "0")
        assert "cycle 0: champion is" in result.stdout, result.stdout + result.stderr

    return built_once(tmp_path_factory, "cycle_zero", build) / "artifacts"


@pytest.fixture(scope="session")
def one_cycle(tmp_path_factory: pytest.TempPathFactory, tiny_base_model: Path, cycle_zero: Path) -> Path:
    """`cycle_zero`, then cycle 1 with one candidate (the default stack, LM included) on the end-to-end
    settings: artifacts to copy, built once per test run for every end-to-end file."""
    from loop_runs import copy_artifacts, loop_env, run_loop

    def build(folder: Path) -> None:
        artifacts = copy_artifacts(cycle_zero, folder / "artifacts")
        result = run_loop(loop_env(artifacts, tiny_base_model), "--cycles", "1")
        assert "cycle 1: PROMOTED" in result.stdout, result.stdout

    return built_once(tmp_path_factory, "one_cycle", build) / "artifacts"


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random model: pass it anywhere a base-model spec goes (its output is garbage).

    The tokenizer comes from the cached bundled model; on a cold cache the first build converts the GGUF once.
    """
    return (
        built_once(tmp_path_factory, "tiny_base_model", lambda folder: build_tiny_model(folder / "model"))
        / "model"
    )
