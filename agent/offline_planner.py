"""The offline planner: deterministic rules over the evidence read through the MCP tools.

Default backend when no `MISTRAL_API_KEY` is set, and the fallback of model-backed planners. It decides
from cross-validated figures of the training split only (the champion's out-of-fold errors); validation
figures are the gate's. Every decision gets a one-line reason. The rules:

Focus dims (what the teacher's pairs and the gate's focus check aim at)
| step        | rule                                                                                       |
|-------------|--------------------------------------------------------------------------------------------|
| ranking     | the diagnose stage's (`PlanningContext.diagnosis`: the champion's out-of-fold errors on     |
|             | train, ratio to the constant then failures), as it is. Without one (a planner run outside   |
|             | the loop), the same rule over the snapshot's figures:                                       |
| score       | per dim, ratio = champion CV MAE / train-median constant CV MAE (`champion_cv`,            |
|             | `baselines_cv`); without a champion CV record, the constant's own per-dim CV MAE; without   |
|             | the constant's, the champion's own.                                                         |
| order       | ratio rounded to 2 decimals (desc), then failure count (desc), then the DIMS order.          |
|             | Failure count of a dim = worst out-of-fold rows whose abs error on that dim is >= 2.        |
| learnable   | a dim whose every learnability slice says `learnable=False` is skipped (unless all are).   |
| how many    | the top dim, plus the next ones (3 at most) whose ratio is within 0.10 of the top one.      |
| buckets     | per focus dim, the distinct targets of failures with abs error >= 2 on it; when fewer       |
|             | than two, the extremes 0, 1, 2, 8, 9, 10.                                                   |

Augmentation (hard failures = worst out-of-fold rows with row MAE >= 1.5), never more than the capacity
| teacher_pairs = 60 + 30 * hard failures, at most what the teacher can write (0 without a teacher)    |
| replay_rows   = 20 + 10 * hard failures, at most what replay can make from the champion's worst rows |

Candidates: K single-lever moves from the incumbent recipe, never a recipe already judged
(`agent/search.py`); none left = the search space is exhausted. Finally the guardrails clip everything
(agent/guardrails.py).

Operator notes (`agent/operator_notes.py`): dims a note names replace the focus; levers a note prefers go
first, levers it says to leave alone are never proposed; a stop is answered (the loop ends the run after
the cycle); a note that asks to relax the gate is answered "not followed". Every open note gets a reply.
Memory (`agent/memory.py`): a lever rejected twice for the same focus without a promotion goes last.
"""

from __future__ import annotations

from agent.guardrails import apply_guardrails, clip_candidate
from agent.mcp_client import ToolSession
from agent.memory import demoted_levers, outcome_table
from agent.operator_notes import asked_focus, asked_levers, offline_reply, read_notes
from agent.planner import Evidence, PlanningContext, SearchExhausted, read_evidence
from agent.search import incumbent_spec, propose, tried_recipes, why_not_proposed
from tools.core.contracts import (
    AugmentationSpec,
    CandidateSpec,
    CyclePlan,
    Diagnosis,
    FailureCase,
    MetricSummary,
)
from tools.core.schema import DIMS, rank_dims_by_weakness

CONSTANT_BASELINE = "train-median"
FOCUS_RATIO_WINDOW = 0.10
MAX_FOCUS = 3
FAILURE_DIM_ERROR = 2.0
HARD_FAILURE_ROW_MAE = 1.5
EXTREME_BUCKETS = [0, 1, 2, 8, 9, 10]


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


def focus_from_diagnosis(diagnosis: Diagnosis, evidence: Evidence) -> tuple[list[str], str]:
    """The top of the diagnosis's ranking (learnable dims), within the ratio window."""
    ratios = {w.dim: w.weakness for w in diagnosis.weak_dims}
    counts = {w.dim: w.failures_off_by_2_plus for w in diagnosis.weak_dims}
    skipped = unlearnable_dims(evidence)
    learnable = [dim for dim in diagnosis.ranking if dim not in skipped]
    note = f"; skipped unlearnable {', '.join(sorted(skipped))}" if skipped else ""
    if not learnable:
        learnable, note = diagnosis.ranking, "; every dim flagged unlearnable, so learnability was ignored"
    top = ratios[learnable[0]]
    focus = [d for d in learnable if top - ratios[d] <= FOCUS_RATIO_WINDOW][:MAX_FOCUS]
    shown = ", ".join(f"{d} {ratios[d]:.2f} ({counts[d]} failures)" for d in focus)
    return focus, f"diagnosis ({diagnosis.evidence}), weakest first: {shown}{note}"


def choose_focus_dims(evidence: Evidence, diagnosis: Diagnosis | None = None) -> tuple[list[str], str]:
    if diagnosis is not None:
        return focus_from_diagnosis(diagnosis, evidence)
    snapshot = evidence.snapshot
    constant = snapshot.baselines_cv.get(CONSTANT_BASELINE)
    model: MetricSummary | None = snapshot.champion_cv or constant
    if model is None:
        return [DIMS[0]], "no cross-validated figures in the snapshot: first dim by default"
    reference = (CONSTANT_BASELINE, constant) if constant is not None and model is not constant else None
    ratios: dict[str, float] = {}
    for dim in DIMS:
        denominator = reference[1].per_dim_mae.get(dim) if reference else None
        mae = model.per_dim_mae.get(dim, 0.0)
        ratios[dim] = mae / denominator if denominator else mae
    counts = failure_counts(snapshot.top_failures)
    ranked = rank_dims_by_weakness(ratios, counts)
    skipped = unlearnable_dims(evidence)
    learnable = [dim for dim in ranked if dim not in skipped]
    note = f"; skipped unlearnable {', '.join(sorted(skipped))}" if skipped else ""
    if not learnable:
        learnable, note = ranked, "; every dim flagged unlearnable, so learnability was ignored"
    top = ratios[learnable[0]]
    focus = [d for d in learnable if top - ratios[d] <= FOCUS_RATIO_WINDOW][:MAX_FOCUS]
    if reference:
        versus = f"CV MAE / {reference[0]} CV MAE"
    else:
        versus = "champion CV MAE" if snapshot.champion_cv else f"{CONSTANT_BASELINE} CV MAE"
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
    capacity = evidence.capacity
    teacher_pairs = min(60 + 30 * hard, capacity.max_teacher_pairs)
    replay_rows = min(20 + 10 * hard, capacity.max_replay_rows)
    spec = AugmentationSpec(
        teacher_pairs=teacher_pairs, replay_rows=replay_rows, target_buckets=choose_buckets(focus, failures)
    )
    reason = (
        f"{hard} hard failures of {len(failures)} → {teacher_pairs} teacher pairs (teacher {capacity.teacher}, "
        f"at most {capacity.max_teacher_pairs}), {replay_rows} replay rows (at most {capacity.max_replay_rows})"
    )
    return spec, reason


def planning_inputs(context: PlanningContext) -> str:
    """Which stage outputs the plan rests on (the decision log shows it)."""
    snapshot = (
        "the snapshot stage's reading" if context.snapshot else "the evidence tools, read by the planner"
    )
    ranking = "the diagnose stage's weak-dim ranking" if context.diagnosis else "no diagnosis (ranked here)"
    return f"{snapshot}; {ranking}"


def plan_from_evidence(evidence: Evidence, cycle: int, context: PlanningContext) -> CyclePlan:
    """K untried candidates around the incumbent; `SearchExhausted` when there is none."""
    asks = read_notes(context.operator_notes)
    focus, focus_reason = choose_focus_dims(evidence, context.diagnosis)
    if noted := [d for d in asked_focus(asks) if d in DIMS][:MAX_FOCUS]:
        focus_reason = f"asked by an operator note: {', '.join(noted)} (the rules would pick {focus_reason})"
        focus = noted
    augmentation, augmentation_reason = choose_augmentation(focus, evidence)
    champion = evidence.champion
    incumbent = incumbent_spec(
        champion.recipe if champion else None,
        champion.hparams if champion else None,
        context.default_hparams,
        context.default_options,
        context.folds,
        augmentation,
        focus,
    )
    tried = tried_recipes(evidence.history)
    prefer, avoid = asked_levers(asks)
    not_again = demoted_levers(outcome_table(evidence.history), focus)

    def clip(spec: CandidateSpec) -> CandidateSpec:
        return clip_candidate(spec, evidence.capacity, [])

    candidates = propose(
        incumbent,
        tried,
        context.candidates,
        cycle,
        evidence.capacity,
        context.default_options,
        clip=clip,
        incumbent_is_champion=champion is not None and champion.recipe == incumbent.student,
        prefer=prefer,
        avoid=avoid,
        demote={row.lever for row in not_again},
    )
    if not candidates:
        raise SearchExhausted(
            f"every move from the incumbent ({incumbent.student.label()}) was tried: {len(tried)} recipes judged"
        )
    reasons = {
        "evidence": planning_inputs(context),
        "focus_dims": focus_reason,
        "augmentation": augmentation_reason,
        "search": f"{len(candidates)} untried moves from {incumbent.describe()} ({len(tried)} recipes judged before)",
    }
    if not_again:
        reasons["memory"] = "moved last (rejected twice for this focus): " + "; ".join(
            r.line() for r in not_again
        )
    plan = CyclePlan(cycle=cycle, candidates=candidates, reasons=reasons, planner="offline")
    why_not = {
        lever: why_not_proposed(lever, incumbent, tried, evidence.capacity, context.default_options, clip)
        for lever in prefer
    }
    plan.note_replies = [offline_reply(ask, plan, why_not) for ask in asks]
    return apply_guardrails(plan, evidence.capacity)


class OfflinePlanner:
    """Rules, not a model: reads the evidence through the tools, then `plan_from_evidence`."""

    name = "offline"

    async def plan(self, session: ToolSession, cycle: int, context: PlanningContext) -> CyclePlan:
        evidence = await read_evidence(session, context)
        return plan_from_evidence(evidence, cycle, context)
