"""Every model-written plan is checked against the evidence before it runs; one failed check and the rule
planner decides instead (the decision log names the check).

| check                        | passes when                                                              |
|------------------------------|--------------------------------------------------------------------------|
| focus_in_weak_dims           | every focus dim is among the diagnosis's weak dims (the top 3 of the     |
|                              | ranking by CV MAE / constant's, learnable dims first) or a dim an open   |
|                              | operator note asked for                                                  |
| hparams_in_bounds            | no hyperparameter had to be clipped into its range (agent/guardrails.py) |
| recipe_not_judged            | no candidate repeats a recipe the history already judged                 |
| augmentation_within_capacity | no teacher pairs or replay rows beyond what can really be made           |
| operator_notes               | no candidate moves a hyperparameter an open note said to leave alone     |

The guardrails clip a plan before this check sees it; a clip of a hyperparameter or of an augmentation
count is the evidence that the model asked for something out of range (`plan.clipped`).
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.guardrails import HPARAM_BOUNDS
from agent.offline_planner import CONSTANT_BASELINE, MAX_FOCUS, failure_counts, unlearnable_dims
from agent.operator_notes import LEVER_HPARAMS, NoteAsks, asked_focus, moved_hparams
from agent.planner import Evidence, PlanningContext
from agent.search import tried_recipes
from tools.core.contracts import CyclePlan, Diagnosis, EvidenceCheck, HParams
from tools.core.schema import DIMS, rank_dims_by_weakness

HPARAM_FIELDS = (*HPARAM_BOUNDS, "lora_r", "lora_alpha")
AUGMENTATION_FIELDS = ("teacher_pairs", "replay_rows")


def weak_dims(evidence: Evidence, diagnosis: Diagnosis | None = None) -> list[str]:
    """The diagnosis's weakest dims, learnable dims first, the top MAX_FOCUS: the diagnose stage's ranking
    when the loop hands it over, else the same rule (champion CV MAE over the constant's, hard failures on
    ties) over the snapshot."""
    skipped = unlearnable_dims(evidence)
    if diagnosis is not None:
        return ([d for d in diagnosis.ranking if d not in skipped] or diagnosis.ranking)[:MAX_FOCUS]
    snapshot = evidence.snapshot
    constant = snapshot.baselines_cv.get(CONSTANT_BASELINE)
    model = snapshot.champion_cv or constant
    if model is None:
        return list(DIMS)  # nothing to rank by: no dim can be called the wrong one
    ratios = {}
    for dim in DIMS:
        reference = constant.per_dim_mae.get(dim) if constant is not None and model is not constant else None
        mae = model.per_dim_mae.get(dim, 0.0)
        ratios[dim] = mae / reference if reference else mae
    ranked = rank_dims_by_weakness(ratios, failure_counts(snapshot.top_failures))
    learnable = [dim for dim in ranked if dim not in skipped] or ranked
    return learnable[:MAX_FOCUS]


def _clipped_fields(plan: CyclePlan, fields: Sequence[str]) -> list[str]:
    """Clip lines (`candidate a: lora_r 48 -> 32 (...)`) of the given fields."""
    return [line for line in plan.clipped if line.split(": ", 1)[-1].split(" ", 1)[0] in fields]


def check_plan(
    plan: CyclePlan, evidence: Evidence, context: PlanningContext, asks: Sequence[NoteAsks]
) -> list[EvidenceCheck]:
    weak = weak_dims(evidence, context.diagnosis)
    allowed = weak + [d for d in asked_focus(asks) if d not in weak]
    off = sorted({d for spec in plan.candidates for d in spec.focus_dims if d not in allowed})
    judged = tried_recipes(evidence.history)
    repeats = [spec.name for spec in plan.candidates if spec.recipe_key() in judged]
    hparam_clips = _clipped_fields(plan, HPARAM_FIELDS)
    augmentation_clips = _clipped_fields(plan, AUGMENTATION_FIELDS)
    champion = evidence.champion
    reference: HParams = (
        champion.hparams if champion and champion.hparams else None
    ) or context.default_hparams
    left_alone = {LEVER_HPARAMS[lever] for ask in asks for lever in ask.avoid if lever in LEVER_HPARAMS}
    moved = sorted(
        f"{spec.name} moves {name}"
        for spec in plan.candidates
        for name in moved_hparams(spec, reference) & left_alone
    )
    return [
        EvidenceCheck(
            name="focus_in_weak_dims",
            passed=not off,
            detail=f"focus {', '.join(plan.focus_dims)}; weak dims {', '.join(weak)}"
            + (f"; asked by notes {', '.join(asked_focus(asks))}" if asked_focus(asks) else "")
            + (f"; not weak: {', '.join(off)}" if off else ""),
        ),
        EvidenceCheck(
            name="hparams_in_bounds",
            passed=not hparam_clips,
            detail="; ".join(hparam_clips) or "every hyperparameter within its range",
        ),
        EvidenceCheck(
            name="recipe_not_judged",
            passed=not repeats,
            detail=f"already judged: {', '.join(repeats)}"
            if repeats
            else f"none of {len(judged)} judged recipes",
        ),
        EvidenceCheck(
            name="augmentation_within_capacity",
            passed=not augmentation_clips,
            detail="; ".join(augmentation_clips)
            or f"within the capacity (teacher {evidence.capacity.teacher}: {evidence.capacity.max_teacher_pairs} "
            f"pairs, {evidence.capacity.max_replay_rows} replay rows)",
        ),
        EvidenceCheck(
            name="operator_notes",
            passed=not moved,
            detail="; ".join(moved) + " (a note said to leave it alone)"
            if moved
            else f"left alone as asked: {', '.join(sorted(left_alone))}"
            if left_alone
            else "no note fixes a hyperparameter",
        ),
    ]


def failed(checks: Sequence[EvidenceCheck]) -> list[EvidenceCheck]:
    return [check for check in checks if not check.passed]
