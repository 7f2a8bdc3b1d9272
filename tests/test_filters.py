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


def test_a_thousand_candidates_against_the_shipped_splits_are_each_kept_or_dropped_for_a_reason(shipped):
    candidates = OfflineTeacher().generate(AugmentationSpec(), ["energy", "warmth"], 1000, seed=8)
    started = time.perf_counter()
    kept, report = filter_augmented(
        candidates, train=shipped.train, protected={"valid": shipped.valid, "test": shipped.test}
    )
    assert 0 < report.elapsed_s <= time.perf_counter() - started and report.leaked_against_protected == 0
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


def test_shingles_are_the_character_5_grams_of_the_normalised_text_padded_with_spaces():
    from tools.data.filters import _shingles

    assert _shingles("A calm!") == {" a ca", "a cal", " calm", "calm "}
    assert _shingles("ab") == {" ab "}  # shorter than a shingle: the whole padded text


def test_boilerplate_is_what_more_than_the_allowed_share_of_references_contain():
    index = ShingleIndex(["abcd", "abcd", "wxyz", "qrst"], boilerplate_df=0.5)  # limit: 2 of 4 rows
    assert " abcd" in index.vocabulary and " wxyz" in index.vocabulary
    assert " abcd" not in ShingleIndex(["abcd", "abcd", "abcd", "qrst"], boilerplate_df=0.5).vocabulary


def test_jaccard_is_one_for_equal_sets_and_zero_when_both_are_empty():
    index = ShingleIndex(["abc", "xyz"], boilerplate_df=1.0)
    one_shingle = index.matrix(["abc"])  # {" abc "}
    nothing = index.matrix(["unrelated text"])
    assert jaccard(one_shingle, one_shingle).tolist() == [[1.0]]
    assert jaccard(nothing, nothing).tolist() == [[0.0]]
    assert jaccard(one_shingle, index.matrix(["xyz"])).tolist() == [[0.0]]


def test_a_decimal_number_is_not_a_target_value_but_a_whole_one_written_with_a_comma_is(shipped):
    candidates = [
        row("Keep the warmth near 4,5 and the groove slow for the tea house.", target=[4, 6, 3, 7, 2, 8]),
        row("Keep the warmth near 4,0 and the groove slow for the tea house.", target=[4, 6, 3, 7, 2, 8]),
    ]
    kept, report = filter_augmented(candidates, train=shipped.train, protected={})
    assert [r.request_text for r in kept] == [candidates[0].request_text]
    assert report.dropped["numeric_leak"] == 1


def test_raw_records_are_parsed_and_a_bad_one_is_dropped_naming_it(shipped):
    good = {
        "request_text": "A bright marimba jingle for a seaside fish market at dawn.",
        "source_type": "request_text",
        "target": dict.fromkeys(
            ("energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia"), 5
        ),
    }
    bad = good | {"target": good["target"] | {"nostalgia": 11}}
    kept, report = filter_augmented([good, bad], train=shipped.train, protected={})
    assert [r.request_text for r in kept] == [good["request_text"]]
    assert report.examples["schema_range"] == [
        "candidate 1: nostalgia: Input should be less than or equal to 10"
    ]


def test_length_bounds_are_inclusive_and_need_enough_words(shipped):
    sentence = "A gentle harp melody for the quiet reading room of the old lighthouse library. "
    at_max = (sentence * 11)[:799] + "."
    candidates = [
        row("a calm cozy mix"),  # 15 characters, 4 words
        row(at_max),
        row(at_max + "x"),  # 801 characters
        row("Extremely soothing lullabies"),  # long enough, 3 words
    ]
    assert (len(candidates[0].request_text), len(at_max)) == (15, 800)
    kept, report = filter_augmented(
        candidates, train=[], protected={}, config=FilterConfig(near_dup_threshold=1.1)
    )
    assert [r.request_text for r in kept] == [candidates[0].request_text, at_max]
    assert report.dropped["length"] == 2
    assert [len(e) for e in report.examples["length"]] == [160, len("Extremely soothing lullabies")]


def test_drops_are_counted_per_protected_split_with_three_examples_at_most(shipped):
    valid_rows = [r for r in shipped.valid if r.source_type is SourceType.request_text][:4]
    candidates = [row(r.request_text.upper()) for r in valid_rows]
    _, report = filter_augmented(
        candidates, train=shipped.train, protected={"valid": shipped.valid, "test": []}
    )
    assert report.dropped["protected_exact"] == 4
    assert report.dropped_against["protected_exact"] == {"valid": 4}
    assert report.examples["protected_exact"] == [c.request_text[:160] for c in candidates[:3]]
    assert report.protected_rows == {"valid": len(shipped.valid), "test": 0}


def test_same_content_drops_name_the_protected_split(shipped):
    valid_row = first_request(shipped.valid)
    candidate = row(paraphrase(valid_row.request_text, random.Random(3)))
    _, report = filter_augmented([candidate], train=shipped.train, protected={"valid": shipped.valid})
    assert report.dropped_against["protected_same_content"] == {"valid": 1}
    assert report.examples["protected_same_content"] == [candidate.request_text[:160]]


def test_a_batch_similarity_exactly_at_the_threshold_is_a_near_duplicate(shipped):
    first = row("A gentle accordion waltz for a snowy mountain village square, played slowly.")
    second = row("A gentle accordion waltz for a snowy mountain village square, played gently.")
    index = ShingleIndex([r.request_text for r in shipped.train], 0.2)
    similarity = float(jaccard(*(index.matrix([r.request_text]) for r in (first, second)))[0, 0])
    assert 0.5 < similarity < 1
    kept, report = filter_augmented(
        [first, second], train=shipped.train, protected={}, config=FilterConfig(near_dup_threshold=similarity)
    )
    assert kept == [first] and report.dropped["batch_near"] == 1


def test_the_report_times_the_filtering(shipped):
    started = time.perf_counter()
    _, report = filter_augmented(
        [row("A cheerful banjo tune for a county fair.")], train=shipped.train, protected={}
    )
    assert 0 < report.elapsed_s <= time.perf_counter() - started + 1e-4


def test_the_language_check_allows_five_percent_non_ascii_and_needs_a_fifth_of_known_words():
    from tools.data.filters import language_ok

    config = FilterConfig()
    assert language_ok("café a calm the tune", config)  # 1 non-ASCII character in 20: exactly 5%
    assert not language_ok("cafés a calm thé tun", config)  # 2 in 20
    assert language_ok("a zorb flink quazz blorpt", config)  # 1 known word in 5: exactly a fifth
    assert not language_ok("a zorb flink quazz blorpt snee grolm vrask plimp trell", config)  # 1 in 10
    assert not language_ok("!!! ???", config)  # no words at all


def test_a_similarity_to_train_exactly_at_the_threshold_is_a_near_duplicate(shipped):
    train_row = first_request(shipped.train)
    near = row(one_word_changed(train_row.request_text))
    index = ShingleIndex([r.request_text for r in shipped.train], 0.2)
    similarity = float(
        jaccard(index.matrix([near.request_text]), index.matrix([train_row.request_text]))[0, 0]
    )
    assert 0.5 < similarity < 1
    _, report = filter_augmented(
        [near], train=shipped.train, protected={}, config=FilterConfig(near_dup_threshold=similarity)
    )
    assert report.dropped["train_near"] == 1


def test_a_shingle_in_every_one_of_few_references_is_boilerplate():
    assert ShingleIndex(["abcd"], boilerplate_df=0.5).vocabulary == {}
    assert ShingleIndex(["abcd"], boilerplate_df=1.0).vocabulary == {" abcd": 0, "abcd ": 1}
