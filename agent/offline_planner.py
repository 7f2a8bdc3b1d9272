"""The offline planner: deterministic rules over the evidence read through the MCP tools.

Default backend when no `MISTRAL_API_KEY` is set, and the fallback of model-backed planners.
Every decision gets a one-line reason in `plan.reasons`. The rules, in the order they apply:

Focus dims
| step        | rule                                                                                       |
|-------------|--------------------------------------------------------------------------------------------|
| score       | per dim, ratio = champion per-dim MAE / constant-baseline per-dim MAE (the snapshot's       |
|             | `train-median` / `mean` / `constant` baseline; else the base model; else ratio = MAE).      |
|             | Champion = snapshot champion metrics, else base metrics. Higher ratio = relatively worse.   |
| order       | ratio rounded to 2 decimals (desc), then failure count (desc), then the DIMS order.          |
|             | Failure count of a dim = top failures whose abs error on that dim is >= 2.                  |
| learnable   | a dim whose every learnability slice says `learnable=False` is skipped (unless all are).   |
| how many    | the top dim, plus the next ones (3 at most) whose ratio is within 0.10 of the top one.      |
| buckets     | per focus dim, the distinct targets of top failures with abs error >= 2 on it; when fewer   |
|             | than two, the extremes 0, 1, 2, 8, 9, 10.                                                   |

Augmentation (hard failures = top failures that did not parse or have row MAE >= 1.5)
| new_pairs    = 60 + 30 * hard failures, within 60 .. 600                                            |
| replay_ratio = 0.10 + 0.03 * hard failures, within 0.10 .. 0.50                                      |

Hyperparameters (start, then each rule that fires, in order)
| H0 start    | last finished cycle promoted → its hparams; rejected or crashed → its hparams; no finished |
|             | cycle → the champion's cycle hparams, else the context defaults.                           |
| H1 crash    | last cycle crashed → batch_size / 2, grad_accum * 2 (same effective batch, less memory).   |
| H2 worse    | last cycle rejected with candidate MAE > champion MAE + 0.03 → learning_rate * 0.5.        |
| H3 close    | last cycle rejected within 0.03 of the champion (underfit, not noise-free) → epochs + 1.   |
| H4 json     | champion JSON validity < 0.98 → learning_rate * 0.6 and epochs + 1 (the original rule).   |
| H5 stall    | last two finished candidates rejected, or the champion not better than the constant       |
|             | baseline → lora_r doubled while below 32 (16 → 32), lora_alpha = 2 * r.                  |
| H6 no repeat| a configuration identical to a rejected cycle's is moved, first of: lr * 0.5, epochs + 0.5, |
|             | next larger rank, that is new and inside the guardrails.                                   |
Finally the guardrails clip everything (agent/guardrails.py).
"""

from __future__ import annotations

from collections.abc import Callable

from agent.guardrails import LORA_RANKS, apply_guardrails, clip_hparams
from agent.mcp_client import ToolSession
from agent.planner import Evidence, PlanningContext, read_evidence, repeated_rejected_cycle
from tools.core.contracts import (
    AugmentationSpec,
    CycleHistoryEntry,
    CyclePlan,
    FailureCase,
    HParams,
    MetricSummary,
)
from tools.core.schema import DIMS

CONSTANT_BASELINE_MARKERS = ("median", "mean", "constant")
RATIO_TIE_DECIMALS = 2
FOCUS_RATIO_WINDOW = 0.10
MAX_FOCUS = 3
FAILURE_DIM_ERROR = 2.0
HARD_FAILURE_ROW_MAE = 1.5
EXTREME_BUCKETS = [0, 1, 2, 8, 9, 10]
CLOSE_MAE_MARGIN = 0.03
JSON_VALIDITY_FLOOR = 0.98
STALL_RANK_CEILING = 32


def _round_lr(value: float) -> float:
    return float(f"{value:.3g}")


def constant_baseline(snapshot_baselines: dict[str, MetricSummary]) -> tuple[str, MetricSummary] | None:
    for name, metrics in snapshot_baselines.items():
        if any(marker in name.lower() for marker in CONSTANT_BASELINE_MARKERS):
            return name, metrics
    return None


def dim_errors(failure: FailureCase) -> list[float] | None:
    if failure.prediction is None:
        return None
    return [abs(p - t) for p, t in zip(failure.prediction, failure.target, strict=True)]


def failure_counts(failures: list[FailureCase]) -> dict[str, int]:
    counts = dict.fromkeys(DIMS, 0)
    for failure in failures:
        for dim, error in zip(DIMS, dim_errors(failure) or [], strict=False):
            if error >= FAILURE_DIM_ERROR:
                counts[dim] += 1
    return counts


def hard_failure_count(failures: list[FailureCase]) -> int:
    return sum(1 for f in failures if f.prediction is None or (f.row_mae or 0.0) >= HARD_FAILURE_ROW_MAE)


def unlearnable_dims(evidence: Evidence) -> set[str]:
    by_dim: dict[str, list[bool]] = {}
    for piece in evidence.learnability:
        by_dim.setdefault(piece.dim, []).append(piece.learnable)
    return {dim for dim, flags in by_dim.items() if not any(flags)}


def choose_focus_dims(evidence: Evidence) -> tuple[list[str], str]:
    snapshot = evidence.snapshot
    model = snapshot.champion_metrics or snapshot.base_metrics
    if model is None:
        return [DIMS[0]], "no evaluation in the snapshot: first dim by default"
    reference = constant_baseline(snapshot.baselines)
    if reference is None and snapshot.base_metrics is not None and model is not snapshot.base_metrics:
        reference = ("base model", snapshot.base_metrics)
    ratios: dict[str, float] = {}
    for dim in DIMS:
        denominator = reference[1].per_dim_mae.get(dim) if reference else None
        mae = model.per_dim_mae.get(dim, 0.0)
        ratios[dim] = mae / denominator if denominator else mae
    counts = failure_counts(snapshot.top_failures)
    ranked = sorted(DIMS, key=lambda d: (-round(ratios[d], RATIO_TIE_DECIMALS), -counts[d], DIMS.index(d)))
    skipped = unlearnable_dims(evidence)
    learnable = [dim for dim in ranked if dim not in skipped]
    note = f"; skipped unlearnable {', '.join(sorted(skipped))}" if skipped else ""
    if not learnable:
        learnable, note = ranked, "; every dim flagged unlearnable, so learnability was ignored"
    top = ratios[learnable[0]]
    focus = [d for d in learnable if top - ratios[d] <= FOCUS_RATIO_WINDOW][:MAX_FOCUS]
    versus = f"MAE / {reference[0]} MAE" if reference else "MAE"
    shown = ", ".join(f"{d} {ratios[d]:.2f} ({counts[d]} failures)" for d in focus)
    return focus, f"highest {versus}: {shown}{note}"


def choose_buckets(focus: list[str], failures: list[FailureCase]) -> dict[str, list[int]]:
    buckets: dict[str, list[int]] = {}
    for dim in focus:
        index = DIMS.index(dim)
        values = {
            f.target[index]
            for f in failures
            if (errors := dim_errors(f)) and errors[index] >= FAILURE_DIM_ERROR
        }
        buckets[dim] = sorted(values) if len(values) >= 2 else list(EXTREME_BUCKETS)
    return buckets


def choose_augmentation(focus: list[str], evidence: Evidence) -> tuple[AugmentationSpec, str]:
    failures = evidence.snapshot.top_failures
    hard = hard_failure_count(failures)
    new_pairs = min(max(60 + 30 * hard, 60), 600)
    replay_ratio = round(min(max(0.10 + 0.03 * hard, 0.10), 0.50), 2)
    spec = AugmentationSpec(
        new_pairs=new_pairs, replay_ratio=replay_ratio, target_buckets=choose_buckets(focus, failures)
    )
    reason = f"{hard} hard failures of {len(failures)} → {new_pairs} new pairs, replay ratio {replay_ratio}"
    return spec, reason


def _finished(history: list[CycleHistoryEntry]) -> list[CycleHistoryEntry]:
    return [
        e for e in sorted(history, key=lambda e: e.cycle) if e.status in ("promoted", "rejected", "crashed")
    ]


def _start_hparams(evidence: Evidence, context: PlanningContext) -> tuple[HParams, str]:
    finished = _finished(evidence.history)
    if finished and finished[-1].hparams is not None:
        last = finished[-1]
        return last.hparams, f"start from cycle {last.cycle} ({last.status})"
    champion_cycle = evidence.champion.cycle if evidence.champion else None
    for entry in evidence.history:
        if entry.cycle == champion_cycle and entry.hparams is not None:
            return entry.hparams, f"start from the champion's cycle {entry.cycle}"
    return context.default_hparams, "no finished cycle: start from the defaults"


def choose_hparams(evidence: Evidence, context: PlanningContext) -> tuple[HParams, dict[str, str]]:
    hparams, start_reason = _start_hparams(evidence, context)
    values = hparams.model_dump()
    reasons: dict[str, str] = {"hparams": start_reason}
    finished = _finished(evidence.history)
    last = finished[-1] if finished else None

    if last and last.status == "crashed":
        values["batch_size"] = max(1, values["batch_size"] // 2)
        values["grad_accum"] = min(8, values["grad_accum"] * 2)
        reasons["batch_size"] = f"cycle {last.cycle} crashed → halve batch size, double grad accumulation"
    if (
        last
        and last.status == "rejected"
        and last.candidate_mae is not None
        and last.champion_mae is not None
    ):
        gap = last.candidate_mae - last.champion_mae
        if gap > CLOSE_MAE_MARGIN:
            values["learning_rate"] = _round_lr(values["learning_rate"] * 0.5)
            reasons["learning_rate"] = (
                f"cycle {last.cycle} rejected, candidate MAE {last.candidate_mae:.3f} worse than champion "
                f"{last.champion_mae:.3f} → halve lr to {values['learning_rate']:g}"
            )
        else:
            values["epochs"] = values["epochs"] + 1
            reasons["epochs"] = (
                f"cycle {last.cycle} rejected within {CLOSE_MAE_MARGIN} of the champion "
                f"({last.candidate_mae:.3f} vs {last.champion_mae:.3f}) → underfit, +1 epoch"
            )

    metrics = evidence.snapshot.champion_metrics or evidence.snapshot.base_metrics
    if metrics is not None and metrics.json_valid_rate < JSON_VALIDITY_FLOOR:
        values["learning_rate"] = _round_lr(values["learning_rate"] * 0.6)
        values["epochs"] = values["epochs"] + 1
        reasons["json_validity"] = (
            f"JSON validity {metrics.json_valid_rate:.3f} < {JSON_VALIDITY_FLOOR} → lr x0.6, +1 epoch"
        )

    candidates = [e for e in finished if e.status != "crashed"]
    stalled_history = len(candidates) >= 2 and all(e.status == "rejected" for e in candidates[-2:])
    reference = constant_baseline(evidence.snapshot.baselines)
    not_beating_constant = (
        metrics is not None
        and reference is not None
        and metrics.vector_mae is not None
        and reference[1].vector_mae is not None
        and metrics.vector_mae >= reference[1].vector_mae
    )
    if (stalled_history or not_beating_constant) and values["lora_r"] < STALL_RANK_CEILING:
        old_rank = values["lora_r"]
        values["lora_r"] = min(old_rank * 2, STALL_RANK_CEILING)
        values["lora_alpha"] = 2 * values["lora_r"]
        why = (
            "last two candidates rejected" if stalled_history else f"champion not better than {reference[0]}"
        )
        reasons["lora_r"] = f"{why} → rank {old_rank} → {values['lora_r']}, alpha = 2r"

    chosen = clip_hparams(HParams(**values), [])
    repeated = repeated_rejected_cycle(chosen, evidence.history)
    if repeated is not None:
        chosen, move = _move_off_rejected(chosen, evidence)
        reasons["no_repeat"] = f"identical to rejected cycle {repeated} → {move}"
    return chosen, reasons


def _move_off_rejected(hparams: HParams, evidence: Evidence) -> tuple[HParams, str]:
    next_rank = next((r for r in LORA_RANKS if r > hparams.lora_r), hparams.lora_r)
    moves: list[tuple[str, Callable[[HParams], HParams]]] = [
        ("lr x0.5", lambda h: h.model_copy(update={"learning_rate": _round_lr(h.learning_rate * 0.5)})),
        ("+0.5 epoch", lambda h: h.model_copy(update={"epochs": h.epochs + 0.5})),
        ("next rank", lambda h: h.model_copy(update={"lora_r": next_rank, "lora_alpha": 2 * next_rank})),
    ]
    for label, move in moves:
        moved = move(hparams)
        inside = clip_hparams(moved, []) == moved
        if inside and repeated_rejected_cycle(moved, evidence.history) is None:
            return moved, f"{label} (lr {moved.learning_rate:g}, epochs {moved.epochs:g}, r {moved.lora_r})"
    # Every single move is taken or out of range: combine them (lr floor permitting, this is new).
    moved = clip_hparams(moves[2][1](moves[1][1](moves[0][1](hparams))), [])
    return moved, f"lr x0.5, +0.5 epoch and next rank (lr {moved.learning_rate:g}, r {moved.lora_r})"


def plan_from_evidence(evidence: Evidence, cycle: int, context: PlanningContext) -> CyclePlan:
    focus, focus_reason = choose_focus_dims(evidence)
    augmentation, augmentation_reason = choose_augmentation(focus, evidence)
    hparams, hparam_reasons = choose_hparams(evidence, context)
    plan = CyclePlan(
        cycle=cycle,
        focus_dims=focus,  # type: ignore[arg-type]
        augmentation=augmentation,
        hparams=hparams,
        reasons={"focus_dims": focus_reason, "augmentation": augmentation_reason, **hparam_reasons},
        planner="offline",
    )
    return apply_guardrails(plan)


class OfflinePlanner:
    """Rules, not a model: reads the evidence through the tools, then `plan_from_evidence`."""

    name = "offline"

    async def plan(self, session: ToolSession, cycle: int, context: PlanningContext) -> CyclePlan:
        evidence = await read_evidence(session, context)
        return plan_from_evidence(evidence, cycle, context)
