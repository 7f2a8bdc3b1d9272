"""Shared by the tracking and MCP server tests: real offline runs logged into a temporary artifacts dir."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import BaseModel

from tools.core.schema import ParamVector, Prediction, TrainingRow
from tools.evaluation.metrics import EvalReport, build_report, score_row

TRAIN_STEPS = [
    {"step": s, "loss": round(2.0 / (s + 1), 6), "lr": 1e-3 * (1 - s / 8), "epoch": s / 8} for s in range(8)
]


class LoggedRuns(BaseModel):
    train_run_id: str
    eval_run_id: str
    baseline_run_id: str
    test_run_id: str
    report: EvalReport
    baseline_report: EvalReport
    test_report: EvalReport
    eval_log_s: float


def make_report(
    n_rows: int, seed: int, predictor: str = "tiny-student", dataset: str = "shipped/valid"
) -> EvalReport:
    """Hand-made rows: mostly scored, every 11th unparsable, every 13th answered by a fallback."""
    rnd = random.Random(seed)
    results = []
    for i in range(n_rows):
        target = [rnd.randint(0, 10) for _ in range(6)]
        row = TrainingRow(
            request_text=f"request {seed}-{i}: a song for a rainy evening",
            source_type="rule_prompt" if i % 2 else "request_text",
            target=ParamVector.from_list(target),
        )
        if i % 11 == 5:
            prediction = Prediction(values=None, json_valid=False, raw_output="{oops", parse_error="bad json")
        else:
            values = [min(10.0, max(0.0, v + rnd.uniform(-2.5, 2.5))) for v in target]
            served_by = "fallback" if i % 13 == 7 else "model"
            prediction = Prediction(
                values=values, json_valid=True, served_by=served_by, latency_ms=rnd.uniform(400, 900)
            )
        results.append(score_row(i, row, prediction, "model"))
    return build_report(
        results, predictor=predictor, decoder="skeleton", dataset=dataset, data_hash=f"hash{seed}"
    )


def log_runs() -> LoggedRuns:
    """Log one training run, a base eval, a baseline eval and a test-split record (env already pointed)."""
    from tools.tracking import log_evaluation, start_training_run

    run = start_training_run("cycle1-train", "cycle_1", {"cycle": 1, "learning_rate": 1e-3, "lora_r": 16})
    for metrics in TRAIN_STEPS:
        run.log_step(metrics)
    train_run_id = run.finish({"train/final_loss": TRAIN_STEPS[-1]["loss"]})

    report = make_report(120, seed=1)
    started = time.perf_counter()
    eval_run_id = log_evaluation(
        report, name="cycle0-base", group="cycle_0", config={"role": "base", "cycle": 0, "split": "valid"}
    )
    eval_log_s = time.perf_counter() - started
    baseline = make_report(40, seed=2, predictor="tfidf_ridge")
    baseline_run_id = log_evaluation(
        baseline,
        name="baseline-tfidf_ridge",
        group="cycle_0",
        config={"role": "baseline", "cycle": 0, "split": "valid", "predictor": "tfidf_ridge"},
    )
    test_report = make_report(12, seed=3, dataset="shipped/test")
    test_run_id = log_evaluation(
        test_report,
        name="cycle0-test-record",
        group="cycle_0",
        config={"role": "test_record", "cycle": 0, "split": "test"},
    )
    return LoggedRuns(
        train_run_id=train_run_id,
        eval_run_id=eval_run_id,
        baseline_run_id=baseline_run_id,
        test_run_id=test_run_id,
        report=report,
        baseline_report=baseline,
        test_report=test_report,
        eval_log_s=eval_log_s,
    )


def tracking_env(artifacts: Path) -> dict[str, str]:
    """The variables that point tracking at `artifacts` (offline, no key)."""
    return {"KOTONE_ARTIFACTS": str(artifacts), "KOTONE_TRACKING": "offline"}


@contextmanager
def offline_tracking(artifacts: Path) -> Iterator[None]:
    """Tracking pointed at `artifacts`, offline, with no key and no inherited wandb locations."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in tracking_env(artifacts).items():
            mp.setenv(name, value)
        for name in (
            "WANDB_API_KEY",
            "WANDB_MODE",
            "WANDB_DIR",
            "WANDB_DATA_DIR",
            "WANDB_CACHE_DIR",
            "WANDB_CONFIG_DIR",
        ):
            mp.delenv(name, raising=False)
        yield
