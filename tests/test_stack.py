"""The stacked student's blend: weights on a simplex grid, chosen per (source type, dim) on out-of-fold
predictions, the constant where a slice is noise, and a nested estimate that never fits on a fold's own rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.student.stack import (
    ANY_SOURCE,
    BlendWeights,
    SourceClassifier,
    blend,
    fit_blend,
    nested_blend,
    simplex_grid,
)


def test_the_simplex_grid_sums_to_one_and_starts_with_every_pure_vector():
    grid = simplex_grid(3)
    assert grid.shape == (math.comb(10 + 2, 2), 3)
    assert np.allclose(grid.sum(axis=1), 1.0)
    assert np.allclose(grid * 10, np.round(grid * 10))  # steps of 0.1
    assert grid[:3].tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert len({tuple(w) for w in grid.tolist()}) == len(grid)
    assert simplex_grid(2, steps=4).tolist() == [[1, 0], [0, 1], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]


def _noise_and_structure(n: int = 200, seed: int = 0):
    """Rule prompts whose targets a model predicts exactly; free requests whose targets are noise around 5
    that the model cannot know (its predictions there are unrelated to them)."""
    rng = np.random.default_rng(seed)
    sources = ["rule_prompt" if i % 2 else "request_text" for i in range(n)]
    rule = np.array([s == "rule_prompt" for s in sources])[:, None]
    targets = np.where(rule, rng.integers(0, 11, size=(n, 6)), 5 + rng.integers(-1, 2, size=(n, 6)))
    targets = targets.astype(float)
    model = np.where(rule, targets, rng.integers(0, 11, size=(n, 6))).astype(float)
    constant = np.broadcast_to(np.median(targets, axis=0), targets.shape).copy()
    return {"constant": constant, "model": model}, targets, sources


def test_fit_blend_weights_the_constant_on_a_noise_slice_and_the_model_on_a_clean_one():
    predictions, targets, sources = _noise_and_structure()
    weights = fit_blend(predictions, targets, sources)
    assert weights.components == ["constant", "model"]
    assert weights.by_source["rule_prompt"] == [[0.0, 1.0]] * 6
    assert weights.by_source["request_text"] == [[1.0, 0.0]] * 6
    assert set(weights.by_source) == {ANY_SOURCE, "rule_prompt", "request_text"}
    blended = blend(weights, predictions, sources)
    rule = np.array([s == "rule_prompt" for s in sources])
    assert np.array_equal(blended[rule], targets[rule])
    assert np.array_equal(blended[~rule], predictions["constant"][~rule])


def test_a_tie_goes_to_the_first_component_and_weights_are_chosen_per_dim():
    targets = np.array([[1, 2, 3, 4, 5, 6]] * 4, dtype=float)
    same = {"constant": targets.copy(), "model": targets.copy()}
    assert fit_blend(same, targets, ["rule_prompt"] * 4).by_source[ANY_SOURCE] == [[1.0, 0.0]] * 6
    model = targets.copy()
    model[:, 0] += 3  # the model is wrong on energy only
    constant = targets + 1
    weights = fit_blend({"constant": constant, "model": model}, targets, ["rule_prompt"] * 4)
    assert weights.by_source["rule_prompt"] == [[1.0, 0.0]] + [[0.0, 1.0]] * 5


def test_a_source_type_without_weights_is_blended_with_the_overall_ones():
    weights = BlendWeights(
        components=["a", "b"], by_source={ANY_SOURCE: [[0.25, 0.75]] * 6, "rule_prompt": [[1, 0]] * 6}
    )
    predictions = {"a": np.zeros((2, 6)), "b": np.full((2, 6), 4.0)}
    assert blend(weights, predictions, ["rule_prompt", "unseen"]).tolist() == [[0.0] * 6, [3.0] * 6]


def _keys_in_folds(folds: list[int]) -> list[str]:
    """Text keys (hex) whose fold of 3 is the one given: key i*3 + fold."""
    return [f"{3 * i + fold:012x}" for i, fold in enumerate(folds)]


def test_the_nested_blend_never_fits_a_folds_weights_on_that_folds_rows():
    """Model a is exact on fold 0 (60 rows), model b on folds 1 and 2 (10 rows each). Fitted on all rows the
    blend picks a everywhere; fitted without fold 0, fold 0 must get b, and folds 1 and 2 get a."""
    folds = [0] * 60 + [1] * 10 + [2] * 10
    keys = _keys_in_folds(folds)
    targets = np.full((80, 6), 5.0)
    fold = np.array(folds)
    a = np.where((fold == 0)[:, None], targets, targets + 1)
    b = np.where((fold == 0)[:, None], targets + 1, targets)
    predictions = {"a": a, "b": b}
    sources = ["rule_prompt"] * 80
    assert fit_blend(predictions, targets, sources).by_source[ANY_SOURCE] == [[1.0, 0.0]] * 6
    nested = nested_blend(predictions, targets, sources, keys, 3)
    assert np.array_equal(nested[fold == 0], b[fold == 0])
    assert np.array_equal(nested[fold != 0], a[fold != 0])


def test_the_nested_blend_skips_an_empty_fold():
    folds = [1] * 10 + [2] * 10
    targets = np.full((20, 6), 5.0)
    predictions = {"a": targets + 1, "b": targets.copy()}
    nested = nested_blend(predictions, targets, ["rule_prompt"] * 20, _keys_in_folds(folds), 3)
    assert np.array_equal(nested, targets)


def _rows(texts_by_source: dict[str, list[str]]) -> list[TrainingRow]:
    return [
        TrainingRow(request_text=t, source_type=SourceType(s), target=ParamVector.from_list([5] * 6))
        for s, texts in texts_by_source.items()
        for t in texts
    ]


def test_the_source_classifier_routes_requests_to_their_slice():
    rows = _rows(
        {
            "rule_prompt": [f"Kotone ticket: parts slot {i} piano drum" for i in range(10)],
            "request_text": [f"please write a gentle song for evening walk {i}" for i in range(10)],
        }
    )
    classifier = SourceClassifier.fit(rows)
    assert classifier.classes == ["request_text", "rule_prompt"]
    assert classifier.predict(["Kotone ticket: parts slot 99 piano", "please a gentle song"]) == [
        "rule_prompt",
        "request_text",
    ]
    single = SourceClassifier.fit(_rows({"request_text": ["one request here", "another request"]}))
    assert single.predict(["anything", "at all"]) == ["request_text", "request_text"]


@pytest.mark.parametrize("n_components", [1, 2, 4])
def test_every_pure_vector_is_in_the_grid(n_components):
    grid = simplex_grid(n_components)
    for i in range(n_components):
        assert np.eye(n_components)[i].tolist() in grid.tolist()
