"""Ten-line baselines every model figure is printed beside, and the learnability diagnosis.

The cheap text models are full predictors, not just reference lines: a baseline can be the champion, is
served like any student, and is a component of the stacked student. Each saves to a folder of plain
arrays (no pickle) and loads back to identical predictions.

| kind | what it is |
|---|---|
| `train-median` | the per-dim median of the training targets, whatever the request |
| `tfidf-ridge` | TF-IDF (word 1-2 grams, sublinear tf, l2-normalised) + ridge (alpha 1), one multi-output fit |
| `additive-ridge` | binary bag of words (unnormalised) + ridge: a sum of per-token effects, the shape of the
  rule prompts' targets, which behave like additive effects of their four part ids |
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from scipy import sparse

from tools.core.atomic import atomic_write_json
from tools.core.contracts import BaselineKind, LearnabilitySlice
from tools.core.schema import DIMS, SCALE_MAX, SCALE_MIN, ParamVector, Prediction, TrainingRow, round_scores
from tools.data.bag_of_words import TOKEN_PATTERN, count_matrix

BASELINE_KINDS: tuple[BaselineKind, ...] = ("train-median", "tfidf-ridge", "additive-ridge")
# Printed beside every model figure (the "ten-line baselines"); the additive ridge is a candidate, not a reference.
REFERENCE_BASELINES: tuple[BaselineKind, ...] = ("train-median", "tfidf-ridge")
SPEC_FILE = "baseline.json"
ARRAYS_FILE = "arrays.npz"


class BaselineSpec(BaseModel):
    kind: BaselineKind
    alpha: float = Field(1.0, gt=0, description="ridge penalty (ridge kinds)")


class _Fitted(BaseModel):
    """What a fitted model is on disk besides its arrays."""

    spec: BaselineSpec
    vocabulary: dict[str, int] = {}


def targets(rows: Sequence[TrainingRow]) -> np.ndarray:
    return np.array([r.target.as_list() for r in rows], dtype=float)


def format_values(values: Sequence[float]) -> str:
    """The strict JSON the product serves: the six values rounded to integers on the 0..10 scale."""
    return ParamVector.from_list(round_scores(values)).to_json()


def as_predictions(values: np.ndarray, elapsed_ms: float) -> list[Prediction]:
    """Numeric outputs (n, 6) -> served predictions (clipped to the scale, JSON formatted)."""
    per_row = elapsed_ms / max(len(values), 1)
    clipped = np.clip(values, SCALE_MIN, SCALE_MAX)
    return [
        Prediction(
            values=[float(v) for v in row],
            raw_output=format_values(row),
            json_valid=True,
            served_by="model",
            latency_ms=per_row,
        )
        for row in clipped
    ]


class ServesValues:
    """A predictor defined by `predict_values(texts) -> (n, 6)`: batches, single requests and the served
    JSON follow from it (baselines, fold ensembles and stacks all serve this way)."""

    decoder = "regression"

    def predict_values(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def default_decoder(self, requested: str) -> str:
        return self.decoder

    def predict_batch(self, texts: Sequence[str], decoder: str | None = None) -> list[Prediction]:
        start = time.perf_counter()
        values = self.predict_values(list(texts))
        return as_predictions(values, (time.perf_counter() - start) * 1000)

    def predict_one(self, text: str, decoder: str | None = None) -> Prediction:
        return self.predict_batch([text])[0]


class TextBaseline(ServesValues):
    """One cheap text model: `fit(rows)`, `predict_values(texts)`, `save(folder)`, `TextBaseline.load(folder)`."""

    decoder = "baseline"

    def __init__(self, kind: BaselineKind, alpha: float = 1.0) -> None:
        self.spec = BaselineSpec(kind=kind, alpha=alpha)
        self.name = kind
        self.vocabulary: dict[str, int] = {}
        self.idf: np.ndarray | None = None
        self.coef = np.zeros((len(DIMS), 0))
        self.intercept = np.zeros(len(DIMS))

    def _vectorizer(self) -> Any:
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(binary=True, token_pattern=TOKEN_PATTERN)

    def _features(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Counts over the fitted vocabulary; for TF-IDF, the same transform TfidfVectorizer applies."""
        tfidf = self.spec.kind == "tfidf-ridge"
        counts = count_matrix(texts, self.vocabulary, bigrams=tfidf, binary=not tfidf).astype(float).tocsr()
        if self.spec.kind != "tfidf-ridge":
            return counts
        counts.data = 1.0 + np.log(counts.data)
        weighted = counts @ sparse.diags(self.idf)
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
        return sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ weighted

    def fit(self, rows: Sequence[TrainingRow]) -> TextBaseline:
        if not rows:
            raise ValueError(f"{self.name} needs at least one training row")
        y = targets(rows)
        if self.spec.kind == "train-median":
            self.intercept = np.median(y, axis=0)
            return self
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import Ridge

        texts = [r.request_text for r in rows]
        if self.spec.kind == "tfidf-ridge":
            fitted = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=TOKEN_PATTERN).fit(
                texts
            )
            self.idf = fitted.idf_
        else:
            fitted = self._vectorizer().fit(texts)
        self.vocabulary = {term: int(index) for term, index in fitted.vocabulary_.items()}
        model = Ridge(alpha=self.spec.alpha).fit(self._features(texts), y)
        self.coef, self.intercept = model.coef_, model.intercept_
        return self

    def predict_values(self, texts: Sequence[str]) -> np.ndarray:
        if self.spec.kind == "train-median":
            return np.tile(self.intercept, (len(texts), 1))
        return np.asarray(self._features(texts) @ self.coef.T) + self.intercept

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"coef": self.coef, "intercept": self.intercept}
        if self.idf is not None:
            arrays["idf"] = self.idf
        tmp = folder / f".{ARRAYS_FILE}.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(folder / ARRAYS_FILE)
        atomic_write_json(folder / SPEC_FILE, _Fitted(spec=self.spec, vocabulary=self.vocabulary))

    @classmethod
    def load(cls, folder: Path) -> TextBaseline:
        fitted = _Fitted.model_validate_json((folder / SPEC_FILE).read_text())
        model = cls(fitted.spec.kind, fitted.spec.alpha)
        model.vocabulary = fitted.vocabulary
        with np.load(folder / ARRAYS_FILE) as arrays:
            model.coef, model.intercept = arrays["coef"], arrays["intercept"]
            model.idf = arrays.get("idf")
        model.name = f"{fitted.spec.kind}:{folder.name}"
        return model

    @staticmethod
    def is_folder(folder: Path) -> bool:
        return (folder / SPEC_FILE).is_file()


def learnability(
    rows: Sequence[TrainingRow], *, folds: int = 5, margin: float = 0.05, seed: int = 0
) -> list[LearnabilitySlice]:
    """Per (source type, dim): 5-fold CV MAE of TF-IDF+ridge vs the fold's median constant, on train only.

    A slice is `learnable` when the ridge beats the constant by more than `margin` (absolute MAE).
    Slices with fewer than 2*folds rows are skipped: their CV is meaningless.
    """
    from sklearn.model_selection import KFold

    slices: list[LearnabilitySlice] = []
    for source_type in sorted({r.source_type.value for r in rows}):
        subset = [r for r in rows if r.source_type.value == source_type]
        if len(subset) < 2 * folds:
            continue
        texts = [r.request_text for r in subset]
        y = targets(subset)
        model_err = np.zeros_like(y)
        const_err = np.zeros_like(y)
        for train_idx, test_idx in KFold(folds, shuffle=True, random_state=seed).split(texts):
            ridge = TextBaseline("tfidf-ridge").fit([subset[i] for i in train_idx])
            pred = np.clip(ridge.predict_values([texts[i] for i in test_idx]), SCALE_MIN, SCALE_MAX)
            model_err[test_idx] = np.abs(pred - y[test_idx])
            const_err[test_idx] = np.abs(np.median(y[train_idx], axis=0) - y[test_idx])
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
