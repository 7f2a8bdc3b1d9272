"""The generator and the shipped dataset: deterministic, leak-free, valid, wide-ranged and learnable."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tools.core.schema import DIMS, SourceType
from tools.data.dataset import SHIPPED_DATA_DIR, data_hash, load_dataset, load_dir, normalise_text
from tools.data.generator import (
    DEFAULT_SEED,
    DEFAULT_SIZES,
    combine,
    content_key,
    generate_splits,
    learnability,
    load_catalogue,
    load_lexicon,
    main,
    parse_request_choice,
    parse_rule_parts,
    request_values,
    rule_target,
    to_target,
)


@pytest.fixture(scope="module")
def shipped():
    return load_dataset("shipped")


@pytest.fixture(scope="module")
def manifest():
    return json.loads((SHIPPED_DATA_DIR / "manifest.json").read_text())


def test_same_seed_gives_the_same_rows_and_another_seed_does_not():
    first, again, other = generate_splits(5), generate_splits(5), generate_splits(6)
    for split in DEFAULT_SIZES:
        assert data_hash(first[split]) == data_hash(again[split])
        assert data_hash(first[split]) != data_hash(other[split])


def test_shipped_files_are_exactly_what_the_generator_produces(shipped, manifest):
    regenerated = generate_splits(manifest["generator"]["seed"])
    assert manifest["generator"]["seed"] == DEFAULT_SEED
    for split in DEFAULT_SIZES:
        assert data_hash(shipped.split(split)) == data_hash(regenerated[split])
        assert manifest["splits"][split]["data_hash"] == data_hash(regenerated[split])


def test_manifest_records_counts_per_split_and_source_type(shipped, manifest):
    all_rows = shipped.train + shipped.valid + shipped.test
    assert manifest["data_hash"] == data_hash(all_rows)
    for split, size in DEFAULT_SIZES.items():
        rows = shipped.split(split)
        entry = manifest["splits"][split]
        assert entry["rows"] == len(rows) == size
        assert entry["by_source_type"] == {
            "request_text": sum(r.source_type is SourceType.request_text for r in rows),
            "rule_prompt": sum(r.source_type is SourceType.rule_prompt for r in rows),
        }
        assert min(entry["by_source_type"].values()) == size // 2


def test_no_request_and_no_part_or_phrase_combination_appears_twice(shipped):
    texts, contents = {}, {}
    for split in DEFAULT_SIZES:
        for row in shipped.split(split):
            norm, key = normalise_text(row.request_text), content_key(row.request_text)
            assert key is not None, row.request_text
            assert norm not in texts, f"{split} repeats a {texts.get(norm)} text"
            assert key not in contents, f"{split} repeats a {contents.get(key)} combination"
            texts[norm], contents[key] = split, split


def test_rows_load_with_the_project_loader_and_carry_no_digits(tmp_path):
    splits = generate_splits(11)
    assert all(not re.search(r"\d", row.request_text) for rows in splits.values() for row in rows)
    main(["--out", str(tmp_path), "--seed", "11", "--skip-learnability"])
    loaded = load_dir(tmp_path)
    assert data_hash(loaded.train) == data_hash(splits["train"])
    assert "learnability_train_cv" not in json.loads((tmp_path / "manifest.json").read_text())


def test_rule_targets_are_the_clipped_sum_of_the_four_parts(shipped):
    rule_rows = [r for r in shipped.train if r.source_type is SourceType.rule_prompt]
    for row in rule_rows:
        parts = parse_rule_parts(row.request_text)
        assert parts is not None
        assert row.target == rule_target(parts)
        assert row.target == to_target(combine(load_catalogue().base, [p.effects for p in parts]))


def test_request_targets_are_the_phrase_effects_plus_at_most_one_unit_of_noise_on_one_dim(shipped):
    request_rows = [r for r in shipped.train if r.source_type is SourceType.request_text]
    noisy = 0
    for row in request_rows:
        choice = parse_request_choice(row.request_text)
        assert choice is not None
        clean = np.array(to_target(request_values(choice)).as_list())
        diff = np.abs(np.array(row.target.as_list()) - clean)
        assert diff.max() <= load_lexicon().noise.magnitude and (diff > 0).sum() <= 1
        noisy += int(diff.any())
    assert 0 < noisy / len(request_rows) <= load_lexicon().noise.probability + 0.05


def test_targets_span_a_wide_range_on_every_dim(shipped):
    targets = np.array([r.target.as_list() for r in shipped.train])
    for i, dim in enumerate(DIMS):
        assert targets[:, i].min() <= 1 and targets[:, i].max() >= 9, dim
        assert targets[:, i].std() >= 1.8, dim


def test_every_part_and_phrase_is_seen_in_train(shipped):
    seen = set()
    for row in shipped.train:
        seen |= content_key(row.request_text)[1]
    parts = {p.id for ps in load_catalogue().slots.values() for p in ps}
    phrases = {p.id for cat in load_lexicon().categories.values() for p in cat.phrases}
    assert parts | phrases <= seen


def test_ridge_beats_the_median_by_a_wide_margin_on_both_source_types(shipped, manifest):
    figures = learnability(shipped.train)
    assert figures == manifest["learnability_train_cv"]
    for source_type in ("rule_prompt", "request_text"):
        entry = figures[source_type]
        assert entry["ridge_mae"] <= 0.6 * entry["median_mae"], (source_type, entry)
        # learnable but not trivial: free text keeps an irreducible error (noise, clipping, overlap)
    assert figures["request_text"]["ridge_mae"] > 0.5
