"""Pydantic models that cross a boundary between the loop, the MCP server and the agent.

One place for the shapes that the MCP tools return and the agent reads, so server and agent agree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.core import paths
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


def refuse_hparam_overrides(overrides: dict[str, object]) -> None:
    """A hyperparameter has one door, `HParams` (bounded by the guardrails), never a student option."""
    named = sorted(set(overrides) & set(HParams.model_fields))
    if named:
        raise ValueError(f"{', '.join(named)}: hyperparameters are set through HParams, not student options")


class AugmentationSpec(BaseModel):
    """What a candidate's training set adds to the training split: feasible counts, not wishes."""

    model_config = ConfigDict(extra="forbid")

    teacher_pairs: int = Field(
        120,
        ge=0,
        description="new teacher-written pairs aimed at the focus dims (0 when there is no teacher)",
    )
    replay_rows: int = Field(
        30, ge=0, description="hard-case replay: paraphrased copies of the champion's worst TRAIN rows"
    )
    target_buckets: dict[str, list[int]] = Field(
        default_factory=dict,
        description="per focus dim, the target values the new pairs should cover (e.g. the extremes)",
    )


BaselineKind = Literal["train-median", "tfidf-ridge", "additive-ridge"]
StackComponent = Literal["train-median", "tfidf-ridge", "additive-ridge", "lm"]


class StudentRecipe(BaseModel):
    """What kind of student a candidate trains, every knob named (peft-style).

    `stack` blends, per (source type, dim), a fold ensemble of LM students (`lm`) with cheap models; weights
    chosen on out-of-fold predictions of the training split. `regression` / `generative` is the fold ensemble
    of that LM student alone. `baseline` is one cheap model.
    """

    model_config = ConfigDict(extra="forbid")

    family: Literal["stack", "regression", "generative", "baseline"] = "stack"
    components: list[StackComponent] = Field(
        default_factory=lambda: ["train-median", "tfidf-ridge", "additive-ridge", "lm"],
        description="stack only: the blended predictors (constant first: ties go to the simplest)",
    )
    baseline: BaselineKind | None = Field(None, description="baseline only: which cheap model")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="knobs of the LM student's own config (RegressionConfig / TrainConfig), e.g. "
        '{"layers_kept": 6, "lora_layers": 2}; the candidate\'s hparams are applied first',
    )
    folds: int = Field(
        3, ge=2, le=5, description="CV folds = members of the LM fold ensemble (one seed each)"
    )

    @model_validator(mode="after")
    def _canonical(self) -> StudentRecipe:
        """Knobs a family does not use are cleared, so one recipe has one key whoever wrote it."""
        if self.family != "stack":
            self.components = []
        if self.family != "baseline":
            self.baseline = None
        if not self.uses_lm:
            self.options = {}
        return self

    @property
    def uses_lm(self) -> bool:
        return self.family in ("regression", "generative") or (
            self.family == "stack" and "lm" in self.components
        )

    @property
    def member_kind(self) -> Literal["regression", "generative"]:
        return "generative" if self.family == "generative" else "regression"

    def label(self) -> str:
        """One short line: `stack(train-median+tfidf-ridge+lm) layers_kept=6`."""
        if self.family == "baseline":
            return f"baseline {self.baseline}"
        head = (
            f"stack({'+'.join(self.components)})"
            if self.family == "stack"
            else f"{self.family} x{self.folds}"
        )
        knobs = " ".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{head} {knobs}".strip()


class CandidateSpec(BaseModel):
    """One variant the planner proposes for a cycle; the K candidates of a cycle train in parallel."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="short id, unique in the cycle")
    student: StudentRecipe = Field(default_factory=StudentRecipe)
    hparams: HParams = Field(default_factory=HParams)
    augmentation: AugmentationSpec = Field(default_factory=AugmentationSpec)
    focus_dims: list[Dim] = Field(min_length=1, max_length=3)
    seed: int = 0
    reason: str = Field(min_length=1, description="why this variant, in one line")

    def recipe_key(self) -> str:
        """Identifies the recipe (everything but name, seed and reason): the planner never repeats a
        recipe the gate already judged."""
        recipe = self.model_dump(mode="json", exclude={"name", "seed", "reason"})
        # Re-validated: a recipe built with model_copy gets the canonical form a parsed one has.
        recipe["student"] = StudentRecipe.model_validate(recipe["student"]).model_dump(mode="json")
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        h = self.hparams
        aug = self.augmentation
        return (
            f"{self.student.label()}; lr {h.learning_rate:g} r {h.lora_r} ep {h.epochs:g}; "
            f"+{aug.teacher_pairs} teacher +{aug.replay_rows} replay; focus {','.join(self.focus_dims)}; "
            f"seed {self.seed}"
        )


class Capacity(BaseModel):
    """What augmentation can really deliver this cycle (the `get_augmentation_capacity_tool` reply)."""

    teacher: str = Field(description="the teacher's name, or 'none' (replay only)")
    max_teacher_pairs: int = Field(ge=0, description="0 when there is no teacher")
    max_replay_rows: int = Field(
        ge=0, description="copies hard-case replay can make from the champion's worst rows"
    )


class NoteReply(BaseModel):
    """What a plan did with one open operator note: followed or not, and why (shown in the decision log)."""

    model_config = ConfigDict(extra="forbid")

    note_id: int
    followed: bool
    reason: str = Field(min_length=1, description="one line: what was done, or why not")
    note: str = Field("", description="the note's text (the loop fills it in)")


class EvidenceCheck(BaseModel):
    """One check of a model-written plan against the evidence (`agent.evidence_check`)."""

    name: str
    passed: bool
    detail: str


class CyclePlan(BaseModel):
    """The agent's proposal for one cycle: K candidates. Validated, then clipped by guardrails."""

    model_config = ConfigDict(extra="forbid")

    cycle: int
    candidates: list[CandidateSpec] = Field(min_length=1, max_length=8)
    reasons: dict[str, str] = Field(
        description="one line per decision shared by the candidates (focus, search)"
    )
    planner: str = Field("offline", description="which backend produced it (offline / mistral:<model>)")
    clipped: list[str] = Field(default_factory=list, description="guardrail clips applied, human-readable")
    fallback_reason: str | None = Field(
        None, description="set when a model-backed planner failed and the offline planner decided"
    )
    note_replies: list[NoteReply] = Field(
        default_factory=list, description="one reply per open operator note: followed or not, and why"
    )
    evidence_checks: list[EvidenceCheck] = Field(
        default_factory=list,
        description="a model-written plan checked against the evidence; a failed check means the offline "
        "planner decided instead (`fallback_reason` names it)",
    )

    @model_validator(mode="after")
    def _distinct(self) -> CyclePlan:
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate names must be distinct, got {names}")
        return self

    def candidate(self, name: str) -> CandidateSpec:
        for spec in self.candidates:
            if spec.name == name:
                return spec
        raise KeyError(
            f"cycle {self.cycle} has no candidate {name!r} (it has {[c.name for c in self.candidates]})"
        )

    @property
    def focus_dims(self) -> list[str]:
        return list(dict.fromkeys(d for c in self.candidates for d in c.focus_dims))


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


class ModelRecord(BaseModel):
    """A model the loop registered: which cycle and candidate made it, where its student lives, its figures.
    Every candidate gets one (`registry/cycle_N/NAME/record.json`); the champion pointer holds the champion's."""

    cycle: int
    candidate: str = Field(
        description="the candidate's name in its cycle (cycle 0: base-<decoder> or a baseline)"
    )
    student_path: str | None = Field(
        description="student folder, relative to the artifacts root; None means the untouched base model"
    )
    decoder: str = Field(description="the decoder it is served with")
    base_model: str
    recipe: StudentRecipe | None = Field(
        None, description="how it was trained (None: the untouched base model)"
    )
    hparams: HParams | None = Field(
        None, description="its training hyperparameters (None: not trained by the loop)"
    )
    eval_run_id: str | None = None
    metrics: MetricSummary = Field(description="on the frozen validation split (what the gate compared)")
    cv: MetricSummary | None = Field(
        None, description="out-of-fold on the training split (what planners read)"
    )

    def student_dir(self) -> Path | None:
        if self.student_path is None:
            return None
        path = Path(self.student_path)
        return path if path.is_absolute() else paths.artifacts_dir() / path


class CandidateOutcome(BaseModel):
    """What became of one candidate of a cycle: the planner's memory of what was tried."""

    name: str
    recipe_key: str
    description: str
    status: Literal["promoted", "rejected", "pruned", "crashed", "not_trained"]
    cv_mae: float | None = None
    cv_mae_rounded: float | None = None
    valid_mae: float | None = None
    valid_mae_rounded: float | None = None
    failed_checks: list[str] = []
    note: str = ""
    focus_dims: list[str] = Field(default_factory=list, description="the candidate's own focus dims")
    p_better: float | None = Field(None, description="the gate's bootstrap P(better than the champion)")


class CycleHistoryEntry(BaseModel):
    """One line of artifacts/loop/history.jsonl: every cycle, crashed and interrupted ones included."""

    cycle: int
    status: Literal["baseline", "promoted", "rejected", "crashed", "interrupted"]
    description: str
    focus_dims: list[str] = []
    candidates: list[CandidateOutcome] = []
    champion_mae: float | None = None
    candidate_mae: float | None = Field(None, description="the best evaluated candidate's valid MAE")
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


class DiagnosedDim(BaseModel):
    """One dim in the diagnosis: the champion's out-of-fold error on TRAIN against the constant's."""

    dim: str
    champion_cv_mae: float | None
    constant_cv_mae: float | None
    ratio_to_constant: float | None = Field(description="champion CV MAE / constant CV MAE (1 = no better)")
    failures_off_by_2_plus: int = Field(description="of the champion's worst out-of-fold rows")
    learnable_slices: list[str] = Field(description="source types where a model beats the constant")

    @property
    def weakness(self) -> float:
        """What the ranking sorts on: the ratio, else the champion's own CV MAE."""
        return self.ratio_to_constant or self.champion_cv_mae or 0.0


class Diagnosis(BaseModel):
    """The diagnose stage's output and the planner's focus input: the ONE weak-dim ranking of a cycle
    (weakest first), from the champion's out-of-fold errors on the training split. Valid is never read."""

    cycle: int
    evidence: str = Field(description="what the ranking rests on")
    weak_dims: list[DiagnosedDim] = Field(description="every dim, weakest first")
    learnability: list[LearnabilitySlice]

    @property
    def ranking(self) -> list[str]:
        return [w.dim for w in self.weak_dims]


class EvalSnapshot(BaseModel):
    """What the agent reads first each cycle. Decisions rest on the cross-validated figures of the training
    split (`champion_cv`, `baselines_cv`, `top_failures`: the champion's worst out-of-fold TRAIN rows);
    the validation figures are the gate's and are shown for the record."""

    champion: ModelRecord | None
    base_metrics: MetricSummary | None
    champion_metrics: MetricSummary | None
    top_failures: list[FailureCase]
    baselines: dict[str, MetricSummary] = {}
    learnability: list[LearnabilitySlice] = []
    champion_cv: MetricSummary | None = None
    baselines_cv: dict[str, MetricSummary] = {}


class SnapshotReading(BaseModel):
    """What the snapshot stage read through the tools: the planner's evidence, read once per cycle."""

    snapshot: EvalSnapshot
    history: list[CycleHistoryEntry]
    champion: ModelRecord | None
