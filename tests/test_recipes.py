"""Out-of-fold estimates of cheap recipes and stacks, and the pruner that stops a candidate that cannot win
(training rows only)."""

from __future__ import annotations

import numpy as np

from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.data.dataset import text_key
from tools.student.folds import OutOfFold, fold_of
from tools.student.recipes import Pruner, baseline_oof, stack_oof

N_FOLDS = 3


def oof(errors: list) -> OutOfFold:
    """Rows r0, r1, ... with target 5 everywhere, predicted `errors[i]` too high (one number for every dim, or
    six numbers)."""
    return OutOfFold(
        n_folds=N_FOLDS,
        keys=[text_key(f"r{i}") for i in range(len(errors))],
        source_types=["rule_prompt"] * len(errors),
        targets=[[5] * 6 for _ in errors],
        predictions=[(5 + np.broadcast_to(e, 6)).tolist() for e in errors],
    )


CHAMPION = oof([1.0] * 40)


def test_a_clearly_worse_candidate_is_pruned_with_the_reason():
    pruner = Pruner(CHAMPION, rounded=False, confidence=0.95)
    reason = pruner(1, oof([2.0] * 40))
    assert reason == (
        "pruned after fold 2: out-of-fold gain vs the champion -1.000 (95% CI -1.000 .. -1.000) "
        "over 40 training rows, P(better) 0.000"
    )


def test_a_better_or_equal_candidate_is_kept():
    pruner = Pruner(CHAMPION, rounded=False, confidence=0.95)
    assert pruner(0, oof([0.5] * 40)) is None
    assert pruner(0, oof([0.5] * 20 + [1.5] * 20)) is None  # as good on average: no evidence it is worse


def test_a_candidate_is_pruned_only_when_surely_worse():
    # Better on 8 rows, worse on 12: P(worse) is about 0.77, so it is "surely worse" at 75%, not at 95%.
    mixed = oof([0.0] * 8 + [2.0] * 12 + [1.0] * 20)
    assert Pruner(CHAMPION, rounded=False, confidence=0.95)(0, mixed) is None
    assert Pruner(CHAMPION, rounded=False, confidence=0.75)(0, mixed) is not None


def test_a_candidate_that_ties_the_champion_on_every_row_is_not_worse():
    assert Pruner(CHAMPION, rounded=False, confidence=0.95)(0, oof([1.0] * 40)) is None
    champion, candidate = oof([0.45] * 40), oof([0.3] * 40)  # both round to the exact answer
    assert Pruner(champion, rounded=True, confidence=0.95)(0, candidate) is None


def test_without_a_champion_out_of_fold_record_nothing_is_pruned():
    assert Pruner(None, rounded=False, confidence=0.95)(2, oof([9.0] * 40)) is None


def test_rows_the_champion_never_scored_cannot_prune():
    other_rows = OutOfFold(
        n_folds=N_FOLDS,
        keys=["ffffffffffff"],
        source_types=["rule_prompt"],
        targets=[[5] * 6],
        predictions=[[10.0] * 6],
    )
    assert Pruner(CHAMPION, rounded=False, confidence=0.95)(0, other_rows) is None


def test_the_pruner_compares_in_the_gates_metric():
    champion = oof([0.45] * 40)  # raw 0.45, rounds to the exact answer
    candidate = oof([[0, 0, 0, 0, 0, 0.6]] * 40)  # raw 0.1 (better), rounded 1/6 (worse)
    assert Pruner(champion, rounded=False, confidence=0.95)(0, candidate) is None
    assert Pruner(champion, rounded=True, confidence=0.95)(0, candidate) is not None


def _rows(n: int) -> list[TrainingRow]:
    rng = np.random.default_rng(0)
    return [
        TrainingRow(
            request_text=f"request {i} about a {['calm', 'loud'][i % 2]} tune",
            source_type=SourceType.request_text,
            target=ParamVector.from_list(rng.integers(0, 11, size=6).tolist()),
        )
        for i in range(n)
    ]


def test_a_baselines_out_of_fold_prediction_comes_from_the_other_folds_only():
    rows = [
        *_rows(30),
        TrainingRow(
            request_text="teacher row",
            source_type="request_text",
            target=ParamVector.from_list([10] * 6),
            origin="teacher:x",
        ),
    ]
    record = baseline_oof("train-median", rows, N_FOLDS)
    assert sorted(record.keys) == sorted(
        text_key(r.request_text) for r in rows[:30]
    )  # teacher rows only train
    for key, prediction in zip(record.keys, record.predictions, strict=True):
        fold = fold_of(key, N_FOLDS)
        others = [
            r
            for r in rows
            if r.origin.startswith("teacher:") or fold_of(text_key(r.request_text), N_FOLDS) != fold
        ]
        assert prediction == np.median([r.target.as_list() for r in others], axis=0).tolist()


def test_a_stacks_out_of_fold_record_covers_the_rows_every_component_has():
    constant = oof([1.0] * 30)
    exact = oof([0.0] * 30)
    partial = OutOfFold(
        n_folds=N_FOLDS,
        keys=exact.keys[:20],
        source_types=exact.source_types[:20],
        targets=exact.targets[:20],
        predictions=exact.predictions[:20],
    )
    record, weights = stack_oof({"constant": constant, "model": partial}, N_FOLDS, nested=True)
    assert record.keys == exact.keys[:20]
    assert weights.by_source["*"] == [[0.0, 1.0]] * 6
    assert record.mae() == 0.0
    in_sample, _ = stack_oof({"constant": constant, "model": exact}, N_FOLDS, nested=False)
    assert in_sample.mae() == 0.0 and len(in_sample.keys) == 30


def test_a_candidate_exactly_as_surely_worse_as_the_confidence_is_pruned():
    """The boundary: P(worse) equal to the confidence prunes; a hair above it does not."""
    from tools.evaluation.stats import paired_bootstrap
    from tools.student.folds import paired_gain

    mixed = oof([0.0] * 8 + [2.0] * 12 + [1.0] * 20)
    gains = paired_gain(CHAMPION.errors(), mixed.errors())
    worse = paired_bootstrap(-gains, samples=1000, seed=0).probability
    assert 0.5 < worse < 1
    assert Pruner(CHAMPION, rounded=False, confidence=worse, samples=1000, seed=0)(0, mixed) is not None
    assert Pruner(CHAMPION, rounded=False, confidence=worse + 1e-9, samples=1000, seed=0)(0, mixed) is None


def test_a_cheap_stacks_cv_estimate_is_its_nested_one_never_the_in_sample_blend(tmp_path):
    """On noise, blend weights fitted on a fold's own rows flatter the stack; the candidate's record (what the
    pruner and the champion's CV stand on) is the nested estimate."""
    from tools.core.contracts import HParams, StudentRecipe
    from tools.student.recipes import train_recipe

    rows = _rows(90)
    components = ["train-median", "tfidf-ridge"]
    recipe = StudentRecipe(family="stack", components=components, folds=3)
    result = train_recipe(recipe, HParams(), rows, base_spec="unused", output_dir=tmp_path, seed=0)
    oofs = {kind: baseline_oof(kind, rows, 3) for kind in components}
    nested, _ = stack_oof(oofs, 3, nested=True)
    flattering, _ = stack_oof(oofs, 3, nested=False)
    assert flattering.mae() < nested.mae()
    assert result.cv_mae == nested.mae()
