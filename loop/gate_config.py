"""The promotion gate's settings (the rules that read them are in `loop/gate.py`). Kept apart so that reading
the settings (`kotone-run --help`, a config file) does not import the gate's numerical code."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: Literal["vector_mae", "vector_mae_rounded"] = Field(
        "vector_mae", description="which MAE the margin, the bootstraps and the winner's choice compare"
    )
    min_mae_improvement: float = Field(0.01, ge=0, description="absolute MAE the candidate must gain")
    min_mse_improvement: float = Field(
        0.0, ge=0, description="absolute mse_norm the candidate must gain (0 = no worse)"
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="bootstrap probability that the candidate is better (family-wise over K)",
    )
    bootstrap_samples: int = Field(
        2000, ge=100, le=200_000, description="paired bootstrap resamples over rows"
    )
    min_json_valid_rate: float = Field(0.98, ge=0, le=1)
    max_fallback_rate: float = Field(0.05, ge=0, le=1)
    max_p95_latency_ms: float = Field(
        150.0,
        gt=0,
        description="p95 single-request latency budget: thread CPU time, 1 torch thread, minimum of repeats "
        "(what background load does not move; tools.evaluation.latency)",
    )
    focus_dim_tolerance: float = Field(0.0, ge=0, description="how much worse a focus dim may get")
    holm: bool = Field(True, description="correct the champion bootstrap for the K candidates of a cycle")
    confirm: bool = Field(True, description="re-train the winner with other seeds; it must pass again")
    prune_confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="stop a candidate whose out-of-fold TRAIN errors are this surely worse",
    )
    seed: int = 0
