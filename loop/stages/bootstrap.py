"""Cycle 0: the first champion is the best on valid of the zero-shot base model (each decoder) and the
reference baselines (train-median constant, TF-IDF ridge). Baselines are first-class predictors: fitted on
the training split (with their out-of-fold CV estimate), registered, served like any student.

The baselines are scored first (seconds); each zero-shot decoder is then judged on growing subsamples of the
validation rows against the best baseline and stopped as soon as it is surely worse
(`tools.evaluation.sequential`, error budget 1 - `gate.prune_confidence`). A stopped decoder's report covers
the rows it was scored on, and its note says so ("scored on n of N rows, stopped: ..."): on the console, in
the history and in the report. A decoder that could win is scored on every row."""

from __future__ import annotations

import sys
import time

from loop.config import LoopConfig
from loop.history import append_history
from loop.registry import promote, register_candidate
from loop.stages.inputs import dataset, valid_rows
from loop.stages.scoring import cv_report, evaluate_student, log_cv, log_valid, single_request_latency
from loop.state import now_iso
from tools.core.contracts import CandidateOutcome, CycleHistoryEntry, ModelRecord, StudentRecipe
from tools.core.paths import cycle_dir
from tools.evaluation.baselines import REFERENCE_BASELINES
from tools.evaluation.metrics import EvalReport
from tools.evaluation.sequential import evaluate_sequentially
from tools.student.recipes import train_recipe

# Rows of the first look at a zero-shot decoder; each later look doubles them (tools.evaluation.sequential).
# Eight rows: enough for the exact valid-rate bound and a clear paired gap, half the cost of sixteen.
FIRST_LOOK_ROWS = 8


def bootstrap_champion(config: LoopConfig) -> ModelRecord:
    from tools.student.interface import load_student

    started = time.perf_counter()
    started_at = now_iso()
    data = dataset(config)
    rows = valid_rows(config, data)
    out = cycle_dir(0) / "candidates"
    entries: list[tuple[ModelRecord, EvalReport]] = []
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
        _say(f"{kind}: valid MAE {_fmt(report.vector_mae)} on {report.n_rows} rows")
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
    baselines_done = time.perf_counter() - started
    reference = min((report for _, report in entries), key=lambda r: _metric(r, config))
    _say(
        f"best baseline {reference.predictor} (valid MAE {_fmt(reference.vector_mae)}) after {baselines_done:.0f} s; "
        "the zero-shot decoders are judged against it on growing subsamples"
    )
    base = load_student(config.base_model, None) if config.bootstrap_decoders else None
    notes: dict[str, str] = {}
    stopped: set[str] = set()
    for decoder in config.bootstrap_decoders:
        name = f"base-{decoder}"
        began = time.perf_counter()
        scored = evaluate_sequentially(
            lambda texts, decoder=decoder: base.predict_batch(texts, decoder=decoder),
            rows,
            reference=reference,
            alpha=1 - config.gate.prune_confidence,
            rounded=config.gate.metric == "vector_mae_rounded",
            predictor=base.name,
            decoder=decoder,
            dataset=f"{data.name}/valid",
            first=FIRST_LOOK_ROWS,
            samples=config.gate.bootstrap_samples,
            seed=config.gate.seed,
            batch_size=config.eval_batch_size,
            min_valid_rate=config.gate.min_json_valid_rate,
        )
        report = scored.report
        if scored.stopped is None:
            # The zero-shot base is never gated on latency: one timing per request is enough (it decodes slowly).
            latency = single_request_latency(base, decoder, rows, config.latency_requests, 1)
            report = report.model_copy(update=latency)
            notes[name] = f"scored on all {report.n_rows} rows"
        else:
            notes[name] = scored.stopped.note()
            stopped.add(name)
        _say(
            f"{name}: valid MAE {_fmt(report.vector_mae)}, {notes[name]} ({time.perf_counter() - began:.0f} s)"
        )
        run_id = log_valid(
            report,
            cycle=0,
            name=name,
            role="base",
            extra={
                "base_model": config.base_model,
                "decoder": decoder,
                "rows_scored": report.n_rows,
                "stopped_early": scored.stopped is not None,
            },
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

    # A decoder stopped early is surely worse than a baseline: it is never the champion.
    best, best_report = min(
        (e for e in entries if e[0].candidate not in stopped),
        key=lambda e: _metric(e[1], config),
    )
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
                    else f"zero-shot {record.base_model} [{record.decoder}]; {notes[record.candidate]}",
                    status="promoted" if record.candidate == best.candidate else "rejected",
                    cv_mae=record.cv.vector_mae if record.cv else None,
                    cv_mae_rounded=record.cv.vector_mae_rounded if record.cv else None,
                    valid_mae=report.vector_mae,
                    valid_mae_rounded=report.vector_mae_rounded,
                    note=notes.get(record.candidate, ""),
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
    _say(
        f"champion {best.candidate} (valid MAE {_fmt(best_report.vector_mae)}); baselines in "
        f"{baselines_done:.0f} s, cycle 0 in {time.perf_counter() - started:.0f} s"
    )
    return champion


def _metric(report: EvalReport, config: LoopConfig) -> float:
    value = getattr(report, config.gate.metric)
    return float("inf") if value is None else value


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _say(line: str) -> None:
    """A console line (this runs in the MCP server: stdout is the protocol, stderr reaches the console)."""
    print(f"cycle 0: {line}", file=sys.stderr, flush=True)
