"""The per-cycle decision record (decision.json) and its human rendering (decision_log.md, jinja2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from loop.gate import CycleGate, GateResult
from tools.core.atomic import atomic_write_json, atomic_write_text
from tools.core.contracts import CyclePlan, HParams, LearnabilitySlice, ModelRecord
from tools.core.prompting import render
from tools.core.steering import Approval
from tools.evaluation.metrics import EvalReport


class ToolCallSummary(BaseModel):
    name: str
    arguments: dict[str, Any]
    is_error: bool
    latency_ms: float


class WeakDim(BaseModel):
    """A dim as the diagnosis saw it: the champion's out-of-fold MAE on train against the constant's."""

    dim: str
    champion_cv_mae: float | None
    constant_cv_mae: float | None
    focus: bool


class HParamChange(BaseModel):
    name: str
    before: Any
    after: Any


class AugmentSummary(BaseModel):
    """What a candidate's augmentation asked for and what was really used."""

    teacher: str
    teacher_pairs_requested: int
    n_generated: int
    replay_requested: int
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


class CandidateRow(BaseModel):
    """One candidate of the cycle, from plan to verdict."""

    name: str
    description: str
    reason: str
    status: Literal["winner", "promoted", "rejected", "pruned", "crashed", "not_trained"]
    note: str = ""
    hparam_patch: list[HParamChange]
    augmentation: AugmentSummary | None
    cv_mae: float | None
    cv_mae_rounded: float | None
    valid: TableRow | None
    p_value: float | None
    holm_threshold: float | None
    failed_checks: list[str]
    member_valid_mae: list[float]
    training_wall_s: float | None

    @property
    def seed_spread(self) -> float | None:
        values = self.member_valid_mae
        return max(values) - min(values) if len(values) > 1 else None


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
    candidates: list[CandidateRow]
    winner: str | None
    table: list[TableRow]
    gate: CycleGate
    winner_gate: GateResult | None
    champion_before: ModelRecord
    champion_after: ModelRecord
    approval: Approval | None = None


def hparam_patch(before: HParams, after: HParams) -> list[HParamChange]:
    old = before.model_dump()
    return [
        HParamChange(name=k, before=old[k], after=v) for k, v in after.model_dump().items() if old[k] != v
    ]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def write_decision(record: DecisionRecord, cycle_dir: Path) -> None:
    """The rendering first, the record last: decision.json on disk means both are complete."""
    atomic_write_text(cycle_dir / "decision_log.md", render("decision_log.md.j2", r=record, fmt=_fmt) + "\n")
    atomic_write_json(cycle_dir / "decision.json", record)
