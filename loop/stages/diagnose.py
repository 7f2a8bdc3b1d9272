"""Diagnose stage: the champion's weak dims and where the training data carries signal (learnability)."""

from __future__ import annotations

import json

from loop.config import LoopConfig
from loop.registry import champion_report
from loop.stages.inputs import dataset
from tools.core.atomic import atomic_write_json
from tools.core.contracts import LearnabilitySlice
from tools.core.paths import cycle_dir, loop_dir
from tools.core.schema import DIMS
from tools.evaluation.baselines import learnability
from tools.evaluation.metrics import EvalReport


def cached_learnability(config: LoopConfig) -> list[LearnabilitySlice]:
    """Learnability of the training split (5-fold CV), computed once per dataset and seed."""
    data = dataset(config)
    cache = loop_dir() / f"learnability_{data.name.replace('/', '_')}_seed{config.seed}.json"
    if cache.exists():
        return [LearnabilitySlice.model_validate(s) for s in json.loads(cache.read_text())]
    slices = learnability(data.train, seed=config.seed)
    atomic_write_json(cache, [s.model_dump() for s in slices])
    return slices


def diagnose(cycle: int, config: LoopConfig) -> dict:
    """Weak dims (champion per-dim MAE vs the ridge baseline, failure concentration) and learnability."""
    slices = cached_learnability(config)
    champ = champion_report()
    ridge_path = cycle_dir(0) / "eval_baseline_tfidf-ridge.json"
    ridge = EvalReport.model_validate_json(ridge_path.read_text()) if ridge_path.exists() else None
    failures = champ.top_failures
    concentration = {
        d: sum(1 for f in failures if f.abs_error and f.abs_error[i] >= 2) for i, d in enumerate(DIMS)
    }
    weak = sorted(
        (
            {
                "dim": d,
                "champion_mae": champ.per_dim_mae.get(d),
                "baseline_mae": ridge.per_dim_mae.get(d) if ridge else None,
                "gap_to_baseline": (champ.per_dim_mae.get(d) or 0) - (ridge.per_dim_mae.get(d) or 0)
                if ridge
                else None,
                "failures_off_by_2_plus": concentration[d],
                "learnable_slices": [s.source_type for s in slices if s.dim == d and s.learnable],
            }
            for d in DIMS
        ),
        key=lambda w: -(w["champion_mae"] or 0),
    )
    decision_input = {"cycle": cycle, "weak_dims": weak, "learnability": [s.model_dump() for s in slices]}
    atomic_write_json(cycle_dir(cycle) / "mcp_decision_input.json", decision_input)
    return decision_input
