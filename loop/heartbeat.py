"""The training heartbeat: each worker writes a small progress file per LM member (atomically, at most every
few seconds), and the driver's wait loop (`loop.parallel.run_tasks`) prints one line per running task from
them, so a log shows every running member's step and loss however long training takes.

    artifacts/loop/cycle_N/candidates/NAME/[FOLDER/]progress/member_K.json   {"member", "step", "loss", "at"}
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tools.core.atomic import atomic_write_text

PROGRESS_DIR = "progress"
WRITE_EVERY_S = 2.0


class ProgressWriter:
    """`on_step` callback of one member's training: the latest step and loss, written at most every
    `every_s` seconds (and always for the first step)."""

    def __init__(self, folder: Path, member: int, every_s: float = WRITE_EVERY_S) -> None:
        self.path = folder / PROGRESS_DIR / f"member_{member}.json"
        self.member = member
        self.every_s = every_s
        self.last = 0.0

    def __call__(self, metrics: dict) -> None:
        now = time.time()
        if self.last and now - self.last < self.every_s:
            return
        self.last = now
        loss = metrics.get("loss")
        payload = {"member": self.member, "step": metrics.get("step"), "loss": loss, "at": now}
        atomic_write_text(self.path, json.dumps(payload))


def progress_line(label: str, folder: Path, member: int | None = None, now: float | None = None) -> str:
    """`heartbeat label: member 0 step 40 loss 0.231 (3 s ago); ...` for `member` (every member when None),
    or that no step was reported yet."""
    now = time.time() if now is None else now
    parts = []
    pattern = "member_*.json" if member is None else f"member_{member}.json"
    for path in sorted((folder / PROGRESS_DIR).glob(pattern)):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a file being replaced right now: the next beat reads it
        loss = data.get("loss")
        loss_text = f" loss {loss:.4g}" if isinstance(loss, int | float) else ""
        parts.append(f"member {data['member']} step {data['step']}{loss_text} ({now - data['at']:.0f} s ago)")
    return f"  heartbeat {label}: " + (
        "; ".join(parts) if parts else "queued or starting, no training step reported yet"
    )
