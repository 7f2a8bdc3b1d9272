"""The statistics every decision uses: a paired bootstrap over rows and Holm's correction over K tests.

Paired means both predictors are resampled on the SAME rows: the per-row differences are resampled, so the
row-to-row variance (hard rows are hard for everyone) cancels. Resampling the two error lists independently
would be far less sensitive: with every row 0.05 better, the paired test is certain (P = 1) while an
unpaired one is not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel


class BootstrapResult(BaseModel):
    mean_gain: float
    probability: float
    ci_low: float
    ci_high: float
    n_rows: int

    @property
    def p_value(self) -> float:
        """One-sided: how often a resample shows no gain (the evidence against "the candidate is better")."""
        return 1.0 - self.probability


def paired_bootstrap(gains: Sequence[float] | np.ndarray, *, samples: int, seed: int) -> BootstrapResult:
    """`gains[i]` = baseline error - candidate error on row i. P(mean gain > 0) and a 95% interval."""
    diffs = np.asarray(gains, dtype=float)
    if diffs.size == 0:
        return BootstrapResult(mean_gain=0.0, probability=0.0, ci_low=0.0, ci_high=0.0, n_rows=0)
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, diffs.size, size=(samples, diffs.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return BootstrapResult(
        mean_gain=float(diffs.mean()),
        probability=float((means > 0).mean()),
        ci_low=float(low),
        ci_high=float(high),
        n_rows=int(diffs.size),
    )


def holm_thresholds(p_values: Sequence[float], alpha: float) -> tuple[list[float], list[bool]]:
    """Holm's step-down procedure: (each test's threshold, whether it is rejected), in the input order.

    Sorted ascending, the i-th smallest p-value (0-based) is compared with alpha / (m - i); testing stops
    at the first that fails, so every later one fails too. Controls the family-wise error rate at alpha.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    thresholds = [0.0] * m
    passed = [False] * m
    still_going = True
    for rank, index in enumerate(order):
        thresholds[index] = alpha / (m - rank)
        still_going = still_going and p_values[index] <= thresholds[index]
        passed[index] = still_going
    return thresholds, passed
