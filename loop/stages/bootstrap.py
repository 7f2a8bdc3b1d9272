"""Cycle 0: the untouched base model and the baselines on the validation split; the base becomes champion."""

from __future__ import annotations

import time

from loop.config import LoopConfig
from loop.history import append_history
from loop.registry import promote, register_candidate
from loop.stages.inputs import dataset, valid_rows
from loop.state import now_iso
from tools.core.atomic import atomic_write_json
from tools.core.contracts import ChampionRecord, CycleHistoryEntry
from tools.core.paths import cycle_dir
from tools.evaluation.harness import evaluate, evaluate_baselines


def bootstrap_champion(config: LoopConfig) -> ChampionRecord:
    """Cycle 0: evaluate the untouched base model and the baselines on valid; the base becomes champion."""
    from tools.student.interface import load_student
    from tools.tracking import log_evaluation

    started = time.perf_counter()
    started_at = now_iso()
    data = dataset(config)
    rows = valid_rows(config, data)
    name = f"{data.name}/valid"
    for baseline in evaluate_baselines(data.train, rows, dataset=name):
        log_evaluation(
            baseline,
            name=f"baseline-{baseline.predictor}",
            group="cycle_0",
            config={"role": "baseline", "cycle": 0, "split": "valid", "predictor": baseline.predictor},
        )
        atomic_write_json(cycle_dir(0) / f"eval_baseline_{baseline.predictor}.json", baseline)
    student = load_student(config.base_model, None)
    report = evaluate(
        lambda texts: student.predict_batch(texts, decoder=config.decoder),
        rows,
        predictor=student.name,
        decoder=config.decoder,
        dataset=name,
        batch_size=config.eval_batch_size,
    )
    run_id = log_evaluation(
        report,
        name="cycle0-base",
        group="cycle_0",
        config={"role": "base", "cycle": 0, "split": "valid", "base_model": config.base_model},
    )
    atomic_write_json(cycle_dir(0) / "eval_candidate.json", report)
    register_candidate(0, None, report, base_model=config.base_model, eval_run_id=run_id)
    champion = promote(0)
    append_history(
        CycleHistoryEntry(
            cycle=0,
            status="baseline",
            description=f"base model {config.base_model} [{config.decoder}] evaluated; champion",
            candidate_mae=report.vector_mae,
            candidate_mae_rounded=report.vector_mae_rounded,
            wall_s=round(time.perf_counter() - started, 1),
            started_at=started_at,
            finished_at=now_iso(),
        )
    )
    return champion
