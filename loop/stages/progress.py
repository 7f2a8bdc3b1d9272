"""Which stages of a cycle finished: written after each stage, so a crash or kill -9 resumes after the last."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from loop.stages.table import CYCLE_STAGES
from loop.state import now_iso
from tools.core.atomic import atomic_write_json

STAGES: tuple[str, ...] = tuple(stage.name for stage in CYCLE_STAGES)  # in the order they run


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
