"""Stage tools: the loop's stages as MCP tools (thin wrappers over the `loop.stages` modules).

Each takes the cycle number and the loop's lock token, reads the loop config the run saved
(artifacts/loop/config.json) and the files earlier stages wrote, and returns a small JSON-able summary.

Guards, checked before anything is read or written:
- only the run holding the loop's lock may act: `lock_token` must be the token of the live `RunLock`
  (an MCP client without it, over stdio or HTTP, is refused);
- a finished cycle is immutable: no stage of it runs again;
- cycle 0 is made once: `bootstrap_champion_tool` refuses when there is a champion.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from tools.core.contracts import ChampionRecord, Diagnosis, LearnabilitySlice
from tools.core.paths import cycle_dir, loop_dir, registry_dir
from tools.mcp.safety import READ_ONLY, add_tools

# Stages add files (idempotent: a repeat after a kill resumes); the log stage also moves the champion.
STAGE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)
DECIDES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)
CREATES_CHAMPION = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
Cycle = Annotated[int, Field(ge=1, description="cycle number (cycle 0 is made by bootstrap_champion_tool)")]
LockToken = Annotated[
    str, Field(min_length=1, max_length=200, description="the token of the loop run holding the lock")
]


def _check_token(lock_token: str) -> None:
    from loop.state import RunLock

    held = RunLock.current_token(loop_dir() / ".lock")
    if held is None or lock_token != held:
        raise ToolError("refused: action tools are for the kotone-loop run holding the loop's lock")


def _guard(lock_token: str, cycle: int | None = None) -> Any:
    """Token and immutability checks; returns the loop config the run saved."""
    from loop.stages.inputs import load_loop_config
    from loop.stages.progress import CycleState

    _check_token(lock_token)
    state_file = cycle_dir(cycle) / "state.json" if cycle is not None else None
    if (
        state_file is not None
        and state_file.is_file()
        and CycleState.load_or_new(state_file.parent, cycle).finished_at
    ):
        raise ToolError(f"refused: cycle {cycle} is finished and its records are immutable")
    return load_loop_config()


def bootstrap_champion_tool(lock_token: LockToken) -> ChampionRecord:
    """Cycle 0: score the zero-shot base model (each decoder) and the reference baselines on the validation
    split; the best becomes the first champion. Refused once there is a champion."""
    from loop.stages.bootstrap import bootstrap_champion

    config = _guard(lock_token)
    if (registry_dir() / "champion.json").exists():
        raise ToolError("refused: there already is a champion (cycle 0 ran); use --rollback to restore one")
    return bootstrap_champion(config)


def diagnose_failures_tool(cycle: Cycle, lock_token: LockToken) -> Diagnosis:
    """Weak dims of the champion, ranked weakest first, from its out-of-fold errors on the training split,
    and learnability slices; also written to the cycle's mcp_decision_input.json (the planner's input)."""
    from loop.stages.diagnose import diagnose

    return diagnose(cycle, _guard(lock_token, cycle))


def get_learnability_tool() -> list[LearnabilitySlice]:
    """Per (source type, dim): 5-fold CV MAE on train of TF-IDF+ridge vs the constant; `learnable` marks
    slices where a model beats the constant (the rest look like label noise). Read-only: before the
    diagnose stage has cached the table it is computed in memory, nothing is written."""
    from loop.stages.diagnose import cached_learnability
    from loop.stages.inputs import load_loop_config

    return cached_learnability(load_loop_config(), keep=False)


def get_augmentation_capacity_tool() -> dict[str, Any]:
    """What augmentation can really deliver this cycle: the teacher ('none' = replay only) and the most
    teacher pairs and hard-case replay rows it can make. Plans asking for more are clipped to this."""
    from loop.stages.augment import capacity
    from loop.stages.inputs import load_loop_config

    return capacity(load_loop_config()).model_dump()


def augment_training_data_tool(cycle: Cycle, lock_token: LockToken) -> dict[str, Any]:
    """Per candidate: teacher pairs for its focus dims + hard-case replay, filtered; writes its train set."""
    from loop.stages.augment import augment

    return {name: s.model_dump() for name, s in augment(cycle, _guard(lock_token, cycle)).items()}


def train_candidates_tool(cycle: Cycle, lock_token: LockToken) -> dict[str, Any]:
    """Train the cycle's candidates in parallel (Ray tasks); unfinished ones resume, finished ones are kept.
    Each result says trained, pruned (with why), crashed (with the error) or not trained."""
    from loop.stages.candidate import train

    return train(cycle, _guard(lock_token, cycle))


def evaluate_candidates_tool(cycle: Cycle, lock_token: LockToken) -> dict[str, Any]:
    """Score every trained candidate on the frozen validation split; metrics to W&B, rows to Weave."""
    from loop.stages.candidate import evaluate_candidates

    return evaluate_candidates(cycle, _guard(lock_token, cycle))


def run_gate_tool(cycle: Cycle, lock_token: LockToken) -> dict[str, Any]:
    """The numeric promotion gate: every candidate vs the champion (Holm over K) and the baselines."""
    from loop.stages.decide import gate

    return gate(cycle, _guard(lock_token, cycle)).model_dump()


def confirm_winner_tool(cycle: Cycle, lock_token: LockToken) -> dict[str, Any]:
    """Train the gate's winner again with other seeds; it must pass the gate on its own to be promoted."""
    from loop.stages.decide import confirm

    return confirm(cycle, _guard(lock_token, cycle)).model_dump()


def request_approval_tool(cycle: Cycle, lock_token: LockToken) -> dict[str, Any]:
    """Approve mode: record the gate's confirmed winner as waiting for a person (once; a repeat returns the
    record, decided or not). `approval` is null when approve mode is off or no winner passed."""
    from loop.stages.approve import approval_for

    approval = approval_for(cycle, _guard(lock_token, cycle))
    return {"approval": approval.model_dump() if approval else None}


def write_decision_log_tool(
    cycle: Cycle, lock_token: LockToken, started_at: str = "", wall_s: float | None = None
) -> dict[str, Any]:
    """Apply the gate's verdict (promote the winner or keep the champion), write decision_log.md /
    decision.json and the history line; repeating it after a kill changes nothing."""
    from loop.stages.decide import log_decision

    record = log_decision(cycle, _guard(lock_token, cycle), started_at, wall_s)
    return {"verdict": record.verdict, "champion_cycle": record.champion_after.cycle}


def register(server: MCPServer) -> None:
    add_tools(server, get_learnability_tool, get_augmentation_capacity_tool, annotations=READ_ONLY)
    add_tools(server, bootstrap_champion_tool, annotations=CREATES_CHAMPION)
    add_tools(
        server,
        diagnose_failures_tool,
        augment_training_data_tool,
        train_candidates_tool,
        evaluate_candidates_tool,
        run_gate_tool,
        confirm_winner_tool,
        request_approval_tool,
        annotations=STAGE,
    )
    add_tools(server, write_decision_log_tool, annotations=DECIDES)
