"""Why the last run stopped on a plateau: a record the report's banner shows (`plateau.json`)."""

from __future__ import annotations

from tools.core.atomic import atomic_write_json
from tools.core.paths import loop_dir

PLATEAU_FILE = "plateau.json"


def mark_plateau(cycle: int, reason: str) -> None:
    """Say why the run stopped, on the console and for the report's banner."""
    from loop.state import now_iso

    print(f"stopping: plateau — {reason}")
    atomic_write_json(loop_dir() / PLATEAU_FILE, {"cycle": cycle, "reason": reason, "at": now_iso()})


def forget_plateau() -> None:
    """A banner is about the last run only."""
    (loop_dir() / PLATEAU_FILE).unlink(missing_ok=True)
