"""Run kotone-loop cycles: snapshot -> diagnose -> plan -> augment -> train -> evaluate -> gate -> confirm ->
approve -> log.

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

import logging
import sys

from loop.driver.cli import config_from_args, parse_args
from loop.state import LoopLocked, RunLock
from tools.core.paths import loop_dir


def main(argv: list[str] | None = None) -> int:
    """Exit 0 done, 1 a cycle or the run failed, 2 refused (bad settings or data, locked, other champion)."""
    from loop.failures import exit_code, one_line_causes
    from tools.data.dataset import load_dataset
    from tools.tracking.env import set_tracking_environment

    set_tracking_environment()  # before anything can import wandb / weave (they read it at import)
    args = parse_args(argv, description=__doc__.split("\n\n")[0])
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
            from loop.driver.runs import champion_data_mismatch, run
            from loop.driver.signals import run_until_signal

            mismatch = champion_data_mismatch(config)
            if mismatch:
                print(f"error: {mismatch}", file=sys.stderr)
                return 2
            from loop.stages.inputs import save_config

            save_config(config)
            assert lock.token is not None
            token = lock.token
            return run_until_signal(lambda: run(args, config, token))
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
