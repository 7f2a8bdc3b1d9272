"""Guardrails clip every value of every candidate of a CyclePlan to its documented range, augmentation to what
this cycle can deliver, and say what they clipped, naming the candidate."""

from __future__ import annotations

import pytest

from agent.guardrails import apply_guardrails, clip_candidate, describe_ranges
from tools.core.contracts import AugmentationSpec, CandidateSpec, Capacity, CyclePlan, HParams, StudentRecipe

CAPACITY = Capacity(teacher="offline", max_teacher_pairs=600, max_replay_rows=40)


def candidate(name: str = "a", **fields) -> CandidateSpec:
    fields.setdefault("focus_dims", ["energy"])
    fields.setdefault("augmentation", AugmentationSpec(teacher_pairs=100, replay_rows=20))
    return CandidateSpec(name=name, reason="because", **fields)


def plan(*candidates: CandidateSpec, clipped: list[str] | None = None) -> CyclePlan:
    return CyclePlan(
        cycle=3,
        candidates=list(candidates) or [candidate()],
        reasons={"focus_dims": "x", "search": "y"},
        clipped=clipped or [],
    )


def clip_lines(spec: CandidateSpec, capacity: Capacity = CAPACITY) -> tuple[CandidateSpec, list[str]]:
    lines: list[str] = []
    return clip_candidate(spec, capacity, lines), lines


def test_a_plan_inside_every_range_is_returned_unchanged() -> None:
    original = plan(
        candidate("a", augmentation=AugmentationSpec(target_buckets={"energy": [0, 10]})),
        candidate("b", student=StudentRecipe(family="regression", options={"layers_kept": 6})),
    )
    assert apply_guardrails(original, CAPACITY) == original


@pytest.mark.parametrize(
    ("field", "value", "expected", "line"),
    [
        ("learning_rate", 0.05, 5e-3, "learning_rate 0.05 -> 0.005 (allowed 1e-05 .. 0.005)"),
        ("learning_rate", 1e-7, 1e-5, "learning_rate 1e-07 -> 1e-05 (allowed 1e-05 .. 0.005)"),
        ("learning_rate", float("inf"), 5e-3, "learning_rate inf -> 0.005 (allowed 1e-05 .. 0.005)"),
        ("lora_dropout", 0.6, 0.3, "lora_dropout 0.6 -> 0.3 (allowed 0 .. 0.3)"),
        ("lora_dropout", -0.1, 0.0, "lora_dropout -0.1 -> 0 (allowed 0 .. 0.3)"),
        ("epochs", 0.1, 0.5, "epochs 0.1 -> 0.5 (allowed 0.5 .. 4)"),
        ("epochs", 10.0, 4.0, "epochs 10 -> 4 (allowed 0.5 .. 4)"),
        ("batch_size", 0, 1, "batch_size 0 -> 1 (allowed 1 .. 32)"),
        ("batch_size", 64, 32, "batch_size 64 -> 32 (allowed 1 .. 32)"),
        ("grad_accum", 0, 1, "grad_accum 0 -> 1 (allowed 1 .. 8)"),
        ("grad_accum", 20, 8, "grad_accum 20 -> 8 (allowed 1 .. 8)"),
    ],
)
def test_each_hparam_is_clipped_to_its_range_and_the_clip_recorded_with_the_candidate(
    field, value, expected, line
) -> None:
    clipped = apply_guardrails(plan(candidate("b", hparams=HParams(**{field: value}))), CAPACITY)
    assert getattr(clipped.candidates[0].hparams, field) == expected
    assert type(getattr(clipped.candidates[0].hparams, field)) is type(getattr(HParams(), field))
    assert clipped.clipped == [f"candidate b: {line}"]


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("learning_rate", 1e-5, 5e-3),
        ("lora_dropout", 0.0, 0.3),
        ("epochs", 0.5, 4.0),
        ("batch_size", 1, 32),
        ("grad_accum", 1, 8),
    ],
)
def test_values_on_the_bounds_are_kept(field, low, high) -> None:
    for value in (low, high):
        spec, lines = clip_lines(candidate(hparams=HParams(**{field: value})))
        assert getattr(spec.hparams, field) == value and lines == []


@pytest.mark.parametrize(
    ("field", "default"), [("learning_rate", 2e-4), ("lora_dropout", 0.05), ("epochs", 1.0)]
)
def test_a_value_that_is_not_a_number_is_replaced_by_the_default(field, default) -> None:
    spec, lines = clip_lines(candidate(hparams=HParams(**{field: float("nan")})))
    assert getattr(spec.hparams, field) == default
    assert lines == [f"{field} nan -> {default:g} (not a finite number)"]


@pytest.mark.parametrize(("rank", "expected"), [(48, 32), (2, 4), (12, 8), (100, 64), (24, 16), (6, 4)])
def test_lora_rank_snaps_to_the_nearest_allowed_rank_ties_to_the_lower(rank: int, expected: int) -> None:
    spec, lines = clip_lines(candidate(hparams=HParams(lora_r=rank, lora_alpha=expected)))
    assert spec.hparams.lora_r == expected
    assert lines == [f"lora_r {rank} -> {expected} (allowed 4, 8, 16, 32, 64)"]


def test_lora_alpha_is_bounded_by_four_times_the_clipped_rank() -> None:
    spec, lines = clip_lines(candidate(hparams=HParams(lora_r=6, lora_alpha=100)))
    assert (spec.hparams.lora_r, spec.hparams.lora_alpha) == (4, 16)
    assert lines[-1] == "lora_alpha 100 -> 16 (allowed 1 .. 4*lora_r = 16)"
    spec, lines = clip_lines(candidate(hparams=HParams(lora_alpha=0)))
    assert spec.hparams.lora_alpha == 1 and lines == ["lora_alpha 0 -> 1 (allowed 1 .. 4*lora_r = 64)"]
    for alpha in (1, 64):
        assert clip_lines(candidate(hparams=HParams(lora_r=16, lora_alpha=alpha)))[1] == []


def test_augmentation_is_clipped_to_what_this_cycle_can_deliver() -> None:
    capacity = Capacity(teacher="none", max_teacher_pairs=0, max_replay_rows=12)
    spec, lines = clip_lines(
        candidate(augmentation=AugmentationSpec(teacher_pairs=120, replay_rows=30)), capacity
    )
    assert (spec.augmentation.teacher_pairs, spec.augmentation.replay_rows) == (0, 12)
    assert lines == ["teacher_pairs 120 -> 0 (allowed 0 .. 0)", "replay_rows 30 -> 12 (allowed 0 .. 12)"]
    at_capacity = AugmentationSpec(teacher_pairs=600, replay_rows=40)
    assert clip_lines(candidate(augmentation=at_capacity)) == (candidate(augmentation=at_capacity), [])
    nothing = AugmentationSpec(teacher_pairs=0, replay_rows=0)
    assert clip_lines(candidate(augmentation=nothing)) == (candidate(augmentation=nothing), [])


def test_buckets_are_kept_to_focus_dims_and_distinct_scale_values() -> None:
    spec = AugmentationSpec(target_buckets={"energy": [12, 0, 0, -3], "warmth": [1]})
    clipped, lines = clip_lines(candidate(augmentation=spec))
    assert clipped.augmentation.target_buckets == {"energy": [0, 10]}
    assert lines == [
        "target_buckets[energy] [12, 0, 0, -3] -> [0, 10] (distinct integers 0 .. 10)",
        "target_buckets[warmth] dropped (not a focus dim)",
    ]
    duplicates, lines = clip_lines(
        candidate(augmentation=AugmentationSpec(target_buckets={"energy": [3, 3]}))
    )
    assert duplicates.augmentation.target_buckets == {"energy": [3]}
    assert lines == ["target_buckets[energy] [3, 3] -> [3] (distinct integers 0 .. 10)"]
    out_of_range, lines = clip_lines(
        candidate(augmentation=AugmentationSpec(target_buckets={"warmth": [2], "energy": [12, 5]}))
    )
    assert out_of_range.augmentation.target_buckets == {"energy": [5, 10]}
    assert lines == [
        "target_buckets[warmth] dropped (not a focus dim)",
        "target_buckets[energy] [12, 5] -> [5, 10] (distinct integers 0 .. 10)",
    ]
    unsorted, lines = clip_lines(candidate(augmentation=AugmentationSpec(target_buckets={"energy": [10, 0]})))
    assert unsorted.augmentation.target_buckets == {"energy": [0, 10]} and lines == []


def test_duplicate_focus_dims_are_dropped() -> None:
    spec, lines = clip_lines(candidate(focus_dims=["energy", "energy", "warmth"]))
    assert spec.focus_dims == ["energy", "warmth"]
    assert lines == ["focus_dims ['energy', 'energy', 'warmth'] -> ['energy', 'warmth'] (distinct dims)"]


@pytest.mark.parametrize(
    ("family", "kept", "dropped"),
    [("regression", "layers_kept", "warmup_ratio"), ("generative", "warmup_ratio", "layers_kept")],
)
def test_unknown_student_options_are_dropped(family, kept, dropped) -> None:
    recipe = StudentRecipe(family=family, options={kept: 0.1, dropped: 1, "zz": 2})
    spec, lines = clip_lines(candidate(student=recipe))
    assert set(spec.student.options) == {kept}
    assert lines == [f"student.options {dropped}, zz dropped (not knobs of the {family} student)"]


def test_a_stack_without_components_gets_the_default_stack() -> None:
    spec, lines = clip_lines(candidate(student=StudentRecipe(family="stack", components=[])))
    assert spec.student.components == StudentRecipe().components
    assert lines == ["student.components [] -> the default stack (a stack needs a component)"]
    baseline = StudentRecipe(family="baseline", baseline="train-median", components=[])
    assert clip_lines(candidate(student=baseline))[1] == []


def test_every_candidate_is_clipped_and_each_clip_names_its_candidate() -> None:
    clipped = apply_guardrails(
        plan(
            candidate("a", hparams=HParams(epochs=9)),
            candidate("b"),
            candidate("c", augmentation=AugmentationSpec(teacher_pairs=5000)),
        ),
        CAPACITY,
    )
    assert [c.name for c in clipped.candidates] == ["a", "b", "c"]
    assert clipped.candidates[0].hparams.epochs == 4.0
    assert clipped.candidates[2].augmentation.teacher_pairs == 600
    assert clipped.candidates[1] == candidate("b")
    assert clipped.clipped == [
        "candidate a: epochs 9 -> 4 (allowed 0.5 .. 4)",
        "candidate c: teacher_pairs 5000 -> 600 (allowed 0 .. 600)",
    ]


def test_earlier_clips_are_kept() -> None:
    clipped = apply_guardrails(
        plan(candidate(hparams=HParams(epochs=9)), clipped=["from the model: x"]), CAPACITY
    )
    assert clipped.clipped == ["from the model: x", "candidate a: epochs 9 -> 4 (allowed 0.5 .. 4)"]


def test_every_range_is_described_with_the_capacity() -> None:
    ranges = describe_ranges(CAPACITY)
    assert set(ranges) >= {*HParams.model_fields, *AugmentationSpec.model_fields, "focus_dims"}
    assert ranges["learning_rate"] == "1e-05 .. 0.005"
    assert ranges["lora_r"] == "one of 4, 8, 16, 32, 64"
    assert ranges["lora_alpha"] == "1 .. 4*lora_r"
    assert ranges["teacher_pairs"] == "0 .. 600 (teacher: offline)"
    assert ranges["replay_rows"] == "0 .. 40"
    assert ranges["target_buckets"] == "per focus dim, distinct integers 0 .. 10"
    assert ranges["focus_dims"] == "1 .. 3 distinct dims"


@pytest.mark.parametrize("family", ["regression", "generative", "stack"])
def test_a_hyperparameter_sent_as_a_student_option_gets_the_same_bounds(family) -> None:
    """One door per knob: `options={"learning_rate": 1.0}` is the plan's learning rate, clipped to 5e-3,
    and no longer an option that the trainer's config would apply over the clipped hparams."""
    recipe = StudentRecipe(family=family, options={"learning_rate": 1.0, "lora_r": 48})
    spec, lines = clip_lines(candidate(student=recipe))
    assert spec.hparams.learning_rate == 5e-3 and spec.hparams.lora_r == 32
    assert "learning_rate" not in spec.student.options and "lora_r" not in spec.student.options
    assert lines[:2] == [
        "student.options learning_rate, lora_r moved into hparams (hyperparameters are bounded there)",
        "learning_rate 1 -> 0.005 (allowed 1e-05 .. 0.005)",
    ]


def test_a_hyperparameter_option_that_is_not_a_value_is_dropped() -> None:
    spec, lines = clip_lines(candidate(student=StudentRecipe(options={"epochs": "many"})))
    assert spec.hparams == HParams() and "epochs" not in spec.student.options
    assert lines == ["student.options epochs dropped (not valid hyperparameter values)"]


@pytest.mark.parametrize("config_class", ["regression", "generative"])
def test_the_trainers_configs_take_hyperparameters_from_hparams_only(config_class) -> None:
    """The last door: a student's config refuses an override of a knob the guardrails bound."""
    from tools.student.generative_training import TrainConfig
    from tools.student.regression import RegressionConfig

    config = RegressionConfig if config_class == "regression" else TrainConfig
    with pytest.raises(ValueError, match="learning_rate: hyperparameters are set through HParams"):
        config.from_hparams(HParams(), learning_rate=1.0)
    assert config.from_hparams(HParams(learning_rate=5e-3)).learning_rate == 5e-3
