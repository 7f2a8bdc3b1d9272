"""The augment stage: a candidate's training set is the champion's plus the filtered new rows, and a kept row
that leaks against valid or test stops the cycle before anything is written."""

from __future__ import annotations

import pytest

from loop.config import LoopConfig
from loop.stages.augment import TRAIN_FILE, LeakedRowsError, augment_candidate
from tools.core.contracts import AugmentationSpec, CandidateSpec
from tools.data import filters
from tools.data.dataset import load_dataset, load_jsonl


@pytest.fixture(scope="module")
def shipped():
    return load_dataset("shipped")


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))  # no champion: no replay sources
    return CandidateSpec(
        name="a",
        focus_dims=["energy"],
        augmentation=AugmentationSpec(teacher_pairs=8, replay_rows=0),
        reason="r",
    )


def test_the_training_set_is_the_champions_plus_the_kept_rows(tmp_path, spec, shipped):
    config = LoopConfig(teacher="offline")
    summary = augment_candidate(spec, tmp_path, config, shipped, list(shipped.train), seed=3)
    written = load_jsonl(tmp_path / TRAIN_FILE)
    assert summary.leaked_against_protected == 0 and summary.n_generated == 8
    assert written[: len(shipped.train)] == list(shipped.train)
    assert len(written) == summary.train_rows == len(shipped.train) + summary.n_kept
    assert summary.n_kept == len(load_jsonl(tmp_path / "generated_augmented_pairs.jsonl")) > 0


def test_a_kept_row_that_leaks_stops_the_candidate_before_anything_is_written(
    tmp_path, spec, shipped, monkeypatch
):
    """A filter that let a valid row through (a bug in its first pass): the re-check counts the leak and the
    stage refuses to go on."""
    real_filter = filters.filter_augmented

    def leaky_filter(candidates, *, train, protected, **kwargs):
        kept, report = real_filter(candidates, train=train, protected=protected, **kwargs)
        kept = [*kept, shipped.valid[0]]
        index = filters.ShingleIndex([r.request_text for r in shipped.valid], report.config.boilerplate_df)
        leaked = filters.count_leaks(kept, protected, index, report.config)
        return kept, report.model_copy(update={"n_kept": len(kept), "leaked_against_protected": leaked})

    monkeypatch.setattr(filters, "filter_augmented", leaky_filter)
    with pytest.raises(
        LeakedRowsError, match=r"^candidate a: 1 kept augmented row\(s\) match valid/test rows$"
    ):
        augment_candidate(spec, tmp_path, LoopConfig(teacher="offline"), shipped, list(shipped.train), seed=3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("split", ["valid", "test"])
def test_a_teacher_pair_that_repeats_a_held_out_row_is_dropped_whichever_split_holds_it(
    tmp_path, spec, shipped, split
):
    """The offline teacher is deterministic: the rows it wrote in a first run are planted in the held-out
    split of a second run's data (the test split as much as valid); the filter drops them before writing."""
    config = LoopConfig(teacher="offline")
    augment_candidate(spec, tmp_path / "first", config, shipped, list(shipped.train), seed=3)
    written_first = load_jsonl(tmp_path / "first" / "generated_augmented_pairs.jsonl")
    planted = written_first[:2]
    data = shipped.model_copy(update={split: [*shipped.split(split), *planted]})
    augment_candidate(spec, tmp_path / "second", config, data, list(shipped.train), seed=3)
    kept = {r.request_text for r in load_jsonl(tmp_path / "second" / "generated_augmented_pairs.jsonl")}
    train = {r.request_text for r in load_jsonl(tmp_path / "second" / TRAIN_FILE)}
    assert not {r.request_text for r in planted} & (kept | train)
    assert len(kept) < len(written_first)
