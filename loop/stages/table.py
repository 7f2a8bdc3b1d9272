"""The stage table: every stage of a cycle in the order it runs, and cycle 0's bootstrap. Per stage: its
name, the MCP tool that runs it (none for the stages the loop runs itself as an MCP client, reading through
read-only tools), the stage body the tool calls, its typed arguments and result, and its console lines.

Everything that lists the stages derives from here: the resume state machine (`progress.STAGES`), the
registration of the stage tools (`loop.server.stage_tools`), the driver (`loop.driver.cycle`) and README's
stage table (a test holds it to this one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from loop.config import LoopConfig
from loop.gate import CycleGate
from loop.stages import console
from loop.stages.approve import approval_for
from loop.stages.augment import AugmentResults, augment
from loop.stages.bootstrap import bootstrap_champion
from loop.stages.candidate import EvaluationResults, TrainResults, evaluate_candidates, train
from loop.stages.decide import confirm, gate, log_decision
from loop.stages.diagnose import diagnose
from tools.core.contracts import CyclePlan, Diagnosis, ModelRecord, SnapshotReading
from tools.core.steering import Approval

Cycle = Annotated[int, Field(ge=1, description="cycle number (cycle 0 is made by bootstrap_champion_tool)")]
LockToken = Annotated[
    str, Field(min_length=1, max_length=200, description="the token of the loop run holding the lock")
]
# What a stage's tool does to the loop's records (the MCP annotations say it to clients).
Effect = Literal["adds", "decides", "creates_champion"]


class BootstrapArguments(BaseModel):
    lock_token: LockToken


class StageArguments(BaseModel):
    """What every stage tool of a cycle takes: the cycle and the lock token of the run holding the lock."""

    cycle: Cycle
    lock_token: LockToken


class LogArguments(StageArguments):
    started_at: str = Field("", description="when the cycle started (ISO 8601), for the record")
    wall_s: float | None = Field(None, description="the cycle's wall-clock seconds so far, for the record")


class ApprovalResult(BaseModel):
    """`approval` is null when approve mode is off or no winner passed."""

    approval: Approval | None


class LogResult(BaseModel):
    """The verdict written to the decision log, and the cycle whose student is champion after it."""

    verdict: str
    champion_cycle: int


def request_approval(cycle: int, config: LoopConfig) -> ApprovalResult:
    return ApprovalResult(approval=approval_for(cycle, config))


def write_decision_log(cycle: int, config: LoopConfig, started_at: str, wall_s: float | None) -> LogResult:
    record = log_decision(cycle, config, started_at, wall_s)
    return LogResult(verdict=record.verdict, champion_cycle=record.champion_after.cycle)


@dataclass(frozen=True)
class Stage:
    name: str
    tool: str | None  # None: the loop runs the stage itself, through read-only tools (loop.driver)
    body: Callable[..., BaseModel] | None
    arguments: type[BaseModel] | None
    result: type[BaseModel]
    console: Callable[[int, Any], list[str]]
    announce: Callable[[int], list[str]] | None = None  # lines printed before the stage starts
    effect: Effect = "adds"

    def run(self, arguments: BaseModel, config: LoopConfig) -> BaseModel:
        """The stage body on the tool's arguments (the lock token stays with the tool's guard)."""
        assert self.body is not None and isinstance(arguments, self.arguments or ()), self.name
        given = arguments.model_dump(exclude={"lock_token"})
        cycle = given.pop("cycle", None)
        result = self.body(config, **given) if cycle is None else self.body(cycle, config, **given)
        assert isinstance(result, self.result), (self.name, type(result))
        return result


BOOTSTRAP = Stage(
    "bootstrap",
    "bootstrap_champion_tool",
    bootstrap_champion,
    BootstrapArguments,
    ModelRecord,
    console.bootstrap_lines,
    announce=console.bootstrap_announced,
    effect="creates_champion",
)

CYCLE_STAGES: tuple[Stage, ...] = (
    Stage("snapshot", None, None, None, SnapshotReading, console.silent),
    Stage("diagnose", "diagnose_failures_tool", diagnose, StageArguments, Diagnosis, console.diagnose_lines),
    Stage("plan", None, None, None, CyclePlan, console.plan_lines),
    Stage(
        "augment",
        "augment_training_data_tool",
        augment,
        StageArguments,
        AugmentResults,
        console.augment_lines,
    ),
    Stage(
        "train",
        "train_candidates_tool",
        train,
        StageArguments,
        TrainResults,
        console.train_lines,
        announce=console.train_announced,
    ),
    Stage(
        "evaluate",
        "evaluate_candidates_tool",
        evaluate_candidates,
        StageArguments,
        EvaluationResults,
        console.evaluate_lines,
    ),
    Stage("gate", "run_gate_tool", gate, StageArguments, CycleGate, console.gate_lines),
    Stage("confirm", "confirm_winner_tool", confirm, StageArguments, CycleGate, console.confirm_lines),
    Stage(
        "approve", "request_approval_tool", request_approval, StageArguments, ApprovalResult, console.silent
    ),
    Stage(
        "log",
        "write_decision_log_tool",
        write_decision_log,
        LogArguments,
        LogResult,
        console.silent,
        effect="decides",
    ),
)

TOOL_STAGES: tuple[Stage, ...] = (BOOTSTRAP, *(s for s in CYCLE_STAGES if s.tool is not None))
