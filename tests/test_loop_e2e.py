"""End to end: real cycles through the real stdio MCP server, on a tiny model built at test time.

Each run is `python -m loop.run` in a subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.core.paths import PROJECT_ROOT, cache_dir

pytestmark = pytest.mark.slow

CYCLE_FILES = [
    "mcp_eval_snapshot.json",
    "mcp_decision_input.json",
    "plan.json",
    "agent_transcript.jsonl",
    "generated_augmented_pairs.jsonl",
    "train.cycle_1.jsonl",
    "eval_candidate.json",
    "gate.json",
    "decision_log.md",
    "decision.json",
]


def _env(artifacts: Path, tiny: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOTONE_", "MISTRAL_"))}
    env.update(
        {
            "KOTONE_ARTIFACTS": str(artifacts),
            "KOTONE_CACHE": str(cache_dir()),
            "KOTONE_BASE_MODEL": str(tiny),
            "KOTONE_PLANNER": "offline",
            "KOTONE_TEACHER": "offline",
            "KOTONE_MAX_EVAL_ROWS": "32",
            "KOTONE_REPLAY_SAMPLE_ROWS": "24",
            "KOTONE_STUDENT_OPTIONS": '{"layers_kept": 2, "lora_layers": 1}',
        }
        | extra
    )
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "loop.run", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _history(artifacts: Path) -> list[dict]:
    return [json.loads(line) for line in (artifacts / "loop" / "history.jsonl").read_text().splitlines()]


def test_two_cycles_one_promoted_one_rejected(tmp_path, tiny_base_model):
    artifacts = tmp_path / "artifacts"
    first = _run(_env(artifacts, tiny_base_model), "--cycles", "1")
    assert "cycle 1: PROMOTED" in first.stdout, first.stdout

    # An impossible margin makes the second verdict certain: the gate, not the agent, rejects it.
    second = _run(_env(artifacts, tiny_base_model, KOTONE_GATE__MIN_MAE_IMPROVEMENT="10"))
    assert "cycle 2: REJECTED" in second.stdout, second.stdout

    cycle1 = artifacts / "loop" / "cycle_1"
    for name in CYCLE_FILES:
        assert (cycle1 / name).is_file(), name
    assert [(h["cycle"], h["status"]) for h in _history(artifacts)] == [
        (0, "baseline"),
        (1, "promoted"),
        (2, "rejected"),
    ]
    champion = json.loads((artifacts / "registry" / "champion.json").read_text())
    assert champion["cycle"] == 1

    decision1 = json.loads((cycle1 / "decision.json").read_text())
    assert decision1["verdict"] == "promoted"
    assert decision1["augmentation"]["leaked_against_protected"] == 0
    assert {s["name"] for s in decision1["sources"]} >= {"get_eval_snapshot_tool", "get_cycle_history_tool"}
    roles = [row["role"] for row in decision1["table"]]
    assert roles[:2] == ["candidate", "champion"] and "baseline tfidf-ridge" in roles

    gate2 = json.loads((artifacts / "loop" / "cycle_2" / "gate.json").read_text())
    assert not gate2["promoted"]
    assert [c["name"] for c in gate2["checks"] if not c["passed"]][0] == "mae_margin"
    log2 = (artifacts / "loop" / "cycle_2" / "decision_log.md").read_text()
    assert "REJECTED" in log2 and "champion stays cycle 1" in log2

    snapshot = json.loads((cycle1 / "mcp_eval_snapshot.json").read_text())
    assert "get_eval_snapshot_tool" in snapshot["listed_tools"]["kotone-stdio"]

    # Rolling back to the base model's cycle works, and a cycle that was never promoted is refused.
    _run(_env(artifacts, tiny_base_model), "--rollback", "0")
    assert json.loads((artifacts / "registry" / "champion.json").read_text())["cycle"] == 0
    refused = subprocess.run(
        [sys.executable, "-m", "loop.run", "--rollback", "2"],
        cwd=PROJECT_ROOT,
        env=_env(artifacts, tiny_base_model),
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "never promoted" in refused.stderr


def _wait_for_checkpoint(candidate: Path, process: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(candidate.glob("**/checkpoint*")):
            return
        if process.poll() is not None:
            pytest.fail("the run ended before writing a training checkpoint")
        time.sleep(0.05)
    pytest.fail("no training checkpoint appeared")


def test_kill_9_during_training_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_base_model):
    extra = {
        "KOTONE_STUDENT": "generative",
        "KOTONE_STUDENT_OPTIONS": "{}",
        "KOTONE_CHECKPOINT_EVERY_STEPS": "2",
        "KOTONE_MAX_TRAIN_ROWS": "64",
    }
    straight = tmp_path / "straight"
    _run(_env(straight, tiny_base_model, **extra), "--cycles", "1")

    killed = tmp_path / "killed"
    env = _env(killed, tiny_base_model, **extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "loop.run", "--cycles", "1"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_checkpoint(killed / "loop" / "cycle_1" / "candidate", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = json.loads((killed / "loop" / "cycle_1" / "state.json").read_text())
    assert "train" not in state["completed"] and "augment" in state["completed"]

    # The lock of the killed run is stale: a new run takes it over and finishes the cycle.
    resumed = _run(env, "--resume")
    assert "resuming after augment" in resumed.stdout

    def outcome(root: Path) -> tuple:
        report = json.loads((root / "loop" / "cycle_1" / "eval_candidate.json").read_text())
        gate = json.loads((root / "loop" / "cycle_1" / "gate.json").read_text())
        rows = [r["prediction"] for r in report["rows"]]
        return report["vector_mae"], rows, gate["promoted"]

    assert outcome(killed) == outcome(straight)
    train_rows = (killed / "loop" / "cycle_1" / "train.cycle_1.jsonl").read_text()
    assert train_rows == (straight / "loop" / "cycle_1" / "train.cycle_1.jsonl").read_text()


def test_a_cycle_planned_by_the_mistral_backend_over_the_real_sdk_and_mcp(tmp_path, tiny_base_model):
    """The loop's plan stage with `--planner mistral`: the real mistralai client talks to a scripted
    server on 127.0.0.1, its tool calls go through the loop's MCP session, and its plan is the one trained."""
    from fake_mistral_server import FakeMistralServer, completion

    plan = {
        "focus_dims": ["energy", "nostalgia"],
        "augmentation": {"new_pairs": 80, "replay_ratio": 0.25, "target_buckets": {"energy": [0, 1, 9, 10]}},
        "hparams": {"learning_rate": 6e-4, "lora_r": 8, "lora_alpha": 16, "epochs": 2.0, "batch_size": 16},
        "reasons": {
            "focus_dims": "energy and nostalgia have the highest MAE",
            "augmentation": "extremes of energy are missing",
            "hparams": "small rank for a first cycle",
        },
    }
    script = [
        completion(tool_calls=[("get_eval_snapshot_tool", {}), ("get_cycle_history_tool", {})]),
        completion(content=json.dumps(plan)),
    ]
    artifacts = tmp_path / "artifacts"
    with FakeMistralServer(script) as server:
        env = _env(
            artifacts,
            tiny_base_model,
            KOTONE_PLANNER="mistral",
            KOTONE_MISTRAL_SERVER_URL=server.url,
            MISTRAL_API_KEY="test-dummy-key",
        )
        result = _run(env, "--cycles", "1")
    assert "plan by mistral" in result.stdout, result.stdout
    cycle1 = artifacts / "loop" / "cycle_1"
    saved = json.loads((cycle1 / "plan.json").read_text())
    assert saved["focus_dims"] == ["energy", "nostalgia"] and saved["fallback_reason"] is None
    assert saved["hparams"]["lora_r"] == 8
    training = json.loads((cycle1 / "training.json").read_text())
    assert training["config"]["lora_r"] == 8 and training["config"]["epochs"] == 2.0
    events = [json.loads(line) for line in (cycle1 / "agent_transcript.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "model_message" for e in events)
    assert len(server.requests) == 2
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    assert headers["authorization"] == "Bearer test-dummy-key"
