"""Pydantic models that cross a boundary between the loop, the MCP server and the agent.

One place for the shapes that the MCP tools return and the agent reads, so server and agent agree.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.core.schema import DIMS

Dim = Literal["energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia"]
assert tuple(Dim.__args__) == DIMS  # type: ignore[attr-defined]


class HParams(BaseModel):
    """The training knobs a planner may set for a cycle (mapped onto the trainer's TrainConfig)."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(2e-4, description="peak learning rate (cosine decay)")
    lora_r: int = Field(16, description="LoRA rank")
    lora_alpha: int = Field(32, description="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = Field(0.05, description="dropout on the LoRA branch")
    epochs: float = Field(1.0, description="passes over the cycle's training set")
    batch_size: int = Field(8, description="rows per optimizer micro-batch")
    grad_accum: int = Field(1, description="micro-batches per optimizer step")


class AugmentationSpec(BaseModel):
    """What the teacher should write this cycle."""

    model_config = ConfigDict(extra="forbid")

    new_pairs: int = Field(120, description="new teacher-written pairs aimed at the focus dims")
    replay_ratio: float = Field(
        0.25, description="hard-case replay copies as a fraction of new_pairs (train failures only)"
    )
    target_buckets: dict[str, list[int]] = Field(
        default_factory=dict,
        description="per focus dim, the target values the new pairs should cover (e.g. the extremes)",
    )


class CyclePlan(BaseModel):
    """The agent's proposal for one cycle. Validated, then clipped by guardrails (see agent/guardrails.py)."""

    model_config = ConfigDict(extra="forbid")

    cycle: int
    focus_dims: list[Dim] = Field(min_length=1, max_length=3)
    augmentation: AugmentationSpec
    hparams: HParams
    reasons: dict[str, str] = Field(
        description="one line per decision: focus_dims, augmentation, and each changed hparam"
    )
    planner: str = Field("offline", description="which backend produced it (offline / mistral:<model>)")
    clipped: list[str] = Field(default_factory=list, description="guardrail clips applied, human-readable")
    fallback_reason: str | None = Field(
        None, description="set when a model-backed planner failed and the offline planner decided"
    )


class MetricSummary(BaseModel):
    """Headline figures of one evaluation (the `eval/` keys in tracking)."""

    vector_mae: float | None
    vector_mae_rounded: float | None
    mse_norm: float | None
    r2: float | None
    json_valid_rate: float
    fallback_rate: float
    p50_latency_ms: float
    p95_latency_ms: float
    per_dim_mae: dict[str, float]
    n_rows: int


class FailureCase(BaseModel):
    """One of the worst rows of an evaluation, with the id of its trace in Weave."""

    request_text: str
    source_type: str
    target: list[int]
    prediction: list[float] | None
    row_mae: float | None
    trace_id: str | None = None


class ChampionRecord(BaseModel):
    """The current champion: which cycle made it, where its adapter lives, its validation figures."""

    cycle: int
    student_path: str | None = Field(description="adapter / head folder; None means the untouched base model")
    base_model: str
    eval_run_id: str | None = None
    metrics: MetricSummary


class CycleHistoryEntry(BaseModel):
    """One line of artifacts/loop/history.jsonl: every cycle, crashed ones included."""

    cycle: int
    status: Literal["baseline", "promoted", "rejected", "crashed"]
    description: str
    focus_dims: list[str] = []
    hparams: HParams | None = None
    champion_mae: float | None = None
    candidate_mae: float | None = None
    candidate_mae_rounded: float | None = None
    gate_failed_checks: list[str] = []
    wall_s: float | None = None
    started_at: str
    finished_at: str | None = None


class LearnabilitySlice(BaseModel):
    """Cross-validated error of a cheap model vs the constant on one (source type, dim) slice of train."""

    source_type: str
    dim: str
    n_rows: int
    constant_mae: float
    model_mae: float
    learnable: bool = Field(description="model beats the constant by a clear margin")


class EvalSnapshot(BaseModel):
    """What the agent reads first each cycle: champion vs base on the validation split."""

    champion: ChampionRecord | None
    base_metrics: MetricSummary | None
    champion_metrics: MetricSummary | None
    top_failures: list[FailureCase]
    baselines: dict[str, MetricSummary] = {}
    learnability: list[LearnabilitySlice] = []
