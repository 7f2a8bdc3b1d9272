"""Stage tools: the loop's stages as MCP tools, one typed function each over the stage bodies of
`loop.stages`, registered from the stage table (`loop.stages.table`): a tool's name, arguments and result
are the table's, and registration refuses a tool that disagrees with its row.

Each takes the cycle number and the loop's lock token, reads the loop config the run saved
(artifacts/loop/config.json) and the files earlier stages wrote, and returns the stage's typed result (its
output schema is the result model's).

Guards, checked before anything is read or written:
- only the run holding the loop's lock may act: `lock_token` must be the token of the live `RunLock`
  (an MCP client without it, over stdio or HTTP, is refused);
- a finished cycle is immutable: no stage of it runs again;
- cycle 0 is made once: `bootstrap_champion_tool` refuses when there is a champion.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from loop.config import LoopConfig
from loop.gate import CycleGate
from loop.stages.augment import AugmentResults
from loop.stages.candidate import EvaluationResults, TrainResults
from loop.stages.inputs import load_loop_config
from loop.stages.progress import CycleState
from loop.stages.table import (
    BOOTSTRAP,
    TOOL_STAGES,
    ApprovalResult,
    BootstrapArguments,
    Cycle,
    Effect,
    LockToken,
    LogArguments,
    LogResult,
    Stage,
    StageArguments,
)
from loop.state import RunLock
from tools.core.contracts import Capacity, Diagnosis, LearnabilitySlice, ModelRecord
from tools.core.paths import cycle_dir, loop_dir
from tools.core.records import champion_path
from tools.mcp.safety import READ_ONLY, add_tools

# Stages add files (idempotent: a repeat after a kill resumes); the log stage also moves the champion.
ANNOTATIONS: dict[Effect, ToolAnnotations] = {
    "adds": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True),
    "decides": ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True),
    "creates_champion": ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False),
}


def _check_token(lock_token: str) -> None:
    held = RunLock.current_token(loop_dir() / ".lock")
    if held is None or lock_token != held:
        raise ToolError("refused: action tools are for the kotone-loop run holding the loop's lock")


def _guard(lock_token: str, cycle: int | None = None) -> LoopConfig:
    """Token and immutability checks; returns the loop config the run saved."""
    _check_token(lock_token)
    state_file = cycle_dir(cycle) / "state.json" if cycle is not None else None
    if (
        state_file is not None
        and state_file.is_file()
        and CycleState.load_or_new(state_file.parent, cycle).finished_at
    ):
        raise ToolError(f"refused: cycle {cycle} is finished and its records are immutable")
    return load_loop_config()


def _run(tool: Callable[..., BaseModel], arguments: StageArguments) -> Any:
    """The body of the stage whose row names `tool`, after the guards."""
    stage = next(s for s in TOOL_STAGES if s.tool == tool.__name__)
    return stage.run(arguments, _guard(arguments.lock_token, arguments.cycle))


def bootstrap_champion_tool(lock_token: LockToken) -> ModelRecord:
    """Cycle 0: score the zero-shot base model (each decoder) and the reference baselines on the validation
    split; the best becomes the first champion. Refused once there is a champion."""
    config = _guard(lock_token)
    if champion_path().exists():
        raise ToolError("refused: there already is a champion (cycle 0 ran); use --rollback to restore one")
    return BOOTSTRAP.run(BootstrapArguments(lock_token=lock_token), config)


def diagnose_failures_tool(cycle: Cycle, lock_token: LockToken) -> Diagnosis:
    """Weak dims of the champion, ranked weakest first, from its out-of-fold errors on the training split,
    and learnability slices; also written to the cycle's mcp_decision_input.json (the planner's input)."""
    return _run(diagnose_failures_tool, StageArguments(cycle=cycle, lock_token=lock_token))


def augment_training_data_tool(cycle: Cycle, lock_token: LockToken) -> AugmentResults:
    """Per candidate: teacher pairs for its focus dims + hard-case replay, filtered; writes its train set."""
    return _run(augment_training_data_tool, StageArguments(cycle=cycle, lock_token=lock_token))


def train_candidates_tool(cycle: Cycle, lock_token: LockToken) -> TrainResults:
    """Train the cycle's candidates in parallel (Ray tasks); unfinished ones resume, finished ones are kept.
    Each result says trained, pruned (with why), crashed (with the error) or not trained."""
    return _run(train_candidates_tool, StageArguments(cycle=cycle, lock_token=lock_token))


def evaluate_candidates_tool(cycle: Cycle, lock_token: LockToken) -> EvaluationResults:
    """Score every trained candidate on the frozen validation split; metrics to W&B, rows to Weave."""
    return _run(evaluate_candidates_tool, StageArguments(cycle=cycle, lock_token=lock_token))


def run_gate_tool(cycle: Cycle, lock_token: LockToken) -> CycleGate:
    """The numeric promotion gate: every candidate vs the champion (Holm over K) and the baselines."""
    return _run(run_gate_tool, StageArguments(cycle=cycle, lock_token=lock_token))


def confirm_winner_tool(cycle: Cycle, lock_token: LockToken) -> CycleGate:
    """Train the gate's winner again with other seeds; it must pass the gate on its own to be promoted."""
    return _run(confirm_winner_tool, StageArguments(cycle=cycle, lock_token=lock_token))


def request_approval_tool(cycle: Cycle, lock_token: LockToken) -> ApprovalResult:
    """Approve mode: record the gate's confirmed winner as waiting for a person (once; a repeat returns the
    record, decided or not). `approval` is null when approve mode is off or no winner passed."""
    return _run(request_approval_tool, StageArguments(cycle=cycle, lock_token=lock_token))


def write_decision_log_tool(
    cycle: Cycle, lock_token: LockToken, started_at: str = "", wall_s: float | None = None
) -> LogResult:
    """Apply the gate's verdict (promote the winner or keep the champion), write decision_log.md /
    decision.json and the history line; repeating it after a kill changes nothing."""
    return _run(
        write_decision_log_tool,
        LogArguments(cycle=cycle, lock_token=lock_token, started_at=started_at, wall_s=wall_s),
    )


def get_learnability_tool() -> list[LearnabilitySlice]:
    """Per (source type, dim): 5-fold CV MAE on train of TF-IDF+ridge vs the constant; `learnable` marks
    slices where a model beats the constant (the rest look like label noise). Read-only: before the
    diagnose stage has cached the table it is computed in memory, nothing is written."""
    from loop.stages.diagnose import cached_learnability

    return cached_learnability(load_loop_config(), keep=False)


def get_augmentation_capacity_tool() -> Capacity:
    """What augmentation can really deliver this cycle: the teacher ('none' = replay only) and the most
    teacher pairs and hard-case replay rows it can make. Plans asking for more are clipped to this."""
    from loop.stages.augment import capacity

    return capacity(load_loop_config())


STAGE_TOOLS: dict[str, Callable[..., BaseModel]] = {
    tool.__name__: tool
    for tool in (
        bootstrap_champion_tool,
        diagnose_failures_tool,
        augment_training_data_tool,
        train_candidates_tool,
        evaluate_candidates_tool,
        run_gate_tool,
        confirm_winner_tool,
        request_approval_tool,
        write_decision_log_tool,
    )
}


def tool_for(stage: Stage) -> Callable[..., BaseModel]:
    """The stage's tool function, checked against its row: the same arguments and the same result model."""
    assert stage.tool is not None and stage.arguments is not None
    tool = STAGE_TOOLS[stage.tool]
    hints = typing.get_type_hints(tool)
    parameters = list(inspect.signature(tool).parameters)
    if hints["return"] is not stage.result or parameters != list(stage.arguments.model_fields):
        raise TypeError(f"{stage.tool} disagrees with the stage table's row for {stage.name}")
    return tool


def register(server: MCPServer) -> None:
    add_tools(server, get_learnability_tool, get_augmentation_capacity_tool, annotations=READ_ONLY)
    for stage in TOOL_STAGES:
        add_tools(server, tool_for(stage), annotations=ANNOTATIONS[stage.effect])
