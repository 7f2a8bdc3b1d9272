"""Guardrails: every value of a `CyclePlan` is clipped to a documented range, and every clip is recorded.

| value                       | allowed                                  | out of range →                  |
|-----------------------------|------------------------------------------|---------------------------------|
| hparams.learning_rate       | 1e-5 .. 5e-3                             | nearest bound (NaN → 2e-4)      |
| hparams.lora_r              | one of 4, 8, 16, 32, 64                  | nearest rank (ties → lower)     |
| hparams.lora_alpha          | 1 .. 4·r (r after clipping)              | nearest bound                   |
| hparams.lora_dropout        | 0 .. 0.3                                 | nearest bound (NaN → 0.05)      |
| hparams.epochs              | 0.5 .. 4                                 | nearest bound (NaN → 1)         |
| hparams.batch_size          | 1 .. 32                                  | nearest bound                   |
| hparams.grad_accum          | 1 .. 8                                   | nearest bound                   |
| augmentation.teacher_pairs  | 0 .. what the teacher can write (capacity)| nearest bound                  |
| augmentation.replay_rows    | 0 .. what replay can make (capacity)     | nearest bound                   |
| augmentation.target_buckets | focus dims only; distinct ints 0 .. 10   | dropped / clipped / deduplicated|
| focus_dims                  | 1 .. 3 distinct dims (schema: 1 .. 3)    | duplicates dropped              |
| student.options             | fields of the LM student's own config    | unknown keys dropped            |
| student.options hyperparam. | a name of `HParams` (learning_rate, ...) | moved into hparams, then bounded|
| student.components (stack)  | at least one                             | the default stack               |

Every candidate of a plan is clipped; each clip appends a line such as
`candidate b: lora_r 48 -> 32 (allowed 4, 8, 16, 32, 64)` to `plan.clipped`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from pydantic import ValidationError

from tools.core.contracts import AugmentationSpec, CandidateSpec, Capacity, CyclePlan, HParams, StudentRecipe
from tools.core.schema import SCALE_MAX, SCALE_MIN


class Bounds(NamedTuple):
    low: float
    high: float


HPARAM_BOUNDS: dict[str, Bounds] = {
    "learning_rate": Bounds(1e-5, 5e-3),
    "lora_dropout": Bounds(0.0, 0.3),
    "epochs": Bounds(0.5, 4.0),
    "batch_size": Bounds(1, 32),
    "grad_accum": Bounds(1, 8),
}
LORA_RANKS: tuple[int, ...] = (4, 8, 16, 32, 64)
LORA_ALPHA_MAX_FACTOR = 4
MAX_FOCUS_DIMS = 3


def describe_ranges(capacity: Capacity) -> dict[str, str]:
    """Human-readable ranges (shown to model-backed planners in their prompt)."""
    ranges = {name: f"{b.low:g} .. {b.high:g}" for name, b in HPARAM_BOUNDS.items()}
    ranges["lora_r"] = "one of " + ", ".join(map(str, LORA_RANKS))
    ranges["lora_alpha"] = f"1 .. {LORA_ALPHA_MAX_FACTOR}*lora_r"
    ranges["teacher_pairs"] = f"0 .. {capacity.max_teacher_pairs} (teacher: {capacity.teacher})"
    ranges["replay_rows"] = f"0 .. {capacity.max_replay_rows}"
    ranges["target_buckets"] = f"per focus dim, distinct integers {SCALE_MIN} .. {SCALE_MAX}"
    ranges["focus_dims"] = f"1 .. {MAX_FOCUS_DIMS} distinct dims"
    return ranges


def _clip(name: str, value: float, bounds: Bounds, clipped: list[str]) -> float:
    if math.isnan(value):  # NaN compares false with both bounds: it would pass through
        default = HParams.model_fields[name].default
        clipped.append(f"{name} {value} -> {default:g} (not a finite number)")
        return default
    bounded = min(max(value, bounds.low), bounds.high)
    if bounded != value:
        clipped.append(f"{name} {value:g} -> {bounded:g} (allowed {bounds.low:g} .. {bounds.high:g})")
    return bounded


def _nearest_rank(rank: int, clipped: list[str]) -> int:
    if rank in LORA_RANKS:
        return rank
    nearest = min(LORA_RANKS, key=lambda allowed: (abs(allowed - rank), allowed))
    clipped.append(f"lora_r {rank} -> {nearest} (allowed {', '.join(map(str, LORA_RANKS))})")
    return nearest


def clip_hparams(hparams: HParams, clipped: list[str]) -> HParams:
    values = hparams.model_dump()
    for name, bounds in HPARAM_BOUNDS.items():
        bounded = _clip(name, float(values[name]), bounds, clipped)
        values[name] = int(bounded) if isinstance(values[name], int) else bounded
    values["lora_r"] = _nearest_rank(values["lora_r"], clipped)
    alpha_high = LORA_ALPHA_MAX_FACTOR * values["lora_r"]
    alpha = min(max(values["lora_alpha"], 1), alpha_high)
    if alpha != values["lora_alpha"]:
        clipped.append(
            f"lora_alpha {values['lora_alpha']} -> {alpha} "
            f"(allowed 1 .. {LORA_ALPHA_MAX_FACTOR}*lora_r = {alpha_high})"
        )
    values["lora_alpha"] = alpha
    return HParams(**values)


def clip_augmentation(
    spec: AugmentationSpec, focus_dims: list[str], capacity: Capacity, clipped: list[str]
) -> AugmentationSpec:
    teacher_pairs = int(
        _clip("teacher_pairs", spec.teacher_pairs, Bounds(0, capacity.max_teacher_pairs), clipped)
    )
    replay_rows = int(_clip("replay_rows", spec.replay_rows, Bounds(0, capacity.max_replay_rows), clipped))
    buckets: dict[str, list[int]] = {}
    for dim, values in spec.target_buckets.items():
        if dim not in focus_dims:
            clipped.append(f"target_buckets[{dim}] dropped (not a focus dim)")
            continue
        kept = sorted({min(max(value, SCALE_MIN), SCALE_MAX) for value in values})
        out_of_range = any(not SCALE_MIN <= value <= SCALE_MAX for value in values)
        if out_of_range or len(set(values)) != len(values):
            clipped.append(
                f"target_buckets[{dim}] {values} -> {kept} (distinct integers {SCALE_MIN} .. {SCALE_MAX})"
            )
        buckets[dim] = kept
    return AugmentationSpec(teacher_pairs=teacher_pairs, replay_rows=replay_rows, target_buckets=buckets)


def clip_student(recipe: StudentRecipe, clipped: list[str]) -> StudentRecipe:
    from tools.student.generative_training import TrainConfig
    from tools.student.regression import RegressionConfig

    known = (TrainConfig if recipe.member_kind == "generative" else RegressionConfig).model_fields
    unknown = sorted(set(recipe.options) - set(known))
    if unknown:
        clipped.append(
            f"student.options {', '.join(unknown)} dropped (not knobs of the {recipe.member_kind} student)"
        )
    update: dict[str, object] = {"options": {k: v for k, v in recipe.options.items() if k in known}}
    if recipe.family == "stack" and not recipe.components:
        clipped.append("student.components [] -> the default stack (a stack needs a component)")
        update["components"] = StudentRecipe().components
    return recipe.model_copy(update=update)


def split_hparam_options(options: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """(hyperparameters, other knobs) of a student's options: a hyperparameter has one door, `HParams`."""
    hparams = {k: v for k, v in options.items() if k in HParams.model_fields}
    return hparams, {k: v for k, v in options.items() if k not in HParams.model_fields}


def _move_hparam_options(spec: CandidateSpec, clipped: list[str]) -> CandidateSpec:
    moved, others = split_hparam_options(spec.student.options)
    if not moved:
        return spec
    names = ", ".join(sorted(moved))
    try:
        hparams = HParams.model_validate({**spec.hparams.model_dump(), **moved})
        clipped.append(f"student.options {names} moved into hparams (hyperparameters are bounded there)")
    except ValidationError:
        hparams = spec.hparams
        clipped.append(f"student.options {names} dropped (not valid hyperparameter values)")
    return spec.model_copy(
        update={"hparams": hparams, "student": spec.student.model_copy(update={"options": others})}
    )


def clip_candidate(spec: CandidateSpec, capacity: Capacity, clipped: list[str]) -> CandidateSpec:
    """A copy of one candidate with every value inside its range; clips appended to `clipped`."""
    spec = _move_hparam_options(spec, clipped)
    focus_dims = list(dict.fromkeys(spec.focus_dims))
    if focus_dims != spec.focus_dims:
        clipped.append(f"focus_dims {spec.focus_dims} -> {focus_dims} (distinct dims)")
    return spec.model_copy(
        update={
            "focus_dims": focus_dims,
            "hparams": clip_hparams(spec.hparams, clipped),
            "augmentation": clip_augmentation(spec.augmentation, focus_dims, capacity, clipped),
            "student": clip_student(spec.student, clipped),
        }
    )


def apply_guardrails(plan: CyclePlan, capacity: Capacity) -> CyclePlan:
    """A copy of `plan` with every candidate inside its documented ranges; clips appended to `clipped`."""
    clipped = list(plan.clipped)
    candidates = []
    for spec in plan.candidates:
        lines: list[str] = []
        candidates.append(clip_candidate(spec, capacity, lines))
        clipped.extend(f"candidate {spec.name}: {line}" for line in lines)
    return plan.model_copy(update={"candidates": candidates, "clipped": clipped})
