"""The per-cycle decision record (decision.json) and its human rendering (decision_log.md, jinja2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from loop.gate import GateResult
from tools.core.atomic import atomic_write_json, atomic_write_text
from tools.core.contracts import ChampionRecord, CyclePlan, HParams, LearnabilitySlice
from tools.core.prompting import render
from tools.evaluation.metrics import EvalReport


class ToolCallSummary(BaseModel):
    name: str
    arguments: dict[str, Any]
    is_error: bool
    latency_ms: float


class WeakDim(BaseModel):
    dim: str
    champion_mae: float | None
    baseline_mae: float | None
    focus: bool


class HParamChange(BaseModel):
    name: str
    before: Any
    after: Any


class AugmentSummary(BaseModel):
    teacher: str
    n_generated: int
    n_replay: int
    n_kept: int
    train_rows: int
    dropped: dict[str, int]
    leaked_against_protected: int


class TableRow(BaseModel):
    predictor: str
    role: str
    n_rows: int
    vector_mae: float | None
    vector_mae_rounded: float | None
    mse_norm: float | None
    r2: float | None
    json_valid_rate: float
    p95_latency_ms: float
    per_dim_mae: dict[str, float]

    @classmethod
    def from_report(cls, role: str, report: EvalReport) -> TableRow:
        return cls(
            predictor=f"{report.predictor} [{report.decoder}]",
            role=role,
            n_rows=report.n_rows,
            vector_mae=report.vector_mae,
            vector_mae_rounded=report.vector_mae_rounded,
            mse_norm=report.mse_norm,
            r2=report.r2,
            json_valid_rate=report.json_valid_rate,
            p95_latency_ms=report.p95_latency_ms,
            per_dim_mae=report.per_dim_mae,
        )


class DecisionRecord(BaseModel):
    cycle: int
    started_at: str
    finished_at: str
    verdict: Literal["promoted", "rejected"]
    sources: list[ToolCallSummary]
    runs_read: list[str]
    weak_dims: list[WeakDim]
    learnability: list[LearnabilitySlice]
    plan: CyclePlan
    hparam_patch: list[HParamChange]
    augmentation: AugmentSummary
    training: dict[str, Any]
    table: list[TableRow]
    gate: GateResult
    champion_after: ChampionRecord


def hparam_patch(before: HParams, after: HParams) -> list[HParamChange]:
    old = before.model_dump()
    return [
        HParamChange(name=k, before=old[k], after=v) for k, v in after.model_dump().items() if old[k] != v
    ]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def write_decision(record: DecisionRecord, cycle_dir: Path) -> None:
    atomic_write_json(cycle_dir / "decision.json", record)
    atomic_write_text(cycle_dir / "decision_log.md", render("decision_log.md.j2", r=record, fmt=_fmt) + "\n")
