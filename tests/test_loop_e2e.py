"""End to end: real cycles through the real stdio MCP server and real Ray tasks, on a tiny model built at
test time. Each run is `python -m loop.run` in a subprocess, exactly as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from loop_runs import copy_artifacts, history_lines, loop_env, read_json, run_loop, start_loop, undo_log_stage

pytestmark = pytest.mark.slow

CANDIDATE_FILES = [
    "train.jsonl",
    "generated_augmented_pairs.jsonl",
    "filter_report.json",
    "augment.json",
    "training.json",
    "student/oof.json",
    "eval_valid.json",
]
CYCLE_FILES = [
    "mcp_eval_snapshot.json",
    "mcp_decision_input.json",
    "plan.json",
    "agent_transcript.jsonl",
    "gate.json",
    "decision_log.md",
    "decision.json",
]


def _predictions(artifacts: Path, cycle: int, name: str) -> list:
    report = read_json(artifacts / "loop" / f"cycle_{cycle}" / "candidates" / name / "eval_valid.json")
    return [row["prediction"] for row in report["rows"]]


def test_cycle_zero_picks_the_best_predictor_and_a_stacked_candidate_beats_it(one_cycle):
    history = history_lines(one_cycle)
    assert [(h["cycle"], h["status"]) for h in history] == [(0, "baseline"), (1, "promoted")]
    cycle0 = {c["name"]: c for c in history[0]["candidates"]}
    assert set(cycle0) == {"train-median", "tfidf-ridge", "base-skeleton"}
    winner0 = min(cycle0.values(), key=lambda c: c["valid_mae"])
    assert cycle0[winner0["name"]]["status"] == "promoted"

    cycle1 = one_cycle / "loop" / "cycle_1"
    for name in CYCLE_FILES:
        assert (cycle1 / name).is_file(), name
    plan = read_json(cycle1 / "plan.json")
    assert [c["name"] for c in plan["candidates"]] == ["stack"]
    for name in CANDIDATE_FILES:
        assert (cycle1 / "candidates" / "stack" / name).is_file(), name
    members = sorted(
        p.name for p in (cycle1 / "candidates" / "stack" / "student" / "components" / "lm").glob("member_*")
    )
    assert members == ["member_0", "member_1"]

    decision = read_json(cycle1 / "decision.json")
    assert decision["verdict"] == "promoted" and decision["winner"] == "stack"
    assert (
        decision["candidates"][0]["cv_mae"] is not None
        and len(decision["candidates"][0]["member_valid_mae"]) == 2
    )
    checks = {c["name"] for c in decision["gate"]["candidates"]["stack"]["checks"]}
    assert {"bootstrap", "beats_baselines", "latency"} <= checks
    assert decision["champion_before"]["candidate"] == winner0["name"]
    assert decision["gate"]["confirm"]["promoted"] is True  # the LM recipe was re-trained with other seeds
    champion = read_json(one_cycle / "registry" / "champion.json")
    assert (champion["cycle"], champion["candidate"]) == (1, "stack")
    assert not Path(champion["student_path"]).is_absolute()
    assert (one_cycle / "registry" / "cycle_1" / "stack" / "eval_test_record.json").is_file()
    # The lock token authorised every action call and was never written down.
    transcript = (cycle1 / "agent_transcript.jsonl").read_text() + (
        cycle1 / "mcp_eval_snapshot.json"
    ).read_text()
    assert "[lock token]" in transcript
    assert not list((one_cycle / "loop").glob(".lock*"))


def test_the_next_cycle_tries_new_recipes_the_gate_rejects_and_rollback_restores(
    one_cycle, tmp_path, tiny_base_model
):
    artifacts = copy_artifacts(one_cycle, tmp_path / "artifacts")
    env = loop_env(artifacts, tiny_base_model, KOTONE_GATE__MIN_MAE_IMPROVEMENT="10", KOTONE_CANDIDATES="2")
    second = run_loop(env)
    assert "cycle 2: REJECTED" in second.stdout, second.stdout
    plan1 = read_json(artifacts / "loop" / "cycle_1" / "plan.json")
    plan2 = read_json(artifacts / "loop" / "cycle_2" / "plan.json")
    keys1 = {c["name"] for c in plan1["candidates"]}
    assert len(plan2["candidates"]) == 2 and not keys1 & {c["name"] for c in plan2["candidates"]}
    history = history_lines(artifacts)
    assert [(h["cycle"], h["status"]) for h in history] == [(0, "baseline"), (1, "promoted"), (2, "rejected")]
    assert all(c["status"] in ("rejected", "pruned") for c in history[2]["candidates"])
    assert "mae_margin" in history[2]["gate_failed_checks"]
    log2 = (artifacts / "loop" / "cycle_2" / "decision_log.md").read_text()
    assert "REJECTED" in log2 and "champion stays cycle 1" in log2

    run_loop(env, "--rollback", "0")
    assert read_json(artifacts / "registry" / "champion.json")["cycle"] == 0
    refused = run_loop(env, "--rollback", "2", expect=2)
    assert "never promoted" in refused.stderr


def _wait_for(path_glob: str, root: Path, process: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(root.glob(path_glob)):
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before {path_glob} appeared")
        time.sleep(0.05)
    pytest.fail(f"{path_glob} did not appear")


def test_a_cycle_planned_by_the_mistral_backend_over_the_real_sdk_and_mcp(
    one_cycle, tmp_path, tiny_base_model
):
    """The plan stage with `--planner mistral`: the real mistralai client talks to a scripted server on
    127.0.0.1, its tool calls go through the loop's MCP session, and its candidates are the ones trained."""
    from fake_mistral_server import FakeMistralServer, completion

    plan = {
        "candidates": [
            {
                "name": "cheap",
                "student": {"family": "stack", "components": ["train-median", "tfidf-ridge"], "folds": 2},
                "hparams": {
                    "learning_rate": 6e-4,
                    "lora_r": 8,
                    "lora_alpha": 16,
                    "epochs": 2.0,
                    "batch_size": 16,
                },
                "augmentation": {
                    "teacher_pairs": 40,
                    "replay_rows": 10,
                    "target_buckets": {"energy": [0, 1, 9, 10]},
                },
                "focus_dims": ["energy"],  # the diagnosis's weakest dim on this data (the evidence check)
                "reason": "the cheap blend first",
            }
        ],
        "reasons": {"focus_dims": "energy is worst", "augmentation": "extremes", "search": "cheap first"},
    }
    script = [
        completion(tool_calls=[("get_eval_snapshot_tool", {}), ("get_augmentation_capacity_tool", {})]),
        completion(content=json.dumps(plan)),
    ]
    artifacts = copy_artifacts(one_cycle, tmp_path / "artifacts")
    with FakeMistralServer(script) as server:
        env = loop_env(
            artifacts,
            tiny_base_model,
            KOTONE_PLANNER="mistral",
            KOTONE_MISTRAL_SERVER_URL=server.url,
            MISTRAL_API_KEY="test-dummy-key",
            KOTONE_TEACHER="offline",
        )
        result = run_loop(env, "--cycles", "1")
    assert "plan by mistral" in result.stdout, result.stdout
    saved = read_json(artifacts / "loop" / "cycle_2" / "plan.json")
    assert [c["name"] for c in saved["candidates"]] == ["cheap"] and saved["fallback_reason"] is None
    record = read_json(artifacts / "loop" / "cycle_2" / "candidates" / "cheap" / "training.json")
    assert record["result"]["recipe"]["components"] == ["train-median", "tfidf-ridge"]
    events = [
        json.loads(line)
        for line in (artifacts / "loop" / "cycle_2" / "agent_transcript.jsonl").read_text().splitlines()
    ]
    assert any(e["kind"] == "model_message" for e in events)
    assert len(server.requests) == 2
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    assert headers["authorization"] == "Bearer test-dummy-key"


def _wait_for_stage(artifacts: Path, stage: str, process: subprocess.Popen, timeout_s: float = 600) -> None:
    state = artifacts / "loop" / "cycle_1" / "state.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if state.is_file() and stage in json.loads(state.read_text() or "{}").get("completed", []):
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before stage {stage} finished")
        time.sleep(0.02)
    pytest.fail(f"stage {stage} did not finish")


def _outcome(artifacts: Path) -> dict:
    """What a cycle decided, without its timings and run ids."""
    decision = read_json(artifacts / "loop" / "cycle_1" / "decision.json")
    return {
        "verdict": decision["verdict"],
        "winner": decision["winner"],
        "champion": decision["champion_after"]["candidate"],
        "candidates": [
            (c["name"], c["status"], c["cv_mae"], c["valid"]["vector_mae"], c["failed_checks"])
            for c in decision["candidates"]
        ],
        "history": [
            (h["cycle"], h["status"]) for h in history_lines(artifacts) if h["status"] != "interrupted"
        ],
    }


def test_kills_and_a_sigterm_anywhere_then_resume_decide_as_an_uninterrupted_run(
    cycle_zero, one_cycle, tmp_path, tiny_base_model
):
    """Cycle 1 stopped four times: kill -9 after the plan, SIGTERM while the LM members train (after the
    first finished), kill -9 after evaluate and after the gate. Each --resume runs only what had not finished
    and the cycle decides exactly as the uninterrupted one (both from the same cycle 0)."""
    artifacts = copy_artifacts(cycle_zero, tmp_path / "artifacts")
    env = loop_env(artifacts, tiny_base_model)
    cycle1 = artifacts / "loop" / "cycle_1"
    lm = cycle1 / "candidates" / "stack" / "student" / "components" / "lm"

    process = start_loop(env, "--cycles", "1")
    _wait_for_stage(artifacts, "plan", process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    process = start_loop(env, "--resume")  # the killed run's lock died with it
    _wait_for("member_*/done.json", lm, process)  # the members train side by side: the first to finish
    (member_done, *_) = sorted(lm.glob("member_*/done.json"))
    earlier = [
        cycle1 / "plan.json",
        cycle1 / "mcp_decision_input.json",
        cycle1 / "candidates" / "stack" / "train.jsonl",
        cycle1 / "candidates" / "stack" / "augment.json",
        member_done,
    ]
    written = {path: path.stat().st_mtime_ns for path in earlier}
    finished_member = member_done.read_text()
    process.send_signal(signal.SIGTERM)
    began = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and time.monotonic() - began < 30, stderr
    assert "INTERRUPTED" in stderr and "--resume" in stderr
    assert history_lines(artifacts)[-1]["status"] == "interrupted"
    assert not list((artifacts / "loop").glob(".lock*"))

    for stage in ("evaluate", "gate"):
        process = start_loop(env, "--resume")
        _wait_for_stage(artifacts, stage, process)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    run_loop(env, "--resume")

    # Resume ran only what had not finished: earlier outputs and the finished member were not rewritten.
    assert {path: path.stat().st_mtime_ns for path in earlier} == written
    assert member_done.read_text() == finished_member
    assert _outcome(artifacts) == _outcome(one_cycle)
    assert _predictions(artifacts, 1, "stack") == _predictions(one_cycle, 1, "stack")
    assert [h["status"] for h in history_lines(artifacts)] == ["baseline", "interrupted", "promoted"]


class Killed(Exception):
    """Stands for a kill -9 at that point of the log stage."""


LOG_STAGE_FILES = [
    "loop/cycle_1/decision.json",
    "loop/cycle_1/decision_log.md",
    "registry/champion.json",
    "loop/history.jsonl",
    "loop/history.tsv",
]


FROZEN_NOW = "2026-11-30T12:00:00+00:00"  # the log stage's one clock read, the same in every run below


@pytest.fixture(scope="module")
def log_stage_reference(one_cycle, tmp_path_factory) -> tuple[Path, str]:
    """Cycle 1's log stage run once, uninterrupted, from the files as they are when it starts: the bytes every
    killed-and-resumed run must write (its artifacts, and when the cycle started)."""
    import loop.stages.decide as decide
    from loop.stages.inputs import load_loop_config
    from loop.stages.progress import CycleState

    reference = copy_artifacts(one_cycle, tmp_path_factory.mktemp("log_stage") / "reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decide, "now_iso", lambda: FROZEN_NOW)
        patch.setenv("KOTONE_ARTIFACTS", str(reference))
        undo_log_stage(reference)
        started_at = CycleState.load_or_new(reference / "loop" / "cycle_1", 1).started_at
        decide.log_decision(1, load_loop_config(), started_at, 12.5)
    return reference, started_at


@pytest.mark.parametrize("killed_at", ["promote", "evaluate_test_for_the_record", "append_history", None])
def test_a_kill_anywhere_in_the_log_stage_then_resume_writes_the_same_bytes(
    one_cycle, log_stage_reference, tmp_path, monkeypatch, killed_at
):
    """The log stage's writes, repeated after a kill at each point, give byte-identical records and one history
    line (None: killed after its last write, before the stage was marked done)."""
    import loop.stages.decide as decide
    from loop.stages.inputs import load_loop_config

    reference, started_at = log_stage_reference
    monkeypatch.setattr(decide, "now_iso", lambda: FROZEN_NOW)
    faulty = copy_artifacts(one_cycle, tmp_path / "faulty")
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(faulty))
    undo_log_stage(faulty)

    if killed_at is not None:
        with monkeypatch.context() as patch:
            patch.setattr(decide, killed_at, lambda *a, **k: (_ for _ in ()).throw(Killed(killed_at)))
            with pytest.raises(Killed):
                decide.log_decision(1, load_loop_config(), started_at, 12.5)
    else:
        decide.log_decision(1, load_loop_config(), started_at, 12.5)
    decide.log_decision(1, load_loop_config(), started_at, 12.5)  # what --resume runs

    for name in LOG_STAGE_FILES:
        assert (faulty / name).read_bytes() == (reference / name).read_bytes(), name
    assert [h["status"] for h in history_lines(faulty)] == ["baseline", "promoted"]
