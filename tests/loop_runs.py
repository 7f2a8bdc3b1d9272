"""Running the loop as a user does (`python -m loop.run` in a subprocess, tiny model, offline parts) and reading
what it wrote: shared by the end-to-end test files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tools.core.paths import PROJECT_ROOT, cache_dir


def loop_env(artifacts: Path, tiny: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOTONE_", "MISTRAL_", "RAY_"))}
    env.update(
        {
            "KOTONE_ARTIFACTS": str(artifacts),
            "KOTONE_CACHE": str(cache_dir()),
            "KOTONE_BASE_MODEL": str(tiny),
            "KOTONE_PLANNER": "offline",
            "KOTONE_TEACHER": "offline",
            "KOTONE_MAX_EVAL_ROWS": "32",
            "KOTONE_MAX_TRAIN_ROWS": "300",
            "KOTONE_STUDENT_OPTIONS": '{"layers_kept": 2, "lora_layers": 1, "epochs": 1}',
            "KOTONE_BOOTSTRAP_DECODERS": '["skeleton"]',
            "KOTONE_CV_FOLDS": "2",
            "KOTONE_LATENCY_REQUESTS": "4",
            "KOTONE_CANDIDATES": "1",
            "KOTONE_CHECKPOINT_EVERY_STEPS": "2",
        }
        | extra
    )
    return env


def run_loop(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "loop.run", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def history_lines(artifacts: Path) -> list[dict]:
    return [json.loads(line) for line in (artifacts / "loop" / "history.jsonl").read_text().splitlines()]


def copy_artifacts(artifacts: Path, to: Path) -> Path:
    """A copy of a run's artifacts (records hold paths relative to the artifacts root)."""
    shutil.copytree(artifacts, to, symlinks=True)
    return to


def start_loop(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "loop.run", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def undo_log_stage(artifacts: Path) -> None:
    """Undo cycle 1's log stage: the files as they are when the log stage starts."""
    from loop.registry import CandidateRecord
    from loop.stages.progress import CycleState

    out = artifacts / "loop" / "cycle_1"
    gate = read_json(out / "gate.json")
    for name in ("decision.json", "decision_log.md"):
        (out / name).unlink()
    registry = artifacts / "registry"
    record_path = registry / "cycle_1" / gate["winner"] / "record.json"
    record = CandidateRecord.model_validate_json(record_path.read_text())
    record_path.write_text(record.model_copy(update={"promoted": False}).model_dump_json())
    (registry / "cycle_1" / gate["winner"] / "eval_test_record.json").unlink()
    (registry / "champion.json").write_text(json.dumps(gate["champion_before"]))
    history = artifacts / "loop" / "history.jsonl"
    kept = [line for line in history.read_text().splitlines() if json.loads(line)["cycle"] != 1]
    history.write_text("".join(line + "\n" for line in kept))  # history.tsv is rewritten on the next append
    state = CycleState.load_or_new(out, 1)
    state.model_copy(update={"completed": state.completed[:-1], "finished_at": None}).save(out)
