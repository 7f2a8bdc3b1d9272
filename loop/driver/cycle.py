"""One cycle, stage by stage, through the MCP server; a killed cycle resumes after its last finished stage."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from loop.config import LoopConfig
from loop.driver.calls import act
from loop.driver.console import cycle_table, fmt
from loop.driver.snapshot import SNAPSHOT_FILE, read_snapshot
from loop.stages.progress import STAGES, CycleState
from tools.core.paths import cycle_dir

log = logging.getLogger("kotone.loop")


async def bootstrap(session: Any, token: str) -> None:
    print("cycle 0: scoring the base model and the baselines on the validation split", flush=True)
    champion = await act(session, "bootstrap", "bootstrap_champion_tool", {"lock_token": token})
    metrics = champion["metrics"]
    print(
        f"cycle 0: champion is {champion['candidate']} (valid MAE {metrics['vector_mae']:.3f} / "
        f"{metrics['vector_mae_rounded']:.3f} rounded)",
        flush=True,
    )


def planning_context(config: LoopConfig, cycle: int) -> Any:
    from agent.planner import PlanningContext
    from loop.stages.diagnose import read_diagnosis
    from tools.core.contracts import SnapshotReading
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


async def plan_stage(session: Any, cycle: int, config: LoopConfig, out: Path) -> None:
    from agent.backends import PlannerConfig, make_planner
    from tools.core.atomic import atomic_write_json
    from tools.core.redaction import redact_text

    plan = await make_planner(PlannerConfig.from_loop(config)).plan(
        session, cycle, planning_context(config, cycle)
    )
    atomic_write_json(out / "plan.json", plan)
    session.transcript.write(out)
    print(
        f"cycle {cycle}: plan by {plan.planner}: {len(plan.candidates)} candidates, focus {', '.join(plan.focus_dims)}"
    )
    for spec in plan.candidates:
        print(f"  {spec.name}: {spec.describe()} — {spec.reason}", flush=True)
    if plan.fallback_reason:  # may quote an upstream's error, which may echo a key
        print(f"  (the rule planner decided: {redact_text(plan.fallback_reason)})", flush=True)
    for reply in plan.note_replies:
        print(
            f"  note {reply.note_id}: {'followed' if reply.followed else 'NOT followed'} — "
            + redact_text(reply.reason),
            flush=True,
        )


async def run_cycle(session: Any, cycle: int, config: LoopConfig, token: str) -> str:
    """Run (or resume) one cycle; returns its verdict."""
    from agent.transcript import Transcript

    out = cycle_dir(cycle)
    out.mkdir(parents=True, exist_ok=True)
    state = CycleState.load_or_new(out, cycle)
    if state.finished_at:
        verdict = json.loads((out / "decision.json").read_text())["verdict"]
        print(f"cycle {cycle}: already finished ({verdict})")
        return verdict
    if state.completed:
        state.resumed += 1
        print(f"cycle {cycle}: resuming after {state.completed[-1]}", flush=True)
    state.save(out)
    started = time.perf_counter()
    session.transcript = Transcript()
    arguments = {"cycle": cycle, "lock_token": token}

    for stage in STAGES:
        if stage in state.completed:
            continue
        stage_start = time.perf_counter()
        if stage == "snapshot":
            from tools.core.atomic import atomic_write_json

            atomic_write_json(out / SNAPSHOT_FILE, await read_snapshot(session))
            session.transcript.write(out)
        elif stage == "diagnose":
            diagnosis = await act(session, stage, "diagnose_failures_tool", arguments)
            weakest = ", ".join(
                f"{w['dim']} {fmt(w['champion_cv_mae'])} "
                f"(constant {fmt(w['constant_cv_mae'])}, {w['failures_off_by_2_plus']} hard failures)"
                for w in diagnosis["weak_dims"][:3]
            )
            print(f"cycle {cycle}: weakest dims, out-of-fold on train: {weakest}", flush=True)
        elif stage == "plan":
            await plan_stage(session, cycle, config, out)
        elif stage == "augment":
            summaries = await act(session, stage, "augment_training_data_tool", arguments)
            for name, s in summaries.items():
                print(
                    f"  {name}: teacher {s['teacher']} {s['n_generated']} of {s['teacher_pairs_requested']} pairs, "
                    f"replay {s['n_replay']} of {s['replay_requested']}, kept {s['n_kept']}; "
                    f"training on {s['train_rows']} rows",
                    flush=True,
                )
        elif stage == "train":
            print(f"cycle {cycle}: training {len(read_plan_names(out))} candidates as Ray tasks", flush=True)
            results = await act(session, stage, "train_candidates_tool", arguments)
            for name, r in results.items():
                cv = (
                    f"CV MAE {fmt(r['cv_mae'])} / {fmt(r['cv_mae_rounded'])}"
                    if r["cv_mae"] is not None
                    else ""
                )
                print(f"  {name}: {r['status']} {cv} {r['note']}".rstrip(), flush=True)
        elif stage == "evaluate":
            results = await act(session, stage, "evaluate_candidates_tool", arguments)
            for name, r in results.items():
                spread = r["member_valid_mae"]
                seeds = f"; seeds {min(spread):.3f}..{max(spread):.3f}" if len(spread) > 1 else ""
                print(
                    f"  {name}: valid MAE {fmt(r['vector_mae'])} / {fmt(r['vector_mae_rounded'])}, "
                    f"p95 {r['p95_latency_ms']:.0f} ms{seeds}",
                    flush=True,
                )
        elif stage == "gate":
            gate = await act(session, stage, "run_gate_tool", arguments)
            for name, result in gate["candidates"].items():
                failed = [c["name"] for c in result["checks"] if not c["passed"]]
                print(
                    f"  {name}: gate {'PASS' if result['promoted'] else 'FAIL: ' + ', '.join(failed)}",
                    flush=True,
                )
            print(f"cycle {cycle}: gate winner {gate['winner'] or 'none'}", flush=True)
        elif stage == "confirm":
            gate = await act(session, stage, "confirm_winner_tool", arguments)
            if gate["winner"]:
                print(f"cycle {cycle}: confirmation: {gate['confirm_note']}", flush=True)
        elif stage == "approve":
            from loop.steering import wait_for_approval

            if (await act(session, stage, "request_approval_tool", arguments))["approval"]:
                await wait_for_approval(cycle)
        elif stage == "log":
            wall = round(time.perf_counter() - started, 1)
            await act(
                session,
                stage,
                "write_decision_log_tool",
                {**arguments, "started_at": state.started_at, "wall_s": wall},
            )
        log.info("cycle %d stage %s done in %.1fs", cycle, stage, time.perf_counter() - stage_start)
        state.mark_done(stage, out)
    decision = json.loads((out / "decision.json").read_text())
    print(cycle_table(decision), flush=True)
    print(
        f"cycle {cycle}: {decision['verdict'].upper()} — decision log: {out / 'decision_log.md'}", flush=True
    )
    return decision["verdict"]


def read_plan_names(out: Path) -> list[str]:
    return [c["name"] for c in json.loads((out / "plan.json").read_text())["candidates"]]
