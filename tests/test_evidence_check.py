"""The evidence check of model plans, rule by rule (agent/evidence_check.py): each check fails on exactly
the plan it exists for and passes on the plan the rule planner would run."""

from __future__ import annotations

from agent_fixture_server import cycle_entry, metrics

from agent.evidence_check import check_plan, failed, weak_dims
from agent.guardrails import apply_guardrails
from agent.operator_notes import read_note
from agent.planner import Evidence, PlanningContext
from tools.core.contracts import (
    AugmentationSpec,
    CandidateSpec,
    Capacity,
    CyclePlan,
    EvalSnapshot,
    HParams,
    LearnabilitySlice,
)
from tools.core.steering import OperatorNote

CAPACITY = Capacity(teacher="offline", max_teacher_pairs=300, max_replay_rows=50)
JUDGED = CandidateSpec(name="old", focus_dims=["complexity"], reason="judged before")


def evidence(learnability: list[LearnabilitySlice] = ()) -> Evidence:
    """CV ratios to the constant: complexity 1.3, nostalgia 1.1, brightness 0.9, the rest 0.8."""
    snapshot = EvalSnapshot(
        champion=None,
        base_metrics=None,
        champion_metrics=None,
        top_failures=[],
        champion_cv=metrics([0.8, 0.8, 0.9, 0.8, 1.3, 1.1]),
        baselines_cv={"train-median": metrics([1.0] * 6)},
    )
    return Evidence(
        snapshot=snapshot,
        history=[cycle_entry(1, "rejected", [JUDGED])],
        champion=None,
        learnability=list(learnability),
        capacity=CAPACITY,
    )


def plan(*specs: CandidateSpec) -> CyclePlan:
    raw = CyclePlan(cycle=2, candidates=list(specs), reasons={"search": "x"}, planner="model")
    return apply_guardrails(raw, CAPACITY)


def spec(name: str = "a", **update: object) -> CandidateSpec:
    base = CandidateSpec(
        name=name, focus_dims=["complexity"], augmentation=AugmentationSpec(teacher_pairs=100), reason="why"
    )
    return base.model_copy(update=update)


def verdicts(checked) -> dict[str, bool]:
    return {c.name: c.passed for c in checked}


def test_the_weak_dims_are_the_top_three_of_the_diagnosis_ranking_learnable_first():
    assert weak_dims(evidence()) == ["complexity", "nostalgia", "brightness"]
    noise = [
        LearnabilitySlice(
            source_type="request_text",
            dim="nostalgia",
            n_rows=50,
            constant_mae=1,
            model_mae=1,
            learnable=False,
        )
    ]
    assert weak_dims(evidence(noise)) == ["complexity", "brightness", "energy"]


def test_a_plan_backed_by_the_evidence_passes_every_check():
    checked = check_plan(plan(spec()), evidence(), PlanningContext(), [])
    assert failed(checked) == [] and len(checked) == 5


def test_each_check_fails_on_its_own_fault():
    context = PlanningContext()
    cases = {
        "focus_in_weak_dims": spec(focus_dims=["energy"]),
        "hparams_in_bounds": spec(hparams=HParams(learning_rate=0.5)),
        "recipe_not_judged": JUDGED.model_copy(update={"name": "again", "seed": 99}),
        "augmentation_within_capacity": spec(augmentation=AugmentationSpec(teacher_pairs=301)),
    }
    for check, candidate in cases.items():
        result = verdicts(check_plan(plan(candidate), evidence(), context, []))
        assert [name for name, ok in result.items() if not ok] == [check], (check, result)


def test_a_focus_asked_by_a_note_is_allowed_and_a_hyperparameter_it_fixed_must_not_move():
    note = OperatorNote(
        id=1, text="work on energy; leave the learning rate alone", added_at="t", added_by="ana"
    )
    asks = [read_note(note)]
    ok = check_plan(plan(spec(focus_dims=["energy"])), evidence(), PlanningContext(), asks)
    assert failed(ok) == []
    moved = spec(focus_dims=["energy"], hparams=HParams(learning_rate=1e-4))
    (bad,) = failed(check_plan(plan(moved), evidence(), PlanningContext(), asks))
    assert bad.name == "operator_notes" and "a moves learning_rate" in bad.detail


def test_with_the_diagnose_stages_ranking_the_weak_dims_are_its_top_three():
    """The loop hands the planner its diagnosis: the check reads that ranking, not one of its own."""
    from tools.core.contracts import DiagnosedDim, Diagnosis

    order = ["warmth", "energy", "acousticness", "complexity", "nostalgia", "brightness"]
    diagnosis = Diagnosis(
        cycle=1,
        evidence="out-of-fold errors on the training split",
        weak_dims=[
            DiagnosedDim(
                dim=d,
                champion_cv_mae=1.0,
                constant_cv_mae=1.0,
                ratio_to_constant=1.0,
                failures_off_by_2_plus=0,
                learnable_slices=[],
            )
            for d in order
        ],
        learnability=[],
    )
    assert weak_dims(evidence(), diagnosis) == ["warmth", "energy", "acousticness"]
