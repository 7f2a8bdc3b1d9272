"""LM members trained as separate tasks, in any order, give the candidate that training them one after another
gives: the same members, out-of-fold estimate and blend, and the same pruning decision, judged in fold order
on the members finished so far (tiny random model, seconds)."""

from __future__ import annotations

import numpy as np
import pytest

from tools.core.contracts import HParams, StudentRecipe
from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.data.dataset import text_key
from tools.student.folds import OutOfFold
from tools.student.recipes import Pruner, train_recipe, train_recipe_member

RECIPE = StudentRecipe(
    family="stack",
    components=["train-median", "tfidf-ridge", "lm"],
    options={"layers_kept": 2, "lora_layers": 1},
    folds=3,
)
HPARAMS = HParams(learning_rate=5e-3, lora_r=4, lora_alpha=8, epochs=1, batch_size=8)
SEED = 7


def _rows() -> list[TrainingRow]:
    rows = []
    for i, style in enumerate(["jazz", "folk", "edm", "pop", "rock", "ambient"]):
        for j, mood in enumerate(["rain", "sun", "night", "dawn"]):
            values = [(i + j) % 11, 8, (5 + j) % 11, 6 - i // 2, 4, 8]
            rows.append(
                TrainingRow(
                    request_text=f"Make game music.\n- style: {style}\n- mood: {mood}",
                    source_type=SourceType.rule_prompt,
                    target=ParamVector.from_list(values),
                )
            )
    return rows


ROWS = _rows()


def perfect_champion() -> OutOfFold:
    """A champion that is exact on every training row: any real candidate is surely worse."""
    return OutOfFold(
        n_folds=3,
        keys=[text_key(r.request_text) for r in ROWS],
        source_types=[r.source_type.value for r in ROWS],
        targets=[r.target.as_list() for r in ROWS],
        predictions=[[float(v) for v in r.target.as_list()] for r in ROWS],
    )


def pruner() -> Pruner:
    return Pruner(perfect_champion(), rounded=False, confidence=0.9, samples=500, seed=0)


def sequential(base, out, prune):
    return train_recipe(
        RECIPE, HPARAMS, ROWS, base_spec=base, output_dir=out, seed=SEED, pruner=prune, progress=False
    )


def member(base, out, fold):
    return train_recipe_member(
        RECIPE, HPARAMS, ROWS, fold=fold, base_spec=base, output_dir=out, seed=SEED, progress=False
    )


def assemble(base, out, prune):
    return train_recipe(
        RECIPE,
        HPARAMS,
        ROWS,
        base_spec=base,
        output_dir=out,
        seed=SEED,
        pruner=prune,
        progress=False,
        train_members=False,
    )


@pytest.fixture(scope="module")
def base(tiny_base_model) -> str:
    return str(tiny_base_model)


def test_members_finished_in_any_order_make_the_same_candidate(base, tmp_path):
    expected = sequential(base, tmp_path / "one-after-another", None)
    out = tmp_path / "parallel"
    member(base, out, 2)
    assert assemble(base, out, None) is None  # member 0 is missing: nothing is decided yet
    member(base, out, 0)
    assert assemble(base, out, None) is None
    member(base, out, 1)
    result = assemble(base, out, None)
    assert result is not None and result.pruned is None
    assert [m.fold for m in result.members] == [0, 1, 2]
    for got, want in zip(result.members, expected.members, strict=True):
        assert (got.seed, got.steps, got.held_out_rows) == (want.seed, want.steps, want.held_out_rows)
        np.testing.assert_allclose(got.held_out_predictions, want.held_out_predictions, atol=1e-5)
    assert result.cv_mae == pytest.approx(expected.cv_mae, abs=1e-6)
    assert result.blend == expected.blend


def test_pruning_waits_for_the_first_fold_and_decides_as_one_after_another(base, tmp_path):
    expected = sequential(base, tmp_path / "one-after-another", pruner())
    assert expected.pruned and expected.pruned.startswith("pruned after fold 1:")
    assert [m.fold for m in expected.members] == [0]

    out = tmp_path / "parallel"
    member(base, out, 1)
    # Fold 1 alone decides nothing: the rule judges the folds in order, so fold 0 comes first.
    assert assemble(base, out, pruner()) is None
    member(base, out, 0)
    result = assemble(base, out, pruner())
    assert result is not None and result.pruned == expected.pruned
    assert [m.fold for m in result.members] == [0]  # the finished member 1 is not part of a pruned candidate
    assert result.cv_mae == pytest.approx(expected.cv_mae, abs=1e-6)
