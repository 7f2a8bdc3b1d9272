"""Every setting of the loop in one place: defaults here, a JSON config file over them, env vars over that.

Env overrides: `KOTONE_<FIELD>` for top-level fields (e.g. `KOTONE_DATA=real`, `KOTONE_STUDENT=regression`),
`KOTONE_GATE__<FIELD>` for the gate (e.g. `KOTONE_GATE__MIN_MAE_IMPROVEMENT=0.02`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from loop.gate import GateConfig


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
    decoder: Literal["skeleton", "skeleton_ev", "free"] = Field(
        "skeleton_ev", description="decoder of generative students (regression students have one)"
    )
    planner: Literal["auto", "offline", "mistral"] = Field(
        "auto", description="'auto' = mistral when MISTRAL_API_KEY is set, else the offline planner"
    )
    teacher: Literal["auto", "offline", "mistral"] = Field("auto", description="same rule as planner")
    mistral_model: str = "mistral-large-latest"
    mistral_server_url: str | None = Field(
        None, description="any Mistral-compatible server; None = api.mistral.ai"
    )
    mcp_url: str | None = Field(
        None, description="None = our server over stdio; else a streamable-HTTP MCP server for read tools"
    )
    eval_batch_size: int = 16
    max_eval_rows: int | None = Field(None, description="score only the first N validation rows (smoke runs)")
    max_train_rows: int | None = Field(None, description="cap on the cycle's training rows (smoke runs)")
    train_time_budget_s: float | None = Field(None, description="stop training after this many seconds")
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
