"""Augmentation filters: every bad case is dropped and counted, nothing leaks, and it is fast enough."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from tools.core.contracts import AugmentationSpec
from tools.core.schema import ParamVector, SourceType, TrainingRow
from tools.data.dataset import load_dataset
from tools.data.filters import REASONS, FilterConfig, ShingleIndex, count_leaks, filter_augmented, jaccard
from tools.data.replay import paraphrase
from tools.data.teacher import OfflineTeacher


@pytest.fixture(scope="module")
def shipped():
    return load_dataset("shipped")


def row(text: str, target: list[int] | None = None, origin: str = "teacher:test") -> TrainingRow:
    vector = ParamVector.from_list(target or [4, 6, 3, 7, 2, 8])
    return TrainingRow(request_text=text, source_type=SourceType.request_text, target=vector, origin=origin)


def first_request(rows: list[TrainingRow]) -> TrainingRow:
    return next(r for r in rows if r.source_type is SourceType.request_text)


def one_word_changed(text: str) -> str:
    words = text.split()
    middle = len(words) // 2
    return " ".join(words[:middle] + ["really"] + words[middle + 1 :])


def test_each_bad_case_is_dropped_for_its_reason_and_counted(shipped):
    valid_row, test_row = first_request(shipped.valid), first_request(shipped.test)
    train_row = first_request(shipped.train)
    batch_text = "A gentle accordion waltz for a snowy mountain village square, played slowly."

    cases = {
        "schema_range": {
            "request_text": "Loud music please for the boss fight",
            "source_type": "request_text",
            "target": dict.fromkeys(("energy", "warmth", "brightness", "acousticness", "complexity"), 1)
            | {"nostalgia": 11},
        },
        "length": row("lofi"),
        "language": row("Je voudrais une musique douce pour une soirée pluvieuse au café."),
        "numeric_leak": row("Give the energy a 4 and keep everything else relaxed and slow."),
        "protected_exact": row(valid_row.request_text.upper()),
        "protected_near": row(one_word_changed(test_row.request_text)),
        "protected_same_content": row(paraphrase(valid_row.request_text, random.Random(3))),
        "train_exact": row(train_row.request_text + "!!"),
        "train_near": row(one_word_changed(train_row.request_text)),
        "batch_exact": row(batch_text.lower()),
        "batch_near": row(batch_text.replace("slowly", "gently")),
    }
    good = [
        row(batch_text),
        row("Bouncy ukulele tune for a beach volleyball minigame, sunny and silly."),
        row("Rate nothing, just make a dark synth drone for the third dungeon floor, 9 layers deep."),
    ]
    candidates = [*good[:1], *cases.values(), *good[1:]]
    kept, report = filter_augmented(
        candidates, train=shipped.train, protected={"valid": shipped.valid, "test": shipped.test}
    )
    assert [r.request_text for r in kept] == [r.request_text for r in good]
    assert report.dropped == dict.fromkeys(REASONS, 1)
    assert report.n_candidates == len(candidates) and report.n_kept == len(good)
    assert report.dropped_against["protected_exact"] == {"valid": 1}
    assert report.dropped_against["protected_near"] == {"test": 1}
    assert report.leaked_against_protected == 0
    assert set(report.examples) == set(REASONS)


def test_ratings_and_spelled_scores_count_as_numeric_leaks(shipped):
    candidates = [
        row("Energy should be around seven out of ten for this chase scene, please."),
        row("Make it a solid 8/10 on warmth, cosy fireplace vibes for the inn."),
    ]
    kept, report = filter_augmented(candidates, train=shipped.train, protected={})
    assert kept == [] and report.dropped["numeric_leak"] == 2


def test_non_latin_text_fails_the_language_check(shipped):
    kept, report = filter_augmented(
        [row("雨の 夜に 静かな ピアノの 曲を お願いします")], train=shipped.train, protected={}
    )
    assert kept == [] and report.dropped["language"] == 1


def test_replay_rows_may_resemble_train_but_never_protected_rows(shipped):
    train_row, valid_row = first_request(shipped.train), first_request(shipped.valid)
    candidates = [
        row(one_word_changed(train_row.request_text), origin="replay:dataset"),
        row(one_word_changed(train_row.request_text).replace("really", "truly"), origin="replay:dataset"),
        row(one_word_changed(valid_row.request_text), origin="replay:dataset"),
    ]
    kept, report = filter_augmented(candidates, train=shipped.train, protected={"valid": shipped.valid})
    assert [r.request_text for r in kept] == [c.request_text for c in candidates[:2]]
    assert report.dropped["protected_near"] == 1 and report.leaked_against_protected == 0


def test_rule_prompts_sharing_only_the_frame_are_not_near_duplicates(shipped):
    rule_rows = [r for r in shipped.train if r.source_type is SourceType.rule_prompt]
    kept, report = filter_augmented(rule_rows[:100], train=[], protected={})
    assert len(kept) == 100 and report.dropped["batch_near"] == 0


def test_a_thousand_candidates_against_the_shipped_splits_take_under_five_seconds(shipped):
    candidates = OfflineTeacher().generate(AugmentationSpec(), ["energy", "warmth"], 1000, seed=8)
    started = time.perf_counter()
    kept, report = filter_augmented(
        candidates, train=shipped.train, protected={"valid": shipped.valid, "test": shipped.test}
    )
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"{elapsed:.2f}s"
    assert report.elapsed_s <= elapsed and report.leaked_against_protected == 0
    assert report.n_kept == len(kept) == 1000 - sum(report.dropped.values())


def test_the_recheck_counts_every_kept_row_that_leaks_whatever_the_kind(shipped):
    protected = {"valid": shipped.valid, "test": shipped.test}
    config = FilterConfig()
    index = ShingleIndex(
        [r.request_text for split in (shipped.train, *protected.values()) for r in split], 0.2
    )
    valid_row, test_row = first_request(shipped.valid), first_request(shipped.test)
    leaks = {
        "exact": row(valid_row.request_text.upper()),
        "near": row(one_word_changed(test_row.request_text)),
        "same content": row(paraphrase(valid_row.request_text, random.Random(3))),
    }
    clean = row("Bouncy ukulele tune for a beach volleyball minigame, sunny and silly.")
    for kind, leak in leaks.items():
        assert count_leaks([clean, leak], protected, index, config) == 1, kind
    assert count_leaks([clean, *leaks.values()], protected, index, config) == 3
    assert count_leaks([clean], protected, index, config) == 0
    assert count_leaks([], protected, index, config) == 0
    assert count_leaks([clean, leaks["exact"]], {"valid": shipped.valid, "test": []}, index, config) == 1


def test_a_similarity_exactly_at_the_threshold_is_a_near_duplicate(shipped):
    test_row = first_request(shipped.test)
    near = row(one_word_changed(test_row.request_text))
    protected = {"test": shipped.test}
    index = ShingleIndex([r.request_text for r in [*shipped.train, *shipped.test]], 0.2)
    similarity = float(
        jaccard(index.matrix([near.request_text]), index.matrix([test_row.request_text]))[0, 0]
    )
    assert 0.7 < similarity < 1
    at = FilterConfig(near_dup_threshold=similarity)
    above = FilterConfig(near_dup_threshold=float(np.nextafter(np.float32(similarity), np.float32(1))))
    assert count_leaks([near], protected, index, at) == 1
    assert count_leaks([near], protected, index, above) == 0
    _, report = filter_augmented([near], train=shipped.train, protected=protected, config=at)
    assert report.dropped["protected_near"] == 1
