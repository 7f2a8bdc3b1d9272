"""What the console says about each stage (the stage table's console column): lines made from the stage's
typed result, printed by the driver."""

from __future__ import annotations

from loop.gate import CycleGate
from loop.stages.augment import AugmentResults
from loop.stages.candidate import EvaluationResults, TrainResults
from loop.stages.inputs import read_plan
from tools.core.contracts import CyclePlan, Diagnosis, ModelRecord
from tools.core.redaction import redact_text


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def bootstrap_announced(cycle: int) -> list[str]:
    return ["cycle 0: scoring the base model and the baselines on the validation split"]


def bootstrap_lines(cycle: int, champion: ModelRecord) -> list[str]:
    metrics = champion.metrics
    return [
        f"cycle 0: champion is {champion.candidate} (valid MAE {metrics.vector_mae:.3f} / "
        f"{metrics.vector_mae_rounded:.3f} rounded)"
    ]


def silent(cycle: int, result: object) -> list[str]:
    """A stage whose result the console does not repeat (its files and the cycle's table say it)."""
    return []


def diagnose_lines(cycle: int, diagnosis: Diagnosis) -> list[str]:
    weakest = ", ".join(
        f"{w.dim} {fmt(w.champion_cv_mae)} "
        f"(constant {fmt(w.constant_cv_mae)}, {w.failures_off_by_2_plus} hard failures)"
        for w in diagnosis.weak_dims[:3]
    )
    return [f"cycle {cycle}: weakest dims, out-of-fold on train: {weakest}"]


def plan_lines(cycle: int, plan: CyclePlan) -> list[str]:
    lines = [
        f"cycle {cycle}: plan by {plan.planner}: {len(plan.candidates)} candidates, focus {', '.join(plan.focus_dims)}"
    ]
    lines += [f"  {spec.name}: {spec.describe()} — {spec.reason}" for spec in plan.candidates]
    if plan.fallback_reason:  # may quote an upstream's error, which may echo a key
        lines.append(f"  (the rule planner decided: {redact_text(plan.fallback_reason)})")
    lines += [
        f"  note {reply.note_id}: {'followed' if reply.followed else 'NOT followed'} — "
        + redact_text(reply.reason)
        for reply in plan.note_replies
    ]
    return lines


def augment_lines(cycle: int, summaries: AugmentResults) -> list[str]:
    return [
        f"  {name}: teacher {s.teacher} {s.n_generated} of {s.teacher_pairs_requested} pairs, "
        f"replay {s.n_replay} of {s.replay_requested}, kept {s.n_kept}; training on {s.train_rows} rows"
        for name, s in summaries.root.items()
    ]


def train_announced(cycle: int) -> list[str]:
    return [f"cycle {cycle}: training {len(read_plan(cycle).candidates)} candidates as Ray tasks"]


def train_lines(cycle: int, results: TrainResults) -> list[str]:
    lines = []
    for name, r in results.root.items():
        cv = f"CV MAE {fmt(r.cv_mae)} / {fmt(r.cv_mae_rounded)}" if r.cv_mae is not None else ""
        lines.append(f"  {name}: {r.status} {cv} {r.note}".rstrip())
    return lines


def evaluate_lines(cycle: int, results: EvaluationResults) -> list[str]:
    lines = []
    for name, r in results.root.items():
        spread = r.member_valid_mae
        seeds = f"; seeds {min(spread):.3f}..{max(spread):.3f}" if len(spread) > 1 else ""
        lines.append(
            f"  {name}: valid MAE {fmt(r.vector_mae)} / {fmt(r.vector_mae_rounded)}, "
            f"p95 {r.p95_latency_ms:.0f} ms{seeds}"
        )
    return lines


def gate_lines(cycle: int, gate: CycleGate) -> list[str]:
    lines = [
        f"  {name}: gate {'PASS' if result.promoted else 'FAIL: ' + ', '.join(result.failed)}"
        for name, result in gate.candidates.items()
    ]
    return [*lines, f"cycle {cycle}: gate winner {gate.winner or 'none'}"]


def confirm_lines(cycle: int, gate: CycleGate) -> list[str]:
    return [f"cycle {cycle}: confirmation: {gate.confirm_note}"] if gate.winner else []
