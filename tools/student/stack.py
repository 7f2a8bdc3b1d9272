"""The stacked student: per (source type, dim), a convex blend of the fold-ensembled LM and the cheap models.

The learnability diagnosis shows where the signal is: on kotone-ft, rule prompts follow their part ids
almost additively and free text carries no signal a model can learn. A single model must compromise; a
blend chosen per slice does not: where a slice is noise the weights go to the median constant, where it
is structure they go to whichever models predict it best. The weights are chosen on out-of-fold
predictions of the training split (never valid), from a grid over the simplex (steps of 0.1; ties go to the
simplest blend), and the stack's own CV estimate is nested: each fold's rows are
blended with weights fitted on the other folds only.

At serving time the request's source type is unknown, so a small classifier (binary bag of words +
logistic regression, fitted on the training rows) routes each request to its slice's weights.

Folder layout:
    stack.json           `StackSpec`: components, blend weights per slice, classifier vocabulary
    classifier.npz       the classifier's coefficients
    components/NAME/     one folder per component: `lm` is a fold ensemble, the rest are baselines
    oof.json             the stack's nested out-of-fold predictions
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from tools.core.atomic import atomic_write_json
from tools.core.schema import DIMS, TrainingRow
from tools.evaluation.baselines import ServesValues
from tools.student.folds import fold_of

SPEC_FILE = "stack.json"
CLASSIFIER_FILE = "classifier.npz"
COMPONENTS_DIR = "components"
LM_COMPONENT = "lm"
ANY_SOURCE = "*"
WEIGHT_STEPS = 10


class BlendWeights(BaseModel):
    """Per source type (and `*` for any other), six weight vectors over `components` (each sums to 1)."""

    components: list[str]
    by_source: dict[str, list[list[float]]]

    def for_source(self, source_type: str) -> np.ndarray:
        return np.asarray(self.by_source.get(source_type, self.by_source[ANY_SOURCE]))


class StackSpec(BaseModel):
    weights: BlendWeights
    classes: list[str]
    classifier_vocabulary: dict[str, int]
    classifier_train_accuracy: float


@lru_cache(maxsize=8)
def simplex_grid(n_components: int, steps: int = WEIGHT_STEPS) -> np.ndarray:
    """Every weight vector with entries in multiples of 1/steps summing to 1; pure vectors first."""
    points = [
        np.array(c) / steps
        for c in itertools.product(range(steps + 1), repeat=n_components)
        if sum(c) == steps
    ]
    points.sort(key=lambda w: (-w.max(), tuple(-w)))
    return np.array(points)


def fit_blend(
    predictions: dict[str, np.ndarray], targets: np.ndarray, source_types: Sequence[str]
) -> BlendWeights:
    """Weights minimising MAE per (source type, dim) and overall (`*`). Ties go to the first grid point:
    single components before blends, earlier components first (callers put the constant first)."""
    names = list(predictions)
    stacked = np.stack([predictions[n] for n in names])  # (C, n, 6)
    grid = simplex_grid(len(names))
    source_types = np.asarray(source_types)

    def best(mask: np.ndarray) -> list[list[float]]:
        weights = []
        for d in range(len(DIMS)):
            blended = grid @ stacked[:, mask, d]  # (G, rows)
            errors = np.abs(blended - targets[mask, d]).mean(axis=1)
            weights.append(grid[int(np.argmin(errors))].round(6).tolist())
        return weights

    by_source = {ANY_SOURCE: best(np.ones(len(targets), dtype=bool))}
    for source in sorted(set(source_types.tolist())):
        by_source[source] = best(source_types == source)
    return BlendWeights(components=names, by_source=by_source)


def blend(
    weights: BlendWeights, predictions: dict[str, np.ndarray], source_types: Sequence[str]
) -> np.ndarray:
    stacked = np.stack([predictions[n] for n in weights.components])  # (C, n, 6)
    per_row = np.stack([weights.for_source(s) for s in source_types])  # (n, 6, C)
    return np.einsum("cnd,ndc->nd", stacked, per_row)


def nested_blend(
    predictions: dict[str, np.ndarray],
    targets: np.ndarray,
    source_types: Sequence[str],
    keys: Sequence[str],
    n_folds: int,
) -> np.ndarray:
    """The stack's out-of-fold predictions: each fold blended with weights fitted on the other folds."""
    folds = np.array([fold_of(k, n_folds) for k in keys])
    source_types = np.asarray(source_types)
    out = np.zeros_like(targets, dtype=float)
    for fold in range(n_folds):
        held = folds == fold
        if not held.any():
            continue
        weights = fit_blend(
            {n: p[~held] for n, p in predictions.items()}, targets[~held], source_types[~held]
        )
        out[held] = blend(weights, {n: p[held] for n, p in predictions.items()}, source_types[held])
    return out


class SourceClassifier:
    """Routes a request to its source type: binary bag of words + logistic regression."""

    def __init__(
        self, classes: list[str], vocabulary: dict[str, int], coef: np.ndarray, intercept: np.ndarray
    ):
        self.classes = classes
        self.vocabulary = vocabulary
        self.coef = coef
        self.intercept = intercept

    @classmethod
    def fit(cls, rows: Sequence[TrainingRow]) -> SourceClassifier:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression

        labels = [r.source_type.value for r in rows]
        classes = sorted(set(labels))
        if len(classes) == 1:
            return cls(classes, {}, np.zeros((1, 0)), np.zeros(1))
        vectorizer = CountVectorizer(binary=True).fit([r.request_text for r in rows])
        vocabulary = {t: int(i) for t, i in vectorizer.vocabulary_.items()}
        model = LogisticRegression(max_iter=2000).fit(
            vectorizer.transform([r.request_text for r in rows]), labels
        )
        return cls([str(c) for c in model.classes_], vocabulary, model.coef_, model.intercept_)

    def predict(self, texts: Sequence[str]) -> list[str]:
        if len(self.classes) == 1:
            return [self.classes[0]] * len(texts)
        from tools.data.bag_of_words import count_matrix

        features = count_matrix(texts, self.vocabulary, binary=True)
        scores = np.asarray(features @ self.coef.T).reshape(len(texts), -1) + self.intercept
        if len(self.classes) == 2:  # sklearn's binary case: one score column, positive = classes[1]
            return [self.classes[int(s[0] > 0)] for s in scores]
        return [self.classes[int(i)] for i in scores.argmax(axis=1)]


def save_stack(
    folder: Path, weights: BlendWeights, classifier: SourceClassifier, rows: Sequence[TrainingRow]
) -> StackSpec:
    predicted = classifier.predict([r.request_text for r in rows])
    accuracy = float(np.mean([p == r.source_type.value for p, r in zip(predicted, rows, strict=True)]))
    spec = StackSpec(
        weights=weights,
        classes=classifier.classes,
        classifier_vocabulary=classifier.vocabulary,
        classifier_train_accuracy=round(accuracy, 4),
    )
    tmp = folder / f".{CLASSIFIER_FILE}.tmp.npz"
    np.savez(tmp, coef=classifier.coef, intercept=classifier.intercept)
    tmp.replace(folder / CLASSIFIER_FILE)
    atomic_write_json(folder / SPEC_FILE, spec)
    return spec


class StackStudent(ServesValues):
    """Serves the blend: every component predicts, the classifier picks each request's slice weights."""

    def __init__(self, components: dict[str, Any], spec: StackSpec, classifier: SourceClassifier, name: str):
        self.components = components
        self.spec = spec
        self.classifier = classifier
        self.name = name

    @classmethod
    def load(cls, base_spec: str, folder: Path) -> StackStudent:
        from tools.student.interface import load_student

        spec = StackSpec.model_validate_json((folder / SPEC_FILE).read_text())
        with np.load(folder / CLASSIFIER_FILE) as arrays:
            classifier = SourceClassifier(
                spec.classes, spec.classifier_vocabulary, arrays["coef"], arrays["intercept"]
            )
        components = {
            name: load_student(base_spec, folder / COMPONENTS_DIR / name) for name in spec.weights.components
        }
        return cls(components, spec, classifier, name=f"stack:{folder.parent.name}/{folder.name}")

    @staticmethod
    def is_folder(folder: Path) -> bool:
        return (folder / SPEC_FILE).is_file()

    def predict_values(self, texts: Sequence[str]) -> np.ndarray:
        predictions = {name: component.predict_values(texts) for name, component in self.components.items()}
        return blend(self.spec.weights, predictions, self.classifier.predict(texts))
