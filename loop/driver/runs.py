"""A run: the cycles one command asks for (one, N, for H hours, the unfinished one), stopped by a plateau,
a stop request or the time budget; a crash or a signal is recorded as the cycle's history line."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time

from loop.config import LoopConfig
from loop.driver.cycle import bootstrap, run_cycle
from loop.plateau import forget_plateau, mark_plateau
from loop.stages.progress import CycleState
from loop.state import now_iso
from tools.core.paths import cycle_dir, loop_dir

ACTION_TIMEOUT_S = 6 * 3600.0


def record_stop(cycle: int, status: str, error: BaseException | str) -> None:
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
    from loop.steering import hold_while_paused, stop_requested

    forget_plateau()
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
                record_stop(cycle, "interrupted", "stopped by a signal")
                print(
                    f"cycle {cycle}: INTERRUPTED; continue with: python -m loop.run --resume", file=sys.stderr
                )
                return 130
            except Exception as error:
                record_stop(cycle, "crashed", error)
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
