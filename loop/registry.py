"""The champion registry under artifacts/registry/.

registry/champion.json          the current champion (ChampionRecord), replaced atomically
registry/cycle_N/student/       every candidate's trained student (adapter / head), copied in
registry/cycle_N/record.json    its ChampionRecord-shaped record and whether it was promoted
registry/cycle_N/eval_valid.json  its full EvalReport on the frozen validation rows (the gate reads it)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from tools.core.atomic import atomic_write_json
from tools.core.contracts import ChampionRecord, MetricSummary
from tools.core.paths import registry_dir
from tools.evaluation.metrics import EvalReport


class CandidateRecord(BaseModel):
    record: ChampionRecord
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


def cycle_entry(cycle: int) -> Path:
    return registry_dir() / f"cycle_{cycle}"


def register_candidate(
    cycle: int, student_dir: Path | None, report: EvalReport, *, base_model: str, eval_run_id: str | None
) -> ChampionRecord:
    """Copy a candidate's student and eval report into the registry (idempotent on resume)."""
    entry = cycle_entry(cycle)
    stored: Path | None = None
    if student_dir is not None:
        stored = entry / "student"
        if stored.exists():
            shutil.rmtree(stored)
        shutil.copytree(student_dir, stored, ignore=shutil.ignore_patterns("checkpoint*", "checkpoints"))
    atomic_write_json(entry / "eval_valid.json", report)
    record = ChampionRecord(
        cycle=cycle,
        student_path=str(stored) if stored else None,
        base_model=base_model,
        eval_run_id=eval_run_id,
        metrics=metric_summary(report),
    )
    atomic_write_json(entry / "record.json", CandidateRecord(record=record, promoted=False))
    return record


def current_champion() -> ChampionRecord | None:
    path = registry_dir() / "champion.json"
    return ChampionRecord.model_validate_json(path.read_text()) if path.exists() else None


def champion_report() -> EvalReport:
    champion = current_champion()
    if champion is None:
        raise FileNotFoundError("no champion yet: run cycle 0 first (python -m loop.run --cycle 0)")
    return EvalReport.model_validate_json((cycle_entry(champion.cycle) / "eval_valid.json").read_text())


def promote(cycle: int) -> ChampionRecord:
    """Make cycle N's registered candidate the champion (atomic pointer swap)."""
    path = cycle_entry(cycle) / "record.json"
    if not path.exists():
        raise FileNotFoundError(f"cycle {cycle} has no registered candidate in {registry_dir()}")
    candidate = CandidateRecord.model_validate_json(path.read_text())
    atomic_write_json(path, CandidateRecord(record=candidate.record, promoted=True))
    atomic_write_json(registry_dir() / "champion.json", candidate.record)
    return candidate.record


def rollback(cycle: int) -> ChampionRecord:
    """Restore a champion of an earlier cycle; only cycles that were once promoted qualify."""
    path = cycle_entry(cycle) / "record.json"
    if not path.exists():
        raise FileNotFoundError(f"cycle {cycle} has no registered candidate in {registry_dir()}")
    if not CandidateRecord.model_validate_json(path.read_text()).promoted:
        raise ValueError(f"cycle {cycle} was never promoted; only former champions can be restored")
    return promote(cycle)
