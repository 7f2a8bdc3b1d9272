"""Scoring a predictor on growing subsamples of the rows, stopped as soon as it is surely worse than a
reference scored on the same rows (cycle 0's zero-shot decoders against the best baseline).

The rows are taken in one fixed random order (so every prefix is a fair sample, whatever order the split is
stored in). At each interim look (`first`, `2*first`, `4*first`, ... rows, each below the split's size) a
paired bootstrap over the rows scored so far gives P(worse) = P(mean per-row gain < 0), gain = reference error
- predictor error. The error budget `alpha` (the chance of stopping a predictor that is not worse) is split
evenly over the interim looks (Bonferroni, so the budget holds whatever the looks' correlation): a look stops
when P(worse) >= 1 - alpha / looks. A predictor never stopped is scored on every row, the final look is no
decision: its full report is what any predictor gets. An exact tie is not worse, so it is never stopped. A
predictor that parses too few answers to serve (its valid rate surely below the gate's bar, by an exact
binomial bound at the same per-look level) is stopped too: its unparsed rows give the paired test no evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from tools.core.schema import ServedBy, TrainingRow
from tools.data.dataset import data_hash
from tools.evaluation.harness import PredictBatch, score_rows
from tools.evaluation.metrics import EvalReport, RowResult, build_report
from tools.evaluation.stats import paired_bootstrap


class EarlyStop(BaseModel):
    """Why a predictor was scored on part of the rows only."""

    n_scored: int
    n_rows: int
    reference: str
    mean_gain: float
    p_worse: float
    threshold: float
    unservable: bool = False
    n_valid: int = 0
    valid_rate_bound: float = 1.0
    min_valid_rate: float = 0.0

    def note(self) -> str:
        if self.unservable:
            return (
                f"scored on {self.n_scored} of {self.n_rows} rows, stopped: surely cannot serve (parsed "
                f"{self.n_valid} of {self.n_scored}; the valid rate's upper bound {self.valid_rate_bound:.3f} "
                f"< {self.min_valid_rate} the gate requires)"
            )
        return (
            f"scored on {self.n_scored} of {self.n_rows} rows, stopped: surely worse than {self.reference} "
            f"(P(worse) {self.p_worse:.3f} >= {self.threshold:.4f}; mean per-row gain {self.mean_gain:+.3f})"
        )


class SequentialResult(BaseModel):
    report: EvalReport
    stopped: EarlyStop | None = None


def look_sizes(n_rows: int, first: int) -> list[int]:
    """Rows scored after each look: first, 2*first, ... while below n_rows, then n_rows (the full score)."""
    sizes = []
    size = max(first, 1)
    while size < n_rows:
        sizes.append(size)
        size *= 2
    return [*sizes, n_rows]


def look_threshold(alpha: float, n_rows: int, first: int) -> float:
    """P(worse) a look needs to stop: 1 - alpha split over the interim looks (the full score is none)."""
    interim = len(look_sizes(n_rows, first)) - 1
    return 1.0 - alpha / max(interim, 1)


def valid_rate_bound(n_valid: int, n: int, alpha: float) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound, at level 1 - alpha, of a rate seen n_valid of n."""
    if n_valid >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(1 - alpha, n_valid + 1, n - n_valid))


def surely_worse(gains: Sequence[float], *, threshold: float, samples: int, seed: int) -> tuple[bool, float]:
    """(stop?, P(worse)) for the per-row gains `reference error - predictor error` scored so far."""
    p_worse = paired_bootstrap(-np.asarray(gains, dtype=float), samples=samples, seed=seed).probability
    return p_worse >= threshold, p_worse


def _errors(results: Sequence[RowResult], rounded: bool) -> dict[int, float]:
    return {r.index: value for r in results if (value := r.mae_rounded if rounded else r.mae) is not None}


def evaluate_sequentially(
    predict_batch: PredictBatch,
    rows: Sequence[TrainingRow],
    *,
    reference: EvalReport,
    alpha: float,
    rounded: bool,
    predictor: str,
    decoder: str,
    dataset: str,
    first: int = 16,
    samples: int = 2000,
    seed: int = 0,
    batch_size: int = 16,
    subject: ServedBy = "model",
    min_valid_rate: float | None = None,
) -> SequentialResult:
    """Score `rows` in growing prefixes of a fixed shuffle; stop once surely worse than `reference` (a report
    on the same `rows`). A row the predictor failed to parse counts as unscored, as in the gate; with
    `min_valid_rate` (the gate's bar), a predictor whose parse rate is surely below it is stopped too (the
    same share of the error budget, an exact binomial bound): however good its few parsed rows, it could
    not serve."""
    order = np.random.default_rng(seed).permutation(len(rows)).tolist()
    sizes = look_sizes(len(rows), first)
    threshold = look_threshold(alpha, len(rows), first)
    reference_errors = _errors(reference.rows, rounded)
    results: list[RowResult] = []
    stopped = None
    scored = 0
    for look, size in enumerate(sizes):
        indices = order[scored:size]
        results.extend(score_rows(predict_batch, rows, indices, subject=subject, batch_size=batch_size))
        scored = size
        if look == len(sizes) - 1:
            break
        n_valid = sum(r.json_valid for r in results)
        bound = valid_rate_bound(n_valid, size, 1 - threshold)
        if min_valid_rate is not None and bound < min_valid_rate:
            stopped = EarlyStop(
                n_scored=size,
                n_rows=len(rows),
                reference=reference.predictor,
                mean_gain=0.0,
                p_worse=0.0,
                threshold=threshold,
                unservable=True,
                n_valid=n_valid,
                valid_rate_bound=bound,
                min_valid_rate=min_valid_rate,
            )
            break
        mine = _errors(results, rounded)
        shared = sorted(mine.keys() & reference_errors.keys())
        gains = [reference_errors[i] - mine[i] for i in shared]
        stop, p_worse = surely_worse(gains, threshold=threshold, samples=samples, seed=seed)
        if stop:
            stopped = EarlyStop(
                n_scored=size,
                n_rows=len(rows),
                reference=reference.predictor,
                mean_gain=float(np.mean(gains)),
                p_worse=p_worse,
                threshold=threshold,
            )
            break
    results.sort(key=lambda r: r.index)
    report = build_report(
        results,
        predictor=predictor,
        decoder=decoder,
        dataset=dataset,
        data_hash=data_hash([rows[r.index] for r in results]),
    )
    return SequentialResult(report=report, stopped=stopped)
