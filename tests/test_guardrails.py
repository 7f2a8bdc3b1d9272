"""Guardrails clip every CyclePlan value to its documented range and say what they clipped."""

from __future__ import annotations

import pytest

from agent.guardrails import apply_guardrails, describe_ranges
from tools.core.contracts import AugmentationSpec, CyclePlan, HParams


def plan(hparams: HParams | None = None, augmentation: AugmentationSpec | None = None, **fields) -> CyclePlan:
    return CyclePlan(
        cycle=3,
        focus_dims=fields.pop("focus_dims", ["energy"]),
        augmentation=augmentation or AugmentationSpec(target_buckets={"energy": [0, 10]}),
        hparams=hparams or HParams(),
        reasons={"focus_dims": "x", "augmentation": "y"},
        **fields,
    )


def test_a_plan_inside_every_range_is_returned_unchanged() -> None:
    original = plan()
    assert apply_guardrails(original) == original


@pytest.mark.parametrize(
    ("field", "value", "expected", "line"),
    [
        ("learning_rate", 0.05, 5e-3, "learning_rate 0.05 -> 0.005 (allowed 1e-05 .. 0.005)"),
        ("learning_rate", 1e-7, 1e-5, "learning_rate 1e-07 -> 1e-05 (allowed 1e-05 .. 0.005)"),
        ("lora_dropout", 0.6, 0.3, "lora_dropout 0.6 -> 0.3 (allowed 0 .. 0.3)"),
        ("epochs", 0.1, 0.5, "epochs 0.1 -> 0.5 (allowed 0.5 .. 4)"),
        ("epochs", 10.0, 4.0, "epochs 10 -> 4 (allowed 0.5 .. 4)"),
        ("batch_size", 0, 1, "batch_size 0 -> 1 (allowed 1 .. 32)"),
        ("batch_size", 64, 32, "batch_size 64 -> 32 (allowed 1 .. 32)"),
        ("grad_accum", 20, 8, "grad_accum 20 -> 8 (allowed 1 .. 8)"),
    ],
)
def test_each_hparam_is_clipped_to_its_range_and_the_clip_recorded(field, value, expected, line) -> None:
    clipped = apply_guardrails(plan(HParams(**{field: value})))
    assert getattr(clipped.hparams, field) == expected
    assert clipped.clipped == [line]


def test_a_non_finite_learning_rate_is_replaced() -> None:
    clipped = apply_guardrails(plan(HParams(learning_rate=float("nan"))))
    assert clipped.hparams.learning_rate == 2e-4
    assert clipped.clipped == ["learning_rate nan -> 0.0002 (not a finite number)"]


@pytest.mark.parametrize(("rank", "expected"), [(48, 32), (2, 4), (12, 8), (100, 64), (24, 16)])
def test_lora_rank_snaps_to_the_nearest_allowed_rank(rank: int, expected: int) -> None:
    clipped = apply_guardrails(plan(HParams(lora_r=rank, lora_alpha=expected)))
    assert clipped.hparams.lora_r == expected
    assert clipped.clipped == [f"lora_r {rank} -> {expected} (allowed 4, 8, 16, 32, 64)"]


def test_lora_alpha_is_bounded_by_four_times_the_clipped_rank() -> None:
    clipped = apply_guardrails(plan(HParams(lora_r=6, lora_alpha=100)))
    assert (clipped.hparams.lora_r, clipped.hparams.lora_alpha) == (4, 16)
    assert clipped.clipped[-1] == "lora_alpha 100 -> 16 (allowed 1 .. 4*lora_r = 16)"
    assert apply_guardrails(plan(HParams(lora_alpha=0))).hparams.lora_alpha == 1


def test_augmentation_sizes_are_clipped() -> None:
    clipped = apply_guardrails(plan(augmentation=AugmentationSpec(new_pairs=5000, replay_ratio=1.5)))
    assert (clipped.augmentation.new_pairs, clipped.augmentation.replay_ratio) == (600, 1.0)
    assert clipped.clipped == [
        "new_pairs 5000 -> 600 (allowed 0 .. 600)",
        "replay_ratio 1.5 -> 1 (allowed 0 .. 1)",
    ]


def test_buckets_are_kept_to_focus_dims_and_distinct_scale_values() -> None:
    spec = AugmentationSpec(target_buckets={"energy": [12, 0, 0, -3], "warmth": [1]})
    clipped = apply_guardrails(plan(augmentation=spec))
    assert clipped.augmentation.target_buckets == {"energy": [0, 10]}
    assert "target_buckets[energy] [12, 0, 0, -3] -> [0, 10] (distinct integers 0 .. 10)" in clipped.clipped
    assert "target_buckets[warmth] dropped (not a focus dim)" in clipped.clipped


def test_duplicate_focus_dims_are_dropped() -> None:
    clipped = apply_guardrails(plan(focus_dims=["energy", "energy", "warmth"]))
    assert clipped.focus_dims == ["energy", "warmth"]
    assert clipped.clipped == [
        "focus_dims ['energy', 'energy', 'warmth'] -> ['energy', 'warmth'] (distinct dims)"
    ]


def test_earlier_clips_are_kept_and_every_range_is_described() -> None:
    clipped = apply_guardrails(plan(HParams(epochs=9), clipped=["from the model: something"]))
    assert clipped.clipped == ["from the model: something", "epochs 9 -> 4 (allowed 0.5 .. 4)"]
    assert set(describe_ranges()) >= {*HParams.model_fields, *AugmentationSpec.model_fields, "focus_dims"}
