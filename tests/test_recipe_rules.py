"""The recipe rules at their edges: the pruner on a single shared row and the figures its reason gives, a
fold with no dataset rows, a one-component stack, and where a recipe's LM members live. Fast: out-of-fold
records and rows made here, cheap models only."""

from __future__ import annotations

import numpy as np
from test_recipes import CHAMPION, N_FOLDS, _rows, oof

from tools.core.contracts import StudentRecipe
from tools.data.dataset import text_key
from tools.evaluation.stats import paired_bootstrap
from tools.student.folds import OutOfFold, fold_of, paired_gain
from tools.student.recipes import Pruner, baseline_oof, member_folder, stack_oof
from tools.student.stack import COMPONENTS_DIR, LM_COMPONENT


def test_one_shared_row_surely_worse_is_enough_to_prune():
    single = OutOfFold(
        n_folds=N_FOLDS,
        keys=CHAMPION.keys[:1],
        source_types=CHAMPION.source_types[:1],
        targets=CHAMPION.targets[:1],
        predictions=[[9.0] * 6],
    )
    assert Pruner(CHAMPION, rounded=False, confidence=0.95)(0, single) is not None


def test_the_prune_reason_gives_the_seeded_bootstrap_of_the_out_of_fold_gain():
    mixed = oof([0.0] * 8 + [2.0] * 12 + [1.0] * 20)
    pruner = Pruner(CHAMPION, rounded=False, confidence=0.6, samples=500, seed=3)
    expected = paired_bootstrap(paired_gain(CHAMPION.errors(), mixed.errors()), samples=500, seed=3)
    assert pruner(0, mixed) == (
        f"pruned after fold 1: out-of-fold gain vs the champion {expected.mean_gain:+.3f} "
        f"(95% CI {expected.ci_low:+.3f} .. {expected.ci_high:+.3f}) over 40 training rows, "
        f"P(better) {expected.probability:.3f}"
    )


def test_a_fold_with_no_dataset_rows_is_skipped_and_the_other_folds_are_still_predicted():
    rows = [r for r in _rows(60) if fold_of(text_key(r.request_text), N_FOLDS) != 0]
    record = baseline_oof("train-median", rows, N_FOLDS)
    assert sorted(record.keys) == sorted(text_key(r.request_text) for r in rows)


def test_a_one_component_stack_is_that_component():
    component = oof([0.5] * 30)
    record, weights = stack_oof({"tfidf-ridge": component}, N_FOLDS, nested=True)
    assert record.keys == component.keys
    assert np.allclose(record.predictions, component.predictions)
    assert weights.by_source["*"] == [[1.0]] * 6


def test_the_stacks_rows_follow_its_first_component_whatever_order_the_others_list_them_in():
    first, second = oof([1.0] * 30), oof([0.0] * 30)
    reversed_second = second.model_copy(
        update={
            name: list(reversed(getattr(second, name)))
            for name in ("keys", "source_types", "targets", "predictions")
        }
    )
    record, _ = stack_oof({"constant": first, "model": reversed_second}, N_FOLDS, nested=True)
    assert record.keys == first.keys


def test_a_stacks_lm_members_live_in_its_lm_component_folder_and_an_lm_students_in_its_own(tmp_path):
    stack = StudentRecipe(family="stack")
    assert member_folder(stack, tmp_path) == tmp_path / COMPONENTS_DIR / LM_COMPONENT
    assert member_folder(StudentRecipe(family="regression"), tmp_path) == tmp_path
