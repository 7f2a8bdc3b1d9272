"""Cross-validation folds of the training split: fixed by each request's text, a replay copy stays with its
source, teacher rows only ever train, and out-of-fold records compare row by row."""

from __future__ import annotations

import numpy as np
import pytest

from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.data.dataset import text_key
from tools.data.replay import REPLAY_ORIGIN
from tools.student.folds import OutOfFold, fold_of, fold_split, is_scored_out_of_fold, paired_gain, row_key

N_FOLDS = 3


def row(text: str, origin: str = "dataset", target: int = 5) -> TrainingRow:
    return TrainingRow(
        request_text=text,
        source_type=SourceType.request_text,
        target=ParamVector.from_list([target] * 6),
        origin=origin,
    )


DATASET = [row(f"a request about tune number {i}") for i in range(60)]


def test_a_rows_fold_is_its_text_key_modulo_the_number_of_folds():
    assert (
        fold_of("00000000000a", 3) == 1
        and fold_of("0000000000ff", 5) == 0
        and fold_of("00000000000f", 4) == 3
    )
    key = text_key("a calm tune for a rainy library")
    assert fold_of(key, N_FOLDS) == int(key, 16) % N_FOLDS
    assert fold_of(text_key("A calm tune, for a rainy library!"), N_FOLDS) == fold_of(key, N_FOLDS)
    counts = np.bincount([fold_of(row_key(r), N_FOLDS) for r in DATASET], minlength=N_FOLDS)
    assert counts.min() >= 10  # 60 rows spread over every fold


def test_every_dataset_row_is_held_out_by_exactly_one_fold_and_trains_the_others():
    held = []
    for fold in range(N_FOLDS):
        train, held_out = fold_split(DATASET, fold, N_FOLDS)
        assert sorted(train + held_out) == list(range(len(DATASET)))
        assert all(fold_of(row_key(DATASET[i]), N_FOLDS) == fold for i in held_out)
        held += held_out
    assert sorted(held) == list(range(len(DATASET)))


def test_a_replay_copy_lands_in_its_sources_fold_and_is_never_scored():
    source = DATASET[0]
    copy = row(
        "a reworded request about tune number 0", origin=f"{REPLAY_ORIGIN}{text_key(source.request_text)}"
    )
    rows = [*DATASET, copy]
    assert row_key(copy) == text_key(source.request_text) == row_key(source)
    source_fold = fold_of(row_key(source), N_FOLDS)
    for fold in range(N_FOLDS):
        train, held_out = fold_split(rows, fold, N_FOLDS)
        copy_index = len(rows) - 1
        assert copy_index not in held_out
        # the fold that scores the source never trains on its paraphrase
        assert (copy_index in train) == (fold != source_fold)
    assert not is_scored_out_of_fold(copy)


def test_teacher_rows_train_every_fold_and_are_never_scored():
    teacher = row("a teacher-written request", origin="teacher:offline")
    rows = [*DATASET, teacher]
    for fold in range(N_FOLDS):
        train, held_out = fold_split(rows, fold, N_FOLDS)
        assert len(rows) - 1 in train and len(rows) - 1 not in held_out
    assert not is_scored_out_of_fold(teacher) and is_scored_out_of_fold(DATASET[0])


def test_out_of_fold_errors_are_per_row_mae_clipped_to_the_scale_and_rounded_on_request():
    oof = OutOfFold.empty(N_FOLDS)
    assert oof.errors() == {} and oof.mae() is None
    oof.add([row("first", target=5), row("second", target=10)], np.array([[5.4] * 6, [11.0] * 6]))
    assert oof.predictions[1] == [10.0] * 6  # clipped to 0..10
    assert oof.keys == [text_key("first"), text_key("second")] and oof.targets == [[5] * 6, [10] * 6]
    assert oof.errors() == {text_key("first"): pytest.approx(0.4), text_key("second"): 0.0}
    assert oof.errors(rounded=True) == {text_key("first"): 0.0, text_key("second"): 0.0}
    assert oof.mae() == pytest.approx(0.2) and oof.mae(rounded=True) == 0.0


def test_paired_gains_are_over_shared_rows_baseline_minus_candidate():
    gains = paired_gain({"a": 1.0, "b": 0.5, "c": 2.0}, {"b": 0.25, "a": 1.5, "d": 0.0})
    assert gains.tolist() == [-0.5, 0.25]  # rows a, b in key order
    assert paired_gain({"a": 1.0}, {"b": 1.0}).size == 0
