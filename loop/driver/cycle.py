"""One cycle, stage by stage in the stage table's order, through the MCP server; a killed cycle resumes
after its last finished stage.

A stage with a tool is one tools/call whose reply is read as the table's result model; the two the loop
runs itself (snapshot, plan: `LOOP_STAGES`) read through read-only tools. Either way the stage's console
lines come from the table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from loop.config import LoopConfig
from loop.decision_log import DecisionRecord
from loop.driver.calls import act
from loop.driver.console import cycle_table, say
from loop.driver.snapshot import SNAPSHOT_FILE, read_snapshot
from loop.stages.progress import CycleState
from loop.stages.table import BOOTSTRAP, CYCLE_STAGES, ApprovalResult, Stage
from tools.core.atomic import atomic_write_json
from tools.core.contracts import CyclePlan, ModelRecord, SnapshotReading
from tools.core.paths import cycle_dir

log = logging.getLogger("kotone.loop")


async def call_stage(session: Any, stage: Stage, known: dict[str, Any]) -> BaseModel:
    """The stage's tool on the arguments its table row takes from what the driver knows; a typed reply."""
    assert stage.tool is not None and stage.arguments is not None
    arguments = stage.arguments.model_validate(known).model_dump()
    return stage.result.model_validate(await act(session, stage.name, stage.tool, arguments))


async def bootstrap(session: Any, token: str) -> ModelRecord:
    say(BOOTSTRAP.announce(0) if BOOTSTRAP.announce else [])
    champion = await call_stage(session, BOOTSTRAP, {"lock_token": token})
    say(BOOTSTRAP.console(0, champion))
    assert isinstance(champion, ModelRecord)
    return champion


def planning_context(config: LoopConfig, cycle: int) -> Any:
    from agent.planner import PlanningContext
    from loop.stages.diagnose import read_diagnosis
    from tools.core.steering import open_notes

    reading = cycle_dir(cycle) / SNAPSHOT_FILE
    return PlanningContext(
        snapshot=SnapshotReading.model_validate_json(reading.read_text()) if reading.is_file() else None,
        candidates=config.candidates,
        default_hparams=config.default_hparams(),
        default_options=config.student_knobs(),
        folds=config.cv_folds,
        diagnosis=read_diagnosis(cycle),
        operator_notes=open_notes(),
    )


async def snapshot_stage(session: Any, cycle: int, config: LoopConfig, out: Path) -> SnapshotReading:
    reading = await read_snapshot(session)
    atomic_write_json(out / SNAPSHOT_FILE, reading)
    session.transcript.write(out)
    return reading


async def plan_stage(session: Any, cycle: int, config: LoopConfig, out: Path) -> CyclePlan:
    from agent.backends import PlannerConfig, make_planner

    plan = await make_planner(PlannerConfig.from_loop(config)).plan(
        session, cycle, planning_context(config, cycle)
    )
    atomic_write_json(out / "plan.json", plan)
    session.transcript.write(out)
    return plan


# The stages the table gives no tool: the loop runs them itself, as an MCP client.
LOOP_STAGES: dict[str, Callable[[Any, int, LoopConfig, Path], Awaitable[BaseModel]]] = {
    "snapshot": snapshot_stage,
    "plan": plan_stage,
}


async def run_cycle(session: Any, cycle: int, config: LoopConfig, token: str) -> str:
    """Run (or resume) one cycle; returns its verdict."""
    from agent.transcript import Transcript
    from loop.steering import wait_for_approval

    out = cycle_dir(cycle)
    out.mkdir(parents=True, exist_ok=True)
    state = CycleState.load_or_new(out, cycle)
    if state.finished_at:
        verdict = DecisionRecord.model_validate_json((out / "decision.json").read_text()).verdict
        print(f"cycle {cycle}: already finished ({verdict})")
        return verdict
    if state.completed:
        state.resumed += 1
        print(f"cycle {cycle}: resuming after {state.completed[-1]}", flush=True)
    state.save(out)
    started = time.perf_counter()
    session.transcript = Transcript()

    for stage in CYCLE_STAGES:
        if stage.name in state.completed:
            continue
        stage_start = time.perf_counter()
        say(stage.announce(cycle) if stage.announce else [])
        if stage.tool is None:
            result = await LOOP_STAGES[stage.name](session, cycle, config, out)
        else:
            known = {
                "cycle": cycle,
                "lock_token": token,
                "started_at": state.started_at,
                "wall_s": round(time.perf_counter() - started, 1),
            }
            result = await call_stage(session, stage, known)
        say(stage.console(cycle, result))
        if isinstance(result, ApprovalResult) and result.approval is not None:
            await wait_for_approval(cycle)
        log.info("cycle %d stage %s done in %.1fs", cycle, stage.name, time.perf_counter() - stage_start)
        state.mark_done(stage.name, out)
    decision = DecisionRecord.model_validate_json((out / "decision.json").read_text())
    print(cycle_table(decision), flush=True)
    print(f"cycle {cycle}: {decision.verdict.upper()} — decision log: {out / 'decision_log.md'}", flush=True)
    return decision.verdict
