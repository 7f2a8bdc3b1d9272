"""Train and evaluate stages: the cycle's candidate trained on its training set, then scored on valid."""

from __future__ import annotations

from loop.config import LoopConfig
from loop.registry import metric_summary, register_candidate
from loop.stages.inputs import dataset, read_plan, valid_rows
from tools.core.atomic import atomic_write_json
from tools.core.paths import cycle_dir
from tools.core.schema import TrainingRow
from tools.data.dataset import load_jsonl
from tools.evaluation.harness import evaluate


def train(cycle: int, config: LoopConfig) -> dict:
    """Train the candidate from the base model on the cycle's training set (resumes from checkpoints)."""
    from tools.student.interface import train_student
    from tools.tracking import start_training_run

    plan = read_plan(cycle)
    out = cycle_dir(cycle)
    rows = load_jsonl(out / f"train.cycle_{cycle}.jsonl")
    run = start_training_run(
        name=f"cycle{cycle}-train",
        group=f"cycle_{cycle}",
        config={
            "cycle": cycle,
            "student": config.student,
            "base_model": config.base_model,
            **plan.hparams.model_dump(),
            "train_rows": len(rows),
        },
    )
    result = train_student(
        config.student,
        plan.hparams,
        rows,
        base_spec=config.base_model,
        output_dir=out / "candidate",
        seed=config.seed + cycle,
        time_budget_s=config.train_time_budget_s,
        checkpoint_every_steps=config.checkpoint_every_steps,
        options=config.student_options,
        on_step=run.log_step,
    )
    summary = result.model_dump(mode="json")
    summary["wandb_run_id"] = run.finish(
        {f"train/{k}": v for k, v in summary.items() if isinstance(v, int | float)}
    )
    atomic_write_json(out / "training.json", summary)
    return summary


def evaluate_candidate(cycle: int, config: LoopConfig) -> dict:
    """Candidate on the frozen validation rows; logged to W&B + Weave; registered in the registry."""
    from tools.student.interface import load_student
    from tools.tracking import log_evaluation

    data = dataset(config)
    rows = valid_rows(config, data)
    student_dir = cycle_dir(cycle) / "candidate"
    student = load_student(config.base_model, student_dir)
    decoder = student.default_decoder(config.decoder)
    report = evaluate(
        lambda texts: student.predict_batch(texts, decoder=decoder),
        rows,
        predictor=f"cycle{cycle}-candidate",
        decoder=decoder,
        dataset=f"{data.name}/valid",
        batch_size=config.eval_batch_size,
    )
    # p95 latency is a per-request figure: measure single requests, not batch shares.
    report = report.model_copy(update=single_request_latency(student, decoder, rows))
    run_id = log_evaluation(
        report,
        name=f"cycle{cycle}-candidate",
        group=f"cycle_{cycle}",
        config={"role": "candidate", "cycle": cycle, "split": "valid", "student": config.student},
    )
    atomic_write_json(cycle_dir(cycle) / "eval_candidate.json", report)
    register_candidate(cycle, student_dir, report, base_model=config.base_model, eval_run_id=run_id)
    return {"eval_run_id": run_id, **metric_summary(report).model_dump()}


def single_request_latency(student: object, decoder: str, rows: list[TrainingRow], n: int = 20) -> dict:
    import numpy as np

    latencies = [student.predict_one(r.request_text, decoder=decoder).latency_ms for r in rows[:n]]  # type: ignore[attr-defined]
    return {
        "p50_latency_ms": float(np.percentile(latencies, 50)),
        "p95_latency_ms": float(np.percentile(latencies, 95)),
    }
