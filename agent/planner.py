"""The planner interface and the evidence every planner reads through MCP tools (the backend choice is
`agent.backends`).

A planner gets an open `ToolSession`, the cycle number and a `PlanningContext` (what the loop knows that
is not read through tools: defaults, limits, and the diagnose stage's weak-dim ranking) and returns a `CyclePlan` that has been through the
guardrails. Evidence (eval snapshot, cycle history, champion, learnability) is read through the tools,
so every number a plan rests on is in the cycle's `mcp_eval_snapshot.json`.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, Field, TypeAdapter

from agent.mcp_client import ToolSession
from tools.core.contracts import (
    Capacity,
    CycleHistoryEntry,
    CyclePlan,
    Diagnosis,
    EvalSnapshot,
    HParams,
    LearnabilitySlice,
    ModelRecord,
    SnapshotReading,
)
from tools.core.steering import OperatorNote

SNAPSHOT_TOOL = "get_eval_snapshot_tool"
HISTORY_TOOL = "get_cycle_history_tool"
CHAMPION_TOOL = "get_champion_tool"
LEARNABILITY_TOOL = "get_learnability_tool"
CAPACITY_TOOL = "get_augmentation_capacity_tool"

# Tools a planner may call: read-only evidence. Action tools (augment, train, evaluate, log) are the
# loop's, never the planner's, whatever the server lists.
READ_ONLY_TOOLS = frozenset(
    {
        SNAPSHOT_TOOL,
        HISTORY_TOOL,
        CHAMPION_TOOL,
        LEARNABILITY_TOOL,
        CAPACITY_TOOL,
        "get_run_history_tool",
        "compare_runs_tool",
        "summarize_evaluation_tool",
        "query_weave_traces_tool",
        "count_weave_traces_tool",
        "query_wandb_tool",
        "get_run_table_tool",
    }
)


class PlanningContext(BaseModel):
    """What the loop hands a planner besides the tools: defaults, limits, and the W&B coordinates."""

    candidates: int = Field(2, ge=1, le=8, description="how many candidates to propose (K)")
    default_hparams: HParams = Field(default_factory=HParams)
    default_options: dict[str, Any] = Field(
        default_factory=dict, description="the LM student's default knobs"
    )
    folds: int = Field(3, ge=2, le=5, description="CV folds = LM ensemble members of a new recipe")
    entity_name: str | None = Field(None, description="W&B entity, for the W&B-mirroring tools")
    project_name: str | None = Field(None, description="W&B project, for the W&B-mirroring tools")
    history_limit: int = Field(50, description="most recent cycles read from the history tool")
    operator_notes: list[OperatorNote] = Field(
        default_factory=list, description="the open operator notes: every plan replies to each"
    )
    snapshot: SnapshotReading | None = Field(
        None, description="what the cycle's snapshot stage read through the tools; not read again"
    )
    diagnosis: Diagnosis | None = Field(
        None,
        description="the cycle's diagnose stage output: the one weak-dim ranking the focus is chosen from",
    )


class Planner(Protocol):
    name: str

    async def plan(self, session: ToolSession, cycle: int, context: PlanningContext) -> CyclePlan: ...


class EvidenceUnavailable(RuntimeError):
    """The MCP endpoint lacks the domain tools a planner needs."""


class SearchExhausted(RuntimeError):
    """Every recipe the planner knows around the incumbent was already judged: the loop has plateaued."""


class Evidence(BaseModel):
    """What the planners decide from, exactly as the tools returned it."""

    snapshot: EvalSnapshot
    history: list[CycleHistoryEntry]
    champion: ModelRecord | None
    learnability: list[LearnabilitySlice]
    capacity: Capacity


_HISTORY = TypeAdapter(list[CycleHistoryEntry])
_LEARNABILITY = TypeAdapter(list[LearnabilitySlice])


async def _call_with_accepted(session: ToolSession, name: str, candidates: dict[str, object]) -> object:
    spec = await session.tool_spec(name)
    if spec is None:
        listed = ", ".join(sorted(s.name for s in await session.list_tools()))
        raise EvidenceUnavailable(f"MCP endpoint {session.endpoint_label} has no {name} (it lists: {listed})")
    arguments = {key: value for key, value in candidates.items() if value is not None and spec.accepts(key)}
    return await session.call_json(name, arguments)


async def read_history(session: ToolSession, context: PlanningContext) -> list[CycleHistoryEntry]:
    limit = context.history_limit
    raw = await _call_with_accepted(session, HISTORY_TOOL, {"limit": limit, "last_n": limit})
    return _HISTORY.validate_python(raw)


async def read_evidence(session: ToolSession, context: PlanningContext) -> Evidence:
    """Snapshot, history, champion (the snapshot stage's reading when the loop hands it over, else via
    tools) and (when the server has them) learnability slices and the capacity, via tools."""
    if context.snapshot is not None:
        snapshot, history, champion = (
            context.snapshot.snapshot,
            context.snapshot.history,
            context.snapshot.champion,
        )
    else:
        snapshot = EvalSnapshot.model_validate(await _call_with_accepted(session, SNAPSHOT_TOOL, {}))
        history = await read_history(session, context)
        champion_raw = await _call_with_accepted(session, CHAMPION_TOOL, {})
        champion = None if champion_raw is None else ModelRecord.model_validate(champion_raw)
    learnability = snapshot.learnability
    if await session.has_tool(LEARNABILITY_TOOL):
        # Optional evidence: a failed call (e.g. no loop config yet) is in the transcript; plan without it.
        record = await session.call_tool(LEARNABILITY_TOOL, {})
        if not record.is_error:
            learnability = _LEARNABILITY.validate_python(record.result)
    capacity = Capacity.model_validate(await _call_with_accepted(session, CAPACITY_TOOL, {}))
    return Evidence(
        snapshot=snapshot, history=history, champion=champion, learnability=learnability, capacity=capacity
    )


class MistralPlannerConfig(BaseModel):
    """Every knob of the Mistral backend. The API key is read from `api_key_env`, never stored here."""

    model: str = "mistral-large-latest"
    server_url: str | None = Field(None, description="base URL without /v1 (any Mistral-compatible server)")
    api_key_env: str = "MISTRAL_API_KEY"
    temperature: float = 0.2
    random_seed: int | None = 0
    max_tool_calls: int = Field(12, description="tool calls per cycle; then the model must answer")
    max_total_tokens: int = Field(60_000, description="prompt + completion tokens per cycle, from usage")
    max_attempts: int = Field(3, ge=1, description="tries per request on 429 / 5xx / transport errors")
    retry_wait_initial_s: float = 1.0
    retry_wait_max_s: float = 30.0
    timeout_ms: int = Field(60_000, ge=1, description="one request's timeout (a server that never answers)")
    max_total_s: float = Field(
        120.0,
        gt=0,
        description="the whole model-backed planning (requests, retries, tool calls); past it the offline "
        "planner decides, with the reason recorded",
    )
    max_tool_result_chars: int = Field(
        12_000, description="longer tool results are cut before the model sees them"
    )
