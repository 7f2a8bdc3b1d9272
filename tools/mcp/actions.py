"""Action tools: the loop's stages as MCP tools (thin wrappers over the `loop.stages` modules).

Each takes the cycle number, reads the loop config the run saved (artifacts/loop/config.json) and the
files earlier stages wrote, and returns a small JSON-able summary. Errors come back as MCP tool errors.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

from tools.core.contracts import ChampionRecord, LearnabilitySlice
from tools.mcp.safety import READ_ONLY, add_tools

ACTION = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)
Cycle = Annotated[
    int, Field(ge=1, description="cycle number (cycle 0 is the base model, made by bootstrap_champion_tool)")
]


def bootstrap_champion_tool() -> ChampionRecord:
    """Cycle 0: evaluate the base model and the baselines on the validation split; the base becomes champion."""
    from loop.stages.bootstrap import bootstrap_champion
    from loop.stages.inputs import load_loop_config

    return bootstrap_champion(load_loop_config())


def diagnose_failures_tool(cycle: Cycle) -> dict[str, Any]:
    """Weak dims of the champion (per-dim MAE vs the ridge baseline, failures off by 2+) and learnability
    slices of the training data; also written to the cycle's mcp_decision_input.json."""
    from loop.stages.diagnose import diagnose
    from loop.stages.inputs import load_loop_config

    return diagnose(cycle, load_loop_config())


def get_learnability_tool() -> list[LearnabilitySlice]:
    """Per (source type, dim): 5-fold CV MAE on train of TF-IDF+ridge vs the constant; `learnable` marks
    slices where a model beats the constant (the rest look like label noise)."""
    from loop.stages.diagnose import cached_learnability
    from loop.stages.inputs import load_loop_config

    return cached_learnability(load_loop_config())


def augment_training_data_tool(cycle: Cycle) -> dict[str, Any]:
    """Teacher pairs for the plan's focus dims + hard-case replay, filtered; writes the cycle's train set."""
    from loop.stages.augment import augment
    from loop.stages.inputs import load_loop_config

    return augment(cycle, load_loop_config()).model_dump()


def train_candidate_tool(cycle: Cycle) -> dict[str, Any]:
    """Train the cycle's candidate from the base model with the plan's hyperparameters (resumes from the
    last checkpoint if a previous attempt was killed); logged to W&B."""
    from loop.stages.candidate import train
    from loop.stages.inputs import load_loop_config

    return train(cycle, load_loop_config())


def evaluate_candidate_tool(cycle: Cycle) -> dict[str, Any]:
    """Evaluate the candidate on the frozen validation split; metrics to W&B, rows to Weave."""
    from loop.stages.candidate import evaluate_candidate
    from loop.stages.inputs import load_loop_config

    return evaluate_candidate(cycle, load_loop_config())


def run_gate_tool(cycle: Cycle) -> dict[str, Any]:
    """The numeric promotion gate, candidate vs champion on the same rows; writes gate.json."""
    from loop.stages.decide import gate
    from loop.stages.inputs import load_loop_config

    return gate(cycle, load_loop_config()).model_dump()


def write_decision_log_tool(
    cycle: Cycle, started_at: str = "", wall_s: float | None = None
) -> dict[str, Any]:
    """Apply the gate's verdict (promote or keep the champion), write decision_log.md / decision.json and
    the history line."""
    from loop.stages.decide import log_decision
    from loop.stages.inputs import load_loop_config

    record = log_decision(cycle, load_loop_config(), started_at, wall_s)
    return {"verdict": record.verdict, "champion_cycle": record.champion_after.cycle}


def register(server: MCPServer) -> None:
    add_tools(server, get_learnability_tool, annotations=READ_ONLY)
    add_tools(
        server,
        bootstrap_champion_tool,
        diagnose_failures_tool,
        augment_training_data_tool,
        train_candidate_tool,
        evaluate_candidate_tool,
        run_gate_tool,
        write_decision_log_tool,
        annotations=ACTION,
    )
