"""Cycle 0: the first champion is the best on valid of the zero-shot base model (each decoder) and the
reference baselines (train-median constant, TF-IDF ridge). Baselines are first-class predictors: fitted on
the training split (with their out-of-fold CV estimate), registered, served like any student."""

from __future__ import annotations

import time

from loop.config import LoopConfig
from loop.history import append_history
from loop.registry import promote, register_candidate
from loop.stages.inputs import dataset, valid_rows
from loop.stages.scoring import cv_report, evaluate_student, log_cv, log_valid
from loop.state import now_iso
from tools.core.contracts import CandidateOutcome, ChampionRecord, CycleHistoryEntry, StudentRecipe
from tools.core.paths import cycle_dir
from tools.evaluation.baselines import REFERENCE_BASELINES
from tools.evaluation.metrics import EvalReport
from tools.student.recipes import train_recipe


def bootstrap_champion(config: LoopConfig) -> ChampionRecord:
    from tools.student.interface import load_student

    started = time.perf_counter()
    started_at = now_iso()
    data = dataset(config)
    rows = valid_rows(config, data)
    out = cycle_dir(0) / "candidates"
    entries: list[tuple[ChampionRecord, EvalReport]] = []
    for kind in REFERENCE_BASELINES:
        recipe = StudentRecipe(family="baseline", baseline=kind, folds=config.cv_folds)
        folder = out / kind / "student"
        result = train_recipe(
            recipe,
            config.default_hparams(),
            data.train,
            base_spec=config.base_model,
            output_dir=folder,
            seed=config.seed,
        )
        student = load_student(config.base_model, folder)
        report = evaluate_student(student, rows, predictor=kind, dataset=f"{data.name}/valid", config=config)
        run_id = log_valid(report, cycle=0, name=kind, role="baseline", extra={"predictor": kind})
        cv = cv_report(folder, data.train, predictor=kind, dataset=data.name)
        log_cv(
            cv,
            cycle=0,
            name=kind,
            role="baseline",
            extra={"predictor": kind, "cv_folds": result.recipe.folds},
        )
        entries.append(
            (
                register_candidate(
                    0,
                    kind,
                    folder,
                    report,
                    base_model=config.base_model,
                    decoder=student.default_decoder(""),
                    recipe=recipe,
                    eval_run_id=run_id,
                    cv=cv,
                ),
                report,
            )
        )
    base = load_student(config.base_model, None)
    for decoder in config.bootstrap_decoders:
        name = f"base-{decoder}"
        # The zero-shot base is never gated on latency: one timing per request is enough (it decodes slowly).
        report = evaluate_student(
            base,
            rows,
            predictor=base.name,
            dataset=f"{data.name}/valid",
            config=config,
            decoder=decoder,
            latency_repeats=1,
        )
        run_id = log_valid(
            report,
            cycle=0,
            name=name,
            role="base",
            extra={"base_model": config.base_model, "decoder": decoder},
        )
        record = register_candidate(
            0,
            name,
            None,
            report,
            base_model=config.base_model,
            decoder=decoder,
            recipe=None,
            eval_run_id=run_id,
        )
        entries.append((record, report))

    def score(entry: tuple[ChampionRecord, EvalReport]) -> float:
        value = getattr(entry[1], config.gate.metric)
        return float("inf") if value is None else value

    best, best_report = min(entries, key=score)
    champion = promote(0, best.candidate)
    append_history(
        CycleHistoryEntry(
            cycle=0,
            status="baseline",
            description=f"cycle 0: {best.candidate} is the best on valid of the base model and the baselines; champion",
            candidates=[
                CandidateOutcome(
                    name=record.candidate,
                    recipe_key="cycle0",
                    description=record.recipe.label()
                    if record.recipe
                    else f"zero-shot {record.base_model} [{record.decoder}]",
                    status="promoted" if record.candidate == best.candidate else "rejected",
                    cv_mae=record.cv.vector_mae if record.cv else None,
                    cv_mae_rounded=record.cv.vector_mae_rounded if record.cv else None,
                    valid_mae=report.vector_mae,
                    valid_mae_rounded=report.vector_mae_rounded,
                )
                for record, report in entries
            ],
            candidate_mae=best_report.vector_mae,
            candidate_mae_rounded=best_report.vector_mae_rounded,
            wall_s=round(time.perf_counter() - started, 1),
            started_at=started_at,
            finished_at=now_iso(),
        )
    )
    return champion
