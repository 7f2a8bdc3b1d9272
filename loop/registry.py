"""The champion registry under artifacts/registry/: every evaluated candidate, and which one is champion.

registry/champion.json                    the current champion (ModelRecord), replaced atomically
registry/cycle_N/NAME/student/            candidate NAME's student folder (stack, ensemble, baseline, ...)
registry/cycle_N/NAME/record.json         its ModelRecord-shaped record and whether it was ever promoted
registry/cycle_N/NAME/eval_valid.json     its full EvalReport on the frozen validation rows (the gate reads it)

Cycle 0 registers the zero-shot base model (one entry per decoder) and the reference baselines; its best on
valid becomes the first champion. Paths in records are relative to the artifacts root, so an artifacts folder
can be moved or copied whole.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from tools.core.atomic import atomic_write_json
from tools.core.contracts import HParams, MetricSummary, ModelRecord, StudentRecipe
from tools.core.paths import artifacts_dir, registry_dir
from tools.core.records import champion_path, read_champion
from tools.evaluation.baselines import REFERENCE_BASELINES
from tools.evaluation.metrics import EvalReport
from tools.student.folds import OOF_FILE, OutOfFold

RECORD_FILE = "record.json"
EVAL_FILE = "eval_valid.json"


class CandidateRecord(BaseModel):
    record: ModelRecord
    promoted: bool


def metric_summary(report: EvalReport) -> MetricSummary:
    return MetricSummary(
        vector_mae=report.vector_mae,
        vector_mae_rounded=report.vector_mae_rounded,
        mse_norm=report.mse_norm,
        r2=report.r2,
        json_valid_rate=report.json_valid_rate,
        fallback_rate=report.fallback_rate,
        p50_latency_ms=report.p50_latency_ms,
        p95_latency_ms=report.p95_latency_ms,
        per_dim_mae=report.per_dim_mae,
        n_rows=report.n_rows,
    )


def entry_dir(cycle: int, name: str) -> Path:
    return registry_dir() / f"cycle_{cycle}" / name


def register_candidate(
    cycle: int,
    name: str,
    student_dir: Path | None,
    report: EvalReport,
    *,
    base_model: str,
    decoder: str,
    recipe: StudentRecipe | None,
    eval_run_id: str | None,
    hparams: HParams | None = None,
    cv: EvalReport | None = None,
) -> ModelRecord:
    """Copy a candidate's student and eval report into the registry (idempotent on resume)."""
    entry = entry_dir(cycle, name)
    stored: Path | None = None
    if student_dir is not None:
        stored = entry / "student"
        if stored.exists():
            shutil.rmtree(stored)
        shutil.copytree(student_dir, stored, ignore=shutil.ignore_patterns("checkpoint*"))
    atomic_write_json(entry / EVAL_FILE, report)
    record = ModelRecord(
        cycle=cycle,
        candidate=name,
        student_path=str(stored.relative_to(artifacts_dir())) if stored else None,
        decoder=decoder,
        base_model=base_model,
        recipe=recipe,
        hparams=hparams,
        eval_run_id=eval_run_id,
        metrics=metric_summary(report),
        cv=metric_summary(cv) if cv is not None else None,
    )
    previous = entry / RECORD_FILE
    promoted = previous.exists() and CandidateRecord.model_validate_json(previous.read_text()).promoted
    atomic_write_json(previous, CandidateRecord(record=record, promoted=promoted))
    return record


def registered(cycle: int, name: str) -> CandidateRecord:
    path = entry_dir(cycle, name) / RECORD_FILE
    if not path.exists():
        raise FileNotFoundError(f"cycle {cycle} has no registered candidate {name!r} in {registry_dir()}")
    return CandidateRecord.model_validate_json(path.read_text())


def registered_report(cycle: int, name: str) -> EvalReport:
    return EvalReport.model_validate_json((entry_dir(cycle, name) / EVAL_FILE).read_text())


def current_champion() -> ModelRecord | None:
    return read_champion()


def champion_report() -> EvalReport:
    champion = current_champion()
    if champion is None:
        raise FileNotFoundError("no champion yet: run cycle 0 first (python -m loop.run --cycle 0)")
    return registered_report(champion.cycle, champion.candidate)


def champion_oof(champion: ModelRecord | None = None) -> OutOfFold | None:
    """The champion's out-of-fold predictions on the training split (None for the untouched base model)."""
    champion = champion or current_champion()
    folder = champion.student_dir() if champion else None
    if folder is None or not (folder / OOF_FILE).is_file():
        return None
    return OutOfFold.model_validate_json((folder / OOF_FILE).read_text())


def baseline_reports() -> dict[str, EvalReport]:
    """The reference baselines scored at cycle 0 (what every candidate must beat)."""
    return {
        kind: registered_report(0, kind)
        for kind in REFERENCE_BASELINES
        if (entry_dir(0, kind) / EVAL_FILE).exists()
    }


def promote(cycle: int, name: str) -> ModelRecord:
    """Make a registered candidate the champion (atomic pointer swap; repeating it changes nothing)."""
    candidate = registered(cycle, name)
    atomic_write_json(
        entry_dir(cycle, name) / RECORD_FILE, CandidateRecord(record=candidate.record, promoted=True)
    )
    atomic_write_json(champion_path(), candidate.record)
    return candidate.record


def promoted_candidate(cycle: int) -> str:
    """The candidate of `cycle` that was once champion."""
    folder = registry_dir() / f"cycle_{cycle}"
    names = sorted(p.name for p in folder.glob("*") if (p / RECORD_FILE).is_file()) if folder.is_dir() else []
    for name in names:
        if registered(cycle, name).promoted:
            return name
    if not names:
        raise FileNotFoundError(f"cycle {cycle} has no registered candidate in {registry_dir()}")
    raise ValueError(f"cycle {cycle} was never promoted; only former champions can be restored")


def rollback(cycle: int) -> ModelRecord:
    """Restore the champion of an earlier cycle; only cycles that were once promoted qualify."""
    return promote(cycle, promoted_candidate(cycle))
