"""Ten-line baselines every model figure is printed beside, and the learnability diagnosis.

- `MedianBaseline`: the per-dim median of the training targets, whatever the request.
- `RidgeBaseline`: TF-IDF (word 1-2 grams, sublinear tf) + ridge (alpha 1), one multi-output fit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold

from tools.core.contracts import LearnabilitySlice
from tools.core.schema import DIMS, Prediction, TrainingRow


def _targets(rows: Sequence[TrainingRow]) -> np.ndarray:
    return np.array([r.target.as_list() for r in rows], dtype=float)


def _as_predictions(values: np.ndarray, elapsed_ms: float) -> list[Prediction]:
    per_row = elapsed_ms / max(len(values), 1)
    clipped = np.clip(values, 0, 10)
    return [
        Prediction(
            values=[float(v) for v in row],
            raw_output="{" + ",".join(f'"{d}":{v:.3f}' for d, v in zip(DIMS, row, strict=True)) + "}",
            json_valid=True,
            served_by="baseline",
            latency_ms=per_row,
        )
        for row in clipped
    ]


class MedianBaseline:
    name = "train-median"
    decoder = "baseline"

    def fit(self, rows: Sequence[TrainingRow]) -> MedianBaseline:
        self.median = np.median(_targets(rows), axis=0)
        return self

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        start = time.perf_counter()
        values = np.tile(self.median, (len(texts), 1))
        return _as_predictions(values, (time.perf_counter() - start) * 1000)


class RidgeBaseline:
    name = "tfidf-ridge"
    decoder = "baseline"

    def __init__(self, alpha: float = 1.0) -> None:
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        self.model = Ridge(alpha=alpha)

    def fit(self, rows: Sequence[TrainingRow]) -> RidgeBaseline:
        features = self.vectorizer.fit_transform([r.request_text for r in rows])
        self.model.fit(features, _targets(rows))
        return self

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        start = time.perf_counter()
        values = self.model.predict(self.vectorizer.transform(list(texts)))
        return _as_predictions(np.asarray(values), (time.perf_counter() - start) * 1000)


def learnability(
    rows: Sequence[TrainingRow], *, folds: int = 5, margin: float = 0.05, seed: int = 0
) -> list[LearnabilitySlice]:
    """Per (source type, dim): 5-fold CV MAE of TF-IDF+ridge vs the fold's median constant, on train only.

    A slice is `learnable` when the ridge beats the constant by more than `margin` (absolute MAE).
    Slices with fewer than 2*folds rows are skipped: their CV is meaningless.
    """
    slices: list[LearnabilitySlice] = []
    for source_type in sorted({r.source_type.value for r in rows}):
        subset = [r for r in rows if r.source_type.value == source_type]
        if len(subset) < 2 * folds:
            continue
        texts = np.array([r.request_text for r in subset], dtype=object)
        targets = _targets(subset)
        model_err = np.zeros_like(targets)
        const_err = np.zeros_like(targets)
        for train_idx, test_idx in KFold(folds, shuffle=True, random_state=seed).split(texts):
            train_rows = [subset[i] for i in train_idx]
            ridge = RidgeBaseline().fit(train_rows)
            pred = np.array([p.values for p in ridge.predict_batch(list(texts[test_idx]))])
            model_err[test_idx] = np.abs(pred - targets[test_idx])
            const_err[test_idx] = np.abs(np.median(targets[train_idx], axis=0) - targets[test_idx])
        for i, dim in enumerate(DIMS):
            model_mae, const_mae = float(model_err[:, i].mean()), float(const_err[:, i].mean())
            slices.append(
                LearnabilitySlice(
                    source_type=source_type,
                    dim=dim,
                    n_rows=len(subset),
                    constant_mae=round(const_mae, 4),
                    model_mae=round(model_mae, 4),
                    learnable=model_mae < const_mae - margin,
                )
            )
    return slices
