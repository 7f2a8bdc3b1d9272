"""Guardrails: every value of a `CyclePlan` is clipped to a documented range, and every clip is recorded.

| value                       | allowed                                  | out of range →                  |
|-----------------------------|------------------------------------------|---------------------------------|
| hparams.learning_rate       | 1e-5 .. 5e-3 (finite)                    | nearest bound (NaN → 2e-4)      |
| hparams.lora_r              | one of 4, 8, 16, 32, 64                  | nearest rank (ties → lower)     |
| hparams.lora_alpha          | 1 .. 4·r (r after clipping)              | nearest bound                   |
| hparams.lora_dropout        | 0 .. 0.3                                 | nearest bound                   |
| hparams.epochs              | 0.5 .. 4                                 | nearest bound                   |
| hparams.batch_size          | 1 .. 32                                  | nearest bound                   |
| hparams.grad_accum          | 1 .. 8                                   | nearest bound                   |
| augmentation.new_pairs      | 0 .. 600                                 | nearest bound                   |
| augmentation.replay_ratio   | 0 .. 1                                   | nearest bound                   |
| augmentation.target_buckets | focus dims only; distinct ints 0 .. 10   | dropped / clipped / deduplicated|
| focus_dims                  | 1 .. 3 distinct dims (schema: 1 .. 3)    | duplicates dropped              |

Each clip appends a line such as `lora_r 48 -> 32 (allowed 4, 8, 16, 32, 64)` to `plan.clipped`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from tools.core.contracts import AugmentationSpec, CyclePlan, HParams
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
AUGMENTATION_BOUNDS: dict[str, Bounds] = {
    "new_pairs": Bounds(0, 600),
    "replay_ratio": Bounds(0.0, 1.0),
}
MAX_FOCUS_DIMS = 3
NON_FINITE_LEARNING_RATE_REPLACEMENT = 2e-4


def describe_ranges() -> dict[str, str]:
    """Human-readable ranges (shown to model-backed planners in their prompt)."""
    ranges = {name: f"{b.low:g} .. {b.high:g}" for name, b in HPARAM_BOUNDS.items()}
    ranges["lora_r"] = "one of " + ", ".join(map(str, LORA_RANKS))
    ranges["lora_alpha"] = f"1 .. {LORA_ALPHA_MAX_FACTOR}*lora_r"
    ranges.update({name: f"{b.low:g} .. {b.high:g}" for name, b in AUGMENTATION_BOUNDS.items()})
    ranges["target_buckets"] = f"per focus dim, distinct integers {SCALE_MIN} .. {SCALE_MAX}"
    ranges["focus_dims"] = f"1 .. {MAX_FOCUS_DIMS} distinct dims"
    return ranges


def _clip(name: str, value: float, bounds: Bounds, clipped: list[str]) -> float:
    if math.isnan(value) and name == "learning_rate":
        clipped.append(f"{name} {value} -> {NON_FINITE_LEARNING_RATE_REPLACEMENT:g} (not a finite number)")
        return NON_FINITE_LEARNING_RATE_REPLACEMENT
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


def clip_augmentation(spec: AugmentationSpec, focus_dims: list[str], clipped: list[str]) -> AugmentationSpec:
    new_pairs = int(_clip("new_pairs", spec.new_pairs, AUGMENTATION_BOUNDS["new_pairs"], clipped))
    replay_ratio = _clip("replay_ratio", spec.replay_ratio, AUGMENTATION_BOUNDS["replay_ratio"], clipped)
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
    return AugmentationSpec(new_pairs=new_pairs, replay_ratio=replay_ratio, target_buckets=buckets)


def apply_guardrails(plan: CyclePlan) -> CyclePlan:
    """A copy of `plan` with every value inside its documented range; clips appended to `clipped`."""
    clipped = list(plan.clipped)
    focus_dims = list(dict.fromkeys(plan.focus_dims))
    if focus_dims != plan.focus_dims:
        clipped.append(f"focus_dims {plan.focus_dims} -> {focus_dims} (distinct dims)")
    hparams = clip_hparams(plan.hparams, clipped)
    augmentation = clip_augmentation(plan.augmentation, focus_dims, clipped)
    return plan.model_copy(
        update={
            "focus_dims": focus_dims,
            "hparams": hparams,
            "augmentation": augmentation,
            "clipped": clipped,
        }
    )
