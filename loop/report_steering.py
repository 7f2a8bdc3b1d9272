"""The report's steering block: operator notes with every cycle's reply, winners waiting for approval and
decided ones, pause / stop, and the outcome memory per (lever, focus) ("not that again" made visible)."""

from __future__ import annotations

from pydantic import BaseModel

from agent.memory import OutcomeRow, outcome_table
from loop.history import read_history
from tools.core.contracts import CyclePlan
from tools.core.paths import loop_dir
from tools.core.steering import Approval, OperatorNote, RunControl, read_approval, read_control, read_notes


class NoteAnswer(BaseModel):
    cycle: int
    followed: bool
    reason: str


class SteeringView(BaseModel):
    notes: list[OperatorNote]
    answers: dict[int, list[NoteAnswer]]
    approvals: list[Approval]
    control: RunControl
    memory: list[OutcomeRow]

    @property
    def empty(self) -> bool:
        return not (self.notes or self.approvals or self.memory or self.control.paused)


def steering_view() -> SteeringView:
    answers: dict[int, list[NoteAnswer]] = {}
    approvals = []
    cycles = sorted(int(p.parent.name.split("_")[1]) for p in loop_dir().glob("cycle_*/plan.json"))
    for cycle in cycles:
        plan = CyclePlan.model_validate_json((loop_dir() / f"cycle_{cycle}" / "plan.json").read_text())
        for reply in plan.note_replies:
            answers.setdefault(reply.note_id, []).append(
                NoteAnswer(cycle=cycle, followed=reply.followed, reason=reply.reason)
            )
        if approval := read_approval(cycle):
            approvals.append(approval)
    return SteeringView(
        notes=read_notes(),
        answers=answers,
        approvals=approvals,
        control=read_control(),
        memory=outcome_table(read_history()),
    )
