"""The log and confirm stages' rules: who becomes champion, which winners are confirmed, and with which
seeds. Fast: gate results and specs made here, no training."""

from __future__ import annotations

import pytest
from test_gate import CHAMPION_RECORD, cycle, uniform

from loop.gate import GateConfig, run_gate
from loop.stages.candidate import CONFIRM_SEED_OFFSET, training_seed
from loop.stages.decide import candidate_to_promote, confirmation_skipped
from tools.core.contracts import AugmentationSpec, CandidateSpec, StudentRecipe
from tools.core.steering import Approval
from tools.student.ensemble import member_seed

CHAMPION = uniform(1.0)


def _winner_gate(confirm_offset: float | None):
    result = cycle(CHAMPION, {"a": uniform(0.5)}, GateConfig())
    if confirm_offset is not None:
        result.confirm = run_gate(CHAMPION, uniform(confirm_offset), ["energy"], GateConfig())
    return result


def test_a_winner_that_failed_its_confirmation_never_becomes_champion():
    assert candidate_to_promote(_winner_gate(confirm_offset=1.0), None) is None


def test_a_confirmed_winner_or_one_that_needed_no_confirmation_becomes_champion():
    assert candidate_to_promote(_winner_gate(confirm_offset=0.5), None) == "a"
    assert candidate_to_promote(_winner_gate(confirm_offset=None), None) == "a"


def test_without_a_winner_nobody_is_promoted():
    result = cycle(CHAMPION, {"a": uniform(2.0)}, GateConfig())
    assert result.winner is None and candidate_to_promote(result, None) is None
    assert CHAMPION_RECORD.cycle == 0


def _spec(recipe: StudentRecipe) -> CandidateSpec:
    return CandidateSpec(
        name="w",
        reason="r",
        focus_dims=["energy"],
        augmentation=AugmentationSpec(teacher_pairs=0, replay_rows=0),
        student=recipe,
        seed=11,
    )


@pytest.mark.parametrize(
    "recipe", [StudentRecipe(family="stack"), StudentRecipe(family="regression")], ids=["stack", "lm"]
)
def test_a_winner_with_a_language_model_is_always_confirmed(recipe):
    assert recipe.uses_lm
    assert confirmation_skipped(_spec(recipe), GateConfig()) is None


def test_a_recipe_without_randomness_or_a_switched_off_confirmation_is_not_confirmed_and_says_why():
    cheap = StudentRecipe(family="stack", components=["train-median", "tfidf-ridge"])
    assert not cheap.uses_lm
    assert confirmation_skipped(_spec(cheap), GateConfig()) == (
        "no language model in the recipe: its predictions do not depend on the seed"
    )
    off = GateConfig(confirm=False)
    assert confirmation_skipped(_spec(StudentRecipe(family="stack")), off) == (
        "confirmation switched off (gate.confirm = false)"
    )


def test_the_confirmation_trains_every_member_with_seeds_the_first_training_never_used():
    spec = _spec(StudentRecipe(family="regression"))
    first = {member_seed(training_seed(spec, 0), fold) for fold in range(5)}
    again = {member_seed(training_seed(spec, CONFIRM_SEED_OFFSET), fold) for fold in range(5)}
    assert training_seed(spec, 0) == spec.seed
    assert not first & again


@pytest.mark.parametrize(("status", "promoted"), [("pending", None), ("rejected", None), ("approved", "a")])
def test_in_approve_mode_only_an_approved_winner_becomes_champion(status, promoted):
    approval = Approval(cycle=1, candidate="a", status=status, pending_since="2026-12-07T00:00:00+00:00")
    assert candidate_to_promote(_winner_gate(confirm_offset=0.5), approval) == promoted
    assert candidate_to_promote(_winner_gate(confirm_offset=1.0), approval) is None
