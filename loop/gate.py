"""The promotion gate: arithmetic on two EvalReports of the same frozen rows. The agent cannot override it.

A candidate is promoted only if every check passes:

| check | passes when |
|---|---|
| same_rows | both reports scored the same dataset (same content hash and row count) |
| mae_margin | champion MAE - candidate MAE >= `min_mae_improvement` |
| mse_margin | champion mse_norm - candidate mse_norm >= `min_mse_improvement` |
| bootstrap | in a paired bootstrap over rows, P(candidate MAE < champion MAE) >= `confidence` |
| json_valid | candidate json_valid_rate >= `min_json_valid_rate` |
| fallback | share of candidate rows served by a fallback <= `max_fallback_rate` (never scored anyway) |
| latency | candidate p95 latency <= `max_p95_latency_ms` |
| focus_dims | on each focus dim, candidate MAE <= champion MAE + `focus_dim_tolerance` |
| beats_constant | paired bootstrap: P(candidate MAE < train-median constant MAE) >= `confidence` (a model that
  does not beat a ten-line baseline is no improvement; skipped when no constant report is given) |
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tools.evaluation.metrics import EvalReport


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Literal["vector_mae", "vector_mae_rounded"] = Field(
        "vector_mae", description="which MAE the margin and the bootstrap compare"
    )
    min_mae_improvement: float = Field(0.01, description="absolute MAE the candidate must gain")
    min_mse_improvement: float = Field(
        0.0, description="absolute mse_norm the candidate must gain (0 = no worse)"
    )
    confidence: float = Field(0.95, description="bootstrap probability that the candidate is better")
    bootstrap_samples: int = Field(2000, description="paired bootstrap resamples over rows")
    min_json_valid_rate: float = Field(0.98)
    max_fallback_rate: float = Field(0.05)
    max_p95_latency_ms: float = Field(2000.0, description="p95 single-request latency budget")
    focus_dim_tolerance: float = Field(0.0, description="how much worse a focus dim may get")
    seed: int = 0


class GateCheck(BaseModel):
    name: str
    value: float | None
    threshold: float | None
    passed: bool
    detail: str


class GateResult(BaseModel):
    promoted: bool
    checks: list[GateCheck]
    config: GateConfig

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _row_errors(report: EvalReport, rounded: bool) -> dict[int, float]:
    errors = {}
    for row in report.rows:
        value = row.mae_rounded if rounded else row.mae
        if value is not None:
            errors[row.index] = value
    return errors


def paired_bootstrap(
    champion: EvalReport, candidate: EvalReport, *, rounded: bool, samples: int, seed: int
) -> tuple[float, float, int]:
    """(mean improvement, P(improvement > 0), rows compared) over rows scored in both reports."""
    champ, cand = _row_errors(champion, rounded), _row_errors(candidate, rounded)
    shared = sorted(champ.keys() & cand.keys())
    if not shared:
        return 0.0, 0.0, 0
    diffs = np.array([champ[i] - cand[i] for i in shared])
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(samples, len(diffs)))].mean(axis=1)
    return float(diffs.mean()), float((means > 0).mean()), len(shared)


def run_gate(
    champion: EvalReport,
    candidate: EvalReport,
    focus_dims: list[str],
    config: GateConfig,
    constant: EvalReport | None = None,
) -> GateResult:
    rounded = config.metric == "vector_mae_rounded"
    champ_mae = getattr(champion, config.metric)
    cand_mae = getattr(candidate, config.metric)
    checks: list[GateCheck] = []

    same = champion.data_hash == candidate.data_hash and champion.n_rows == candidate.n_rows
    checks.append(
        GateCheck(
            name="same_rows",
            value=float(candidate.n_rows),
            threshold=float(champion.n_rows),
            passed=same,
            detail=f"data hash {candidate.data_hash} vs champion {champion.data_hash}",
        )
    )

    gain = None if champ_mae is None or cand_mae is None else champ_mae - cand_mae
    checks.append(
        GateCheck(
            name="mae_margin",
            value=gain,
            threshold=config.min_mae_improvement,
            passed=gain is not None and gain >= config.min_mae_improvement,
            detail=f"{config.metric}: champion {_fmt(champ_mae)} -> candidate {_fmt(cand_mae)}",
        )
    )

    mse_gain = (
        None
        if champion.mse_norm is None or candidate.mse_norm is None
        else champion.mse_norm - candidate.mse_norm
    )
    checks.append(
        GateCheck(
            name="mse_margin",
            value=mse_gain,
            threshold=config.min_mse_improvement,
            passed=mse_gain is not None and mse_gain >= config.min_mse_improvement,
            detail=f"mse_norm: champion {_fmt(champion.mse_norm)} -> candidate {_fmt(candidate.mse_norm)}",
        )
    )

    mean_gain, probability, compared = paired_bootstrap(
        champion, candidate, rounded=rounded, samples=config.bootstrap_samples, seed=config.seed
    )
    checks.append(
        GateCheck(
            name="bootstrap",
            value=probability,
            threshold=config.confidence,
            passed=compared > 0 and probability >= config.confidence,
            detail=f"paired over {compared} rows, mean per-row gain {mean_gain:+.4f}",
        )
    )

    checks.append(
        GateCheck(
            name="json_valid",
            value=candidate.json_valid_rate,
            threshold=config.min_json_valid_rate,
            passed=candidate.json_valid_rate >= config.min_json_valid_rate,
            detail=f"{candidate.json_valid_rate:.3f} of rows parsed",
        )
    )
    checks.append(
        GateCheck(
            name="fallback",
            value=candidate.fallback_rate,
            threshold=config.max_fallback_rate,
            passed=candidate.fallback_rate <= config.max_fallback_rate,
            detail=f"served_by {candidate.served_by}",
        )
    )
    checks.append(
        GateCheck(
            name="latency",
            value=candidate.p95_latency_ms,
            threshold=config.max_p95_latency_ms,
            passed=candidate.p95_latency_ms <= config.max_p95_latency_ms,
            detail=f"p50 {candidate.p50_latency_ms:.0f} ms, p95 {candidate.p95_latency_ms:.0f} ms",
        )
    )

    per_dim_champ = champion.per_dim_mae_rounded if rounded else champion.per_dim_mae
    per_dim_cand = candidate.per_dim_mae_rounded if rounded else candidate.per_dim_mae
    worse = {
        d: per_dim_cand.get(d, float("inf")) - per_dim_champ.get(d, float("inf"))
        for d in focus_dims
        if per_dim_cand.get(d, float("inf")) > per_dim_champ.get(d, float("inf")) + config.focus_dim_tolerance
    }
    checks.append(
        GateCheck(
            name="focus_dims",
            value=max(worse.values()) if worse else 0.0,
            threshold=config.focus_dim_tolerance,
            passed=not worse,
            detail="worse on " + ", ".join(f"{d} (+{v:.3f})" for d, v in worse.items())
            if worse
            else f"no focus dim worse ({', '.join(focus_dims)})",
        )
    )
    if constant is not None:
        const_gain, const_probability, const_compared = paired_bootstrap(
            constant, candidate, rounded=rounded, samples=config.bootstrap_samples, seed=config.seed
        )
        checks.append(
            GateCheck(
                name="beats_constant",
                value=const_probability,
                threshold=config.confidence,
                passed=constant.data_hash == candidate.data_hash
                and const_compared > 0
                and const_probability >= config.confidence,
                detail=f"vs {constant.predictor}: mean per-row gain {const_gain:+.4f} over {const_compared} rows",
            )
        )
    return GateResult(promoted=all(c.passed for c in checks), checks=checks, config=config)
