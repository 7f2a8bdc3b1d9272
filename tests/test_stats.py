"""The statistics every decision uses: the paired bootstrap over per-row gains and Holm's step-down correction."""

from __future__ import annotations

import numpy as np
import pytest

from tools.evaluation.stats import holm_thresholds, paired_bootstrap


def test_a_gain_on_every_row_is_certain_and_its_interval_is_that_gain():
    result = paired_bootstrap([0.05] * 80, samples=1000, seed=0)
    assert result.probability == 1.0 and result.p_value == 0.0
    assert result.mean_gain == pytest.approx(0.05)
    assert result.ci_low == pytest.approx(0.05) and result.ci_high == pytest.approx(0.05)
    assert result.n_rows == 80


def test_a_loss_on_every_row_has_no_evidence_of_a_gain():
    result = paired_bootstrap([-0.05] * 80, samples=1000, seed=0)
    assert result.probability == 0.0 and result.p_value == 1.0
    assert result.mean_gain == pytest.approx(-0.05)


def test_a_tie_is_no_evidence_of_a_gain():
    """P counts resamples whose mean gain is strictly positive: a candidate equal to the champion never passes."""
    assert paired_bootstrap([0.0] * 50, samples=500, seed=0).probability == 0.0


def test_no_shared_rows_means_no_evidence():
    result = paired_bootstrap([], samples=500, seed=0)
    assert (result.n_rows, result.probability, result.p_value, result.mean_gain) == (0, 0.0, 1.0, 0.0)
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)


def test_the_probability_is_the_share_of_resamples_with_a_positive_mean():
    # One row of +1 among 39 zeros: a resample's mean is positive iff it draws that row at least once,
    # which happens with probability 1 - (39/40)^40 = 0.637.
    result = paired_bootstrap([1.0] + [0.0] * 39, samples=20000, seed=0)
    assert result.probability == pytest.approx(1 - (39 / 40) ** 40, abs=0.01)
    assert result.mean_gain == pytest.approx(1 / 40)


def test_the_interval_is_the_central_95_percent_of_the_resampled_means():
    gains = np.random.default_rng(1).uniform(-1.0, 2.0, 400)
    result = paired_bootstrap(gains, samples=20000, seed=0)
    standard_error = gains.std() / np.sqrt(gains.size)
    # For a mean of 400 rows the resampled means are close to normal: the 2.5% and 97.5% points sit 1.96
    # standard errors either side of the mean.
    assert (result.mean_gain - result.ci_low) / standard_error == pytest.approx(1.96, abs=0.07)
    assert (result.ci_high - result.mean_gain) / standard_error == pytest.approx(1.96, abs=0.07)
    assert result.probability == 1.0


def test_the_bootstrap_is_deterministic_for_a_seed_and_uses_the_number_of_samples_asked():
    gains = np.random.default_rng(2).normal(0.02, 0.3, 60)
    first = paired_bootstrap(gains, samples=500, seed=3)
    assert first == paired_bootstrap(gains, samples=500, seed=3)
    assert first != paired_bootstrap(gains, samples=500, seed=4)
    # With 3 samples the probability can only be a multiple of 1/3.
    assert paired_bootstrap(gains, samples=3, seed=3).probability in (0.0, 1 / 3, 2 / 3, 1.0)


def test_holm_thresholds_are_alpha_over_m_then_m_minus_1_and_so_on():
    thresholds, passed = holm_thresholds([0.001, 0.002, 0.003, 0.004], 0.05)
    assert thresholds == pytest.approx([0.05 / 4, 0.05 / 3, 0.05 / 2, 0.05])
    assert passed == [True, True, True, True]


def test_holm_thresholds_follow_the_rank_of_each_p_value_and_come_back_in_input_order():
    thresholds, passed = holm_thresholds([0.04, 0.001, 0.01], 0.06)
    assert thresholds == pytest.approx([0.06, 0.06 / 3, 0.06 / 2])
    assert passed == [True, True, True]


def test_holm_is_step_down_once_one_fails_every_larger_p_value_fails():
    # Sorted: 0.01 <= 0.05/3 passes; 0.03 > 0.05/2 fails; 0.04 <= 0.05 would pass alone but fails.
    thresholds, passed = holm_thresholds([0.01, 0.04, 0.03], 0.05)
    assert thresholds == pytest.approx([0.05 / 3, 0.05, 0.05 / 2])
    assert passed == [True, False, False]


def test_holm_fails_everything_when_the_smallest_p_value_fails():
    assert holm_thresholds([0.3, 0.02, 0.04], 0.05)[1] == [False, False, False]


def test_with_one_test_holm_is_the_uncorrected_test_and_the_threshold_is_inclusive():
    assert holm_thresholds([0.05], 0.05) == ([0.05], [True])
    assert holm_thresholds([0.0500001], 0.05) == ([0.05], [False])
    assert holm_thresholds([], 0.05) == ([], [])
