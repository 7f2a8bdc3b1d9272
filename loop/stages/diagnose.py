"""Diagnose stage: the champion's weak dims and where the training data carries signal (learnability)."""

from __future__ import annotations

import json

from loop.config import LoopConfig
from loop.registry import champion_oof, current_champion, registered
from loop.stages.inputs import dataset
from tools.core.atomic import atomic_write_json
from tools.core.contracts import DiagnosedDim, Diagnosis, LearnabilitySlice
from tools.core.paths import cycle_dir, loop_dir
from tools.core.schema import DIMS, rank_dims_by_weakness
from tools.evaluation.baselines import learnability

TOP_FAILURES = 20
DIAGNOSIS_FILE = "mcp_decision_input.json"


def cached_learnability(config: LoopConfig, *, keep: bool = True) -> list[LearnabilitySlice]:
    """Learnability of the training split (5-fold CV), computed once per dataset and seed; `keep=False`
    (read-only callers) computes it without writing the cache."""
    data = dataset(config)
    cache = loop_dir() / f"learnability_{data.name.replace('/', '_')}_seed{config.seed}.json"
    if cache.exists():
        return [LearnabilitySlice.model_validate(s) for s in json.loads(cache.read_text())]
    slices = learnability(data.train, seed=config.seed)
    if keep:
        atomic_write_json(cache, [s.model_dump() for s in slices])
    return slices


def diagnose(cycle: int, config: LoopConfig) -> Diagnosis:
    """Weak dims from the champion's out-of-fold errors on the TRAINING split (per-dim CV MAE against the
    constant's, failures off by 2+), and learnability. Valid is the gate's: no diagnosis reads it."""
    slices = cached_learnability(config)
    champion = current_champion()
    constant = registered(0, "train-median").record.cv if champion else None
    cv = champion.cv if champion else None
    oof = champion_oof(champion)
    worst = (
        sorted(zip(oof.keys, oof.predictions, oof.targets, strict=True), key=lambda r: -_row_mae(r[1], r[2]))[
            :TOP_FAILURES
        ]
        if oof
        else []
    )
    concentration = {d: sum(1 for _, p, t in worst if abs(p[i] - t[i]) >= 2) for i, d in enumerate(DIMS)}
    weak = []
    for d in DIMS:
        mae = cv.per_dim_mae.get(d) if cv else None
        reference = constant.per_dim_mae.get(d) if constant else None
        weak.append(
            DiagnosedDim(
                dim=d,
                champion_cv_mae=mae,
                constant_cv_mae=reference,
                ratio_to_constant=mae / reference if mae is not None and reference else None,
                failures_off_by_2_plus=concentration[d],
                learnable_slices=[s.source_type for s in slices if s.dim == d and s.learnable],
            )
        )
    order = rank_dims_by_weakness(
        {w.dim: w.weakness for w in weak}, {w.dim: w.failures_off_by_2_plus for w in weak}
    )
    diagnosis = Diagnosis(
        cycle=cycle,
        evidence="out-of-fold errors on the training split"
        if cv
        else "no CV for the champion (zero-shot base model)",
        weak_dims=sorted(weak, key=lambda w: order.index(w.dim)),
        learnability=slices,
    )
    atomic_write_json(cycle_dir(cycle) / DIAGNOSIS_FILE, diagnosis)
    return diagnosis


def read_diagnosis(cycle: int) -> Diagnosis:
    return Diagnosis.model_validate_json((cycle_dir(cycle) / DIAGNOSIS_FILE).read_text())


def _row_mae(prediction: list[float], target: list[int]) -> float:
    return sum(abs(p - t) for p, t in zip(prediction, target, strict=True)) / len(target)
