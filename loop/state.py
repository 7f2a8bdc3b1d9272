"""Per-cycle stage state (resume after a crash or kill -9) and the single-run lock."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from tools.core.atomic import atomic_write_json

STAGES: tuple[str, ...] = ("snapshot", "diagnose", "plan", "augment", "train", "evaluate", "gate", "log")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CycleState(BaseModel):
    """Which stages of a cycle finished. Written atomically after each stage."""

    cycle: int
    completed: list[str] = []
    started_at: str
    finished_at: str | None = None
    resumed: int = 0

    @classmethod
    def load_or_new(cls, cycle_dir: Path, cycle: int) -> CycleState:
        path = cycle_dir / "state.json"
        if path.exists():
            return cls.model_validate_json(path.read_text())
        return cls(cycle=cycle, started_at=now_iso())

    def save(self, cycle_dir: Path) -> None:
        atomic_write_json(cycle_dir / "state.json", self)

    def next_stage(self) -> str | None:
        return next((s for s in STAGES if s not in self.completed), None)

    def mark_done(self, stage: str, cycle_dir: Path) -> None:
        if stage not in self.completed:
            self.completed.append(stage)
        if stage == STAGES[-1]:
            self.finished_at = now_iso()
        self.save(cycle_dir)


class LoopLocked(RuntimeError):
    """Another kotone-loop run holds the lock."""


class RunLock:
    """A pid lock file: a second concurrent run is refused with a clear message; a stale lock is taken over."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder):
                    raise LoopLocked(
                        f"another kotone-loop run (pid {holder}) is using {self.path.parent}; "
                        f"wait for it, or remove {self.path} if that process is gone"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return self

    def __exit__(self, *exc: object) -> None:
        if self._holder() == os.getpid():
            self.path.unlink(missing_ok=True)

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
