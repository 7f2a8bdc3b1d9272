"""Baselines and the learnability diagnosis, on data whose signal is known by construction."""

import numpy as np
import pytest

from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.data.dataset import REAL_DATA_DIR, load_dir
from tools.evaluation.baselines import TextBaseline, learnability
from tools.evaluation.harness import evaluate_baselines

WORDS = ["storm", "lullaby", "parade", "candle", "engine", "meadow"]


def _rows(n, seed, source=SourceType.rule_prompt, signal=True):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = int(rng.integers(len(WORDS)))
        energy = 2 + k if signal else int(rng.integers(2, 8))
        values = [energy, 5, 5, int(rng.integers(3, 8)), 5, 5]
        rows.append(
            TrainingRow(
                request_text=f"{WORDS[k]} tune number {rng.integers(1e9)} item {i}",
                source_type=source,
                target=ParamVector.from_list(values),
            )
        )
    return rows


def test_median_baseline_predicts_the_training_median_for_everything():
    train = _rows(50, 0)
    preds = TextBaseline("train-median").fit(train).predict_batch(["x", "y"])
    expected = np.median([r.target.as_list() for r in train], axis=0)
    assert preds[0].values == pytest.approx(expected.tolist())
    assert preds[1].raw_output == preds[0].raw_output


def test_ridge_beats_median_when_words_carry_the_signal():
    train, valid = _rows(300, 0), _rows(60, 1)
    median, ridge = evaluate_baselines(train, valid, dataset="synthetic")
    assert ridge.per_dim_mae["energy"] < median.per_dim_mae["energy"] - 0.5
    assert ridge.vector_mae_rounded is not None


def test_learnability_flags_signal_and_noise_slices():
    rows = _rows(200, 0, SourceType.rule_prompt, signal=True) + _rows(
        200, 1, SourceType.request_text, signal=False
    )
    slices = {(s.source_type, s.dim): s for s in learnability(rows)}
    assert slices[("rule_prompt", "energy")].learnable
    assert not slices[("request_text", "energy")].learnable
    assert not slices[("rule_prompt", "acousticness")].learnable  # random in both


@pytest.mark.skipif(not REAL_DATA_DIR.exists(), reason="../shared/kotone-ft is not present")
def test_reference_figures_on_the_real_valid_split():
    data = load_dir(REAL_DATA_DIR)
    median, ridge = evaluate_baselines(data.train, data.valid, dataset="kotone-ft/valid")
    assert median.vector_mae == pytest.approx(0.896, abs=0.002)
    assert ridge.vector_mae == pytest.approx(0.807, abs=0.002)
    assert ridge.vector_mae_rounded == pytest.approx(0.752, abs=0.002)
