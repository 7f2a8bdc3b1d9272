"""Loop settings, per-cycle stage state and the single-run lock."""

import os
import subprocess
import sys

import pytest

from loop.config import LoopConfig, load_config
from loop.stages.progress import STAGES, CycleState
from loop.state import RunLock


def test_config_layers_defaults_file_and_env(tmp_path):
    path = tmp_path / "loop.json"
    path.write_text('{"data": "real", "gate": {"min_mae_improvement": 0.05}, "seed": 3}')
    config = load_config(path, environ={"KOTONE_SEED": "7", "KOTONE_GATE__CONFIDENCE": "0.99"})
    assert config.data == "real"
    assert config.seed == 7
    assert config.gate.min_mae_improvement == 0.05
    assert config.gate.confidence == 0.99
    assert load_config(environ={}) == LoopConfig()


def test_unknown_config_keys_are_errors(tmp_path):
    path = tmp_path / "loop.json"
    path.write_text('{"dataa": "real"}')
    with pytest.raises(ValueError, match="dataa"):
        load_config(path, environ={})


def test_cycle_state_survives_a_restart_and_names_the_next_stage(tmp_path):
    state = CycleState.load_or_new(tmp_path, 4)
    state.mark_done("snapshot", tmp_path)
    state.mark_done("diagnose", tmp_path)
    again = CycleState.load_or_new(tmp_path, 4)
    assert again.completed == ["snapshot", "diagnose"]
    assert again.next_stage() == "plan"
    for stage in STAGES:
        again.mark_done(stage, tmp_path)
    assert CycleState.load_or_new(tmp_path, 4).finished_at is not None


def test_a_stale_lock_from_a_dead_process_is_taken_over(tmp_path):
    lock = tmp_path / ".lock"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock.write_text(dead.stdout.strip())
    with RunLock(lock):
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists()


def test_a_run_on_another_dataset_than_the_champions_is_refused_before_anything_starts(
    tmp_path, monkeypatch, capsys
):
    from loop.registry import promote, register_candidate
    from loop.run import main
    from tools.evaluation.metrics import build_report

    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    report = build_report([], predictor="base", decoder="d", dataset="some-other-data/valid", data_hash="h")
    register_candidate(
        0, "base-skeleton", None, report, base_model="bundled", decoder="d", recipe=None, eval_run_id=None
    )
    promote(0, "base-skeleton")
    assert main(["--cycles", "1", "--data", "shipped"]) == 2
    error = capsys.readouterr().err
    assert (
        "some-other-data/valid" in error and "kotone-shipped/valid" in error and "KOTONE_ARTIFACTS" in error
    )


def test_student_options_may_set_a_starting_hyperparameter_inside_the_guardrails_only() -> None:
    """KOTONE_STUDENT_OPTIONS / --config: a hyperparameter there is the planner's starting value, bounded like
    the plan's; the other knobs stay the student's options."""
    from loop.config import ConfigError, load_config

    config = load_config(environ={"KOTONE_STUDENT_OPTIONS": '{"learning_rate": 0.001, "layers_kept": 6}'})
    assert config.default_hparams().learning_rate == 0.001
    assert config.student_knobs() == {"layers_kept": 6}
    with pytest.raises(
        ConfigError, match=r"\(student_options\): outside the guardrails' bounds: learning_rate 1 -> 0.005"
    ):
        load_config(environ={"KOTONE_STUDENT_OPTIONS": '{"learning_rate": 1.0}'})
    with pytest.raises(ConfigError, match=r"\(student_options\): lora_r"):
        load_config(environ={"KOTONE_STUDENT_OPTIONS": '{"lora_r": "wide"}'})
