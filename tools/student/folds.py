"""Cross-validation folds of the training split, and the out-of-fold (OOF) predictions they give.

Every data-driven choice is made on folds of the training split, never on valid: blend weights, the
candidate's CV estimate the planner reads, pruning. Folds are a fixed function of each request's text
(`fold_of`), so every candidate and every champion of a dataset shares them, whatever rows were added:
two OOF records compare row by row. A hard-case replay copy goes to its source row's fold (its origin
names the source), so a paraphrase never trains the model that is scored on its original.

Only rows of the dataset itself are scored out of fold; teacher-written rows only ever train.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from tools.core.schema import SCALE_MAX, SCALE_MIN, TrainingRow, rounded_scores
from tools.data.dataset import text_key
from tools.data.replay import REPLAY_ORIGIN

OOF_FILE = "oof.json"
TEACHER_ORIGIN = "teacher:"


def row_key(row: TrainingRow) -> str:
    """The key that decides a row's fold: its own text, or its source's for a replay copy."""
    if row.origin.startswith(REPLAY_ORIGIN):
        return row.origin.removeprefix(REPLAY_ORIGIN)
    return text_key(row.request_text)


def fold_of(key: str, n_folds: int) -> int:
    return int(key, 16) % n_folds


def is_scored_out_of_fold(row: TrainingRow) -> bool:
    """Rows of the dataset itself; augmented rows (teacher pairs, replay copies) only train."""
    return not row.origin.startswith((TEACHER_ORIGIN, REPLAY_ORIGIN))


def fold_split(rows: Sequence[TrainingRow], fold: int, n_folds: int) -> tuple[list[int], list[int]]:
    """(indices that train fold `fold`'s model, indices of dataset rows it is scored on). A replay copy of a
    held-out row trains no model of that fold; a teacher pair trains every fold."""
    train, held_out = [], []
    for i, row in enumerate(rows):
        if row.origin.startswith(TEACHER_ORIGIN) or fold_of(row_key(row), n_folds) != fold:
            train.append(i)
        elif is_scored_out_of_fold(row):
            held_out.append(i)
    return train, held_out


class OutOfFold(BaseModel):
    """Each dataset row of the training split predicted by a model that never trained on it."""

    n_folds: int = Field(ge=2)
    keys: list[str]
    source_types: list[str]
    targets: list[list[int]]
    predictions: list[list[float]]

    @classmethod
    def empty(cls, n_folds: int) -> OutOfFold:
        return cls(n_folds=n_folds, keys=[], source_types=[], targets=[], predictions=[])

    def add(self, rows: Sequence[TrainingRow], predictions: np.ndarray) -> None:
        for row, values in zip(rows, predictions, strict=True):
            self.keys.append(text_key(row.request_text))
            self.source_types.append(row.source_type.value)
            self.targets.append(row.target.as_list())
            self.predictions.append([float(v) for v in np.clip(values, SCALE_MIN, SCALE_MAX)])

    def errors(self, rounded: bool = False) -> dict[str, float]:
        """Per row key, the row's MAE over the six dims."""
        if not self.keys:
            return {}
        predictions = np.asarray(self.predictions)
        if rounded:
            predictions = rounded_scores(predictions)
        errors = np.abs(predictions - np.asarray(self.targets)).mean(axis=1)
        return dict(zip(self.keys, errors.tolist(), strict=True))

    def mae(self, rounded: bool = False) -> float | None:
        errors = list(self.errors(rounded).values())
        return float(np.mean(errors)) if errors else None


def paired_gain(baseline: dict[str, float], candidate: dict[str, float]) -> np.ndarray:
    """Per shared row, baseline error minus candidate error (> 0: the candidate is better there)."""
    shared = sorted(baseline.keys() & candidate.keys())
    return np.array([baseline[k] - candidate[k] for k in shared])
