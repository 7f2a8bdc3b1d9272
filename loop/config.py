"""Every setting of the loop in one place: defaults here, a JSON config file over them, env vars over that.

Env overrides: `KOTONE_<FIELD>` for top-level fields (e.g. `KOTONE_DATA=real`, `KOTONE_STUDENT=regression`),
`KOTONE_GATE__<FIELD>` for the gate (e.g. `KOTONE_GATE__MIN_MAE_IMPROVEMENT=0.02`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loop.gate import GateConfig
from tools.core.contracts import HParams

# Where a planner starts when no cycle has finished yet, per student type (measured: docs/RESULTS.md).
DEFAULT_HPARAMS: dict[str, HParams] = {
    "regression": HParams(learning_rate=5e-4, lora_r=16, lora_alpha=32, epochs=3.0, batch_size=16),
    "generative": HParams(),
}


class LoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(
        "shipped", description="'shipped', 'real' (../shared/kotone-ft), 'hub[:id]' or a folder"
    )
    base_model: str = Field("bundled", description="'bundled' SmolLM2-135M-Instruct, a folder, or a Hub id")
    student: Literal["regression", "generative"] = Field(
        "regression",
        description="regression head on the LM's hidden states (JSON formatted from its outputs) or "
        "generative LoRA decoding the JSON",
    )
    student_options: dict[str, Any] = Field(
        default_factory=dict,
        description="extra knobs of the student's own config (RegressionConfig / TrainConfig), e.g. "
        '{"layers_kept": 8, "lora_layers": 4}; the planner\'s hyperparameters are applied on top',
    )
    decoder: Literal["skeleton", "skeleton_ev", "free"] = Field(
        "skeleton_ev", description="decoder of generative students (regression students have one)"
    )
    planner: Literal["auto", "offline", "mistral"] = Field(
        "auto", description="'auto' = mistral when MISTRAL_API_KEY is set, else the offline planner"
    )
    teacher: Literal["auto", "offline", "mistral", "none"] = Field(
        "auto",
        description="'auto' = mistral when MISTRAL_API_KEY is set, else the offline generator on the shipped "
        "data and none (hard-case replay only) on other data, whose mapping the generator does not know",
    )
    mistral_model: str = "mistral-large-latest"
    mistral_server_url: str | None = Field(
        None, description="any Mistral-compatible server; None = api.mistral.ai"
    )
    eval_batch_size: int = 16
    max_eval_rows: int | None = Field(None, description="score only the first N validation rows (smoke runs)")
    replay_sample_rows: int = Field(
        96, ge=1, description="training rows the champion is re-scored on to find hard cases for replay"
    )
    max_train_rows: int | None = Field(None, description="cap on the cycle's training rows (smoke runs)")
    train_time_budget_s: float | None = Field(None, description="stop training after this many seconds")
    checkpoint_every_steps: int = Field(25, ge=1, description="training steps between resumable checkpoints")
    plateau_patience: int = Field(3, description="stop after this many cycles in a row without a promotion")
    seed: int = 0
    gate: GateConfig = Field(default_factory=GateConfig)


def _coerce(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> LoopConfig:
    """Defaults <- JSON file (if given) <- env vars. Unknown keys are errors, not silently ignored."""
    environ = dict(os.environ if environ is None else environ)
    values: dict = json.loads(path.read_text()) if path else {}
    gate_values: dict = dict(values.pop("gate", {}))
    for field in LoopConfig.model_fields:
        key = f"KOTONE_{field.upper()}"
        if field != "gate" and key in environ:
            values[field] = _coerce(environ[key])
    for field in GateConfig.model_fields:
        key = f"KOTONE_GATE__{field.upper()}"
        if key in environ:
            gate_values[field] = _coerce(environ[key])
    return LoopConfig(**values, gate=GateConfig(**gate_values))
