"""What a person tells a running loop, kept on disk: operator notes, pause / stop, and approvals of winners.

artifacts/loop/steering/notes.json     every operator note (open and closed), numbered from 1
artifacts/loop/steering/control.json   paused / stop after the current cycle, who asked and when
artifacts/loop/cycle_N/approval.json   a winner that waits for a person (`loop.run --approve`), then the decision

Writers are `kotone-steer` (writes directly), the MCP steering tools and the loop itself; each change is a
read-modify-write under an exclusive `flock` of `steering/.lock`, and every file is replaced atomically, so
a note added while the loop reads never tears and two writers never lose each other's change.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from tools.core.atomic import atomic_write_json
from tools.core.paths import cycle_dir, loop_dir

NOTES_FILE = "notes.json"
CONTROL_FILE = "control.json"
APPROVAL_FILE = "approval.json"
MAX_NOTE_CHARS = 2000


class SteeringError(ValueError):
    """A steering request that cannot be applied (unknown note, no pending winner, ...): one line."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def steering_dir() -> Path:
    return loop_dir() / "steering"


class OperatorNote(BaseModel):
    """One thing a person asked of the loop, in their words; the planner answers it every cycle it is open."""

    id: int = Field(ge=1)
    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)
    added_at: str
    added_by: str
    status: Literal["open", "closed"] = "open"
    closed_at: str | None = None
    closed_by: str | None = None
    close_reason: str = ""


class NotesFile(BaseModel):
    notes: list[OperatorNote] = []


class RunControl(BaseModel):
    """Pause before the next cycle, or stop after the current one; `changed_by` / `changed_at` say who."""

    paused: bool = False
    stop_after_cycle: bool = False
    changed_by: str = ""
    changed_at: str = ""


class Approval(BaseModel):
    """A winner that passed the gate and its confirmation, waiting for a person; then who decided, when, why."""

    cycle: int
    candidate: str
    status: Literal["pending", "approved", "rejected"] = "pending"
    pending_since: str
    timeout_s: float | None = Field(None, description="after this many seconds unanswered: rejected")
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str = ""


@contextmanager
def _locked() -> Iterator[None]:
    folder = steering_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


# --- notes ---------------------------------------------------------------------------------------------


def read_notes() -> list[OperatorNote]:
    path = steering_dir() / NOTES_FILE
    return NotesFile.model_validate_json(path.read_text()).notes if path.is_file() else []


def open_notes() -> list[OperatorNote]:
    return [note for note in read_notes() if note.status == "open"]


def add_note(text: str, added_by: str) -> OperatorNote:
    text = " ".join(text.split())
    if not text:
        raise SteeringError("an operator note needs some text")
    if len(text) > MAX_NOTE_CHARS:
        raise SteeringError(f"an operator note has at most {MAX_NOTE_CHARS} characters (got {len(text)})")
    with _locked():
        notes = read_notes()
        note = OperatorNote(
            id=max((n.id for n in notes), default=0) + 1, text=text, added_at=now_iso(), added_by=added_by
        )
        atomic_write_json(steering_dir() / NOTES_FILE, NotesFile(notes=[*notes, note]))
    return note


def close_note(note_id: int, closed_by: str, reason: str = "") -> OperatorNote:
    with _locked():
        notes = read_notes()
        found = next((n for n in notes if n.id == note_id), None)
        if found is None:
            known = ", ".join(str(n.id) for n in notes) or "none"
            raise SteeringError(f"no operator note {note_id} (notes: {known})")
        if found.status == "closed":
            raise SteeringError(f"operator note {note_id} is already closed ({found.closed_at})")
        closed = found.model_copy(
            update={
                "status": "closed",
                "closed_at": now_iso(),
                "closed_by": closed_by,
                "close_reason": reason,
            }
        )
        notes = [closed if n.id == note_id else n for n in notes]
        atomic_write_json(steering_dir() / NOTES_FILE, NotesFile(notes=notes))
    return closed


# --- pause / stop --------------------------------------------------------------------------------------


def read_control() -> RunControl:
    path = steering_dir() / CONTROL_FILE
    return RunControl.model_validate_json(path.read_text()) if path.is_file() else RunControl()


def set_control(
    changed_by: str, *, paused: bool | None = None, stop_after_cycle: bool | None = None
) -> RunControl:
    with _locked():
        control = read_control()
        update: dict[str, object] = {"changed_by": changed_by, "changed_at": now_iso()}
        if paused is not None:
            update["paused"] = paused
        if stop_after_cycle is not None:
            update["stop_after_cycle"] = stop_after_cycle
        control = control.model_copy(update=update)
        atomic_write_json(steering_dir() / CONTROL_FILE, control)
    return control


# --- approvals -----------------------------------------------------------------------------------------


def approval_path(cycle: int) -> Path:
    return cycle_dir(cycle) / APPROVAL_FILE


def read_approval(cycle: int) -> Approval | None:
    path = approval_path(cycle)
    return Approval.model_validate_json(path.read_text()) if path.is_file() else None


def request_approval(cycle: int, candidate: str, timeout_s: float | None) -> Approval:
    """Record the winner as pending (once: a repeat after a kill keeps the first record and its clock)."""
    with _locked():
        existing = read_approval(cycle)
        if existing is not None:
            return existing
        approval = Approval(cycle=cycle, candidate=candidate, pending_since=now_iso(), timeout_s=timeout_s)
        atomic_write_json(approval_path(cycle), approval)
    return approval


def allows_promotion(approval: Approval | None) -> bool:
    """No approval was asked (approve mode off) or a person approved; pending or rejected keeps the champion."""
    return approval is None or approval.status == "approved"


def pending_approvals() -> list[Approval]:
    found = (
        read_approval(int(p.parent.name.split("_")[1])) for p in loop_dir().glob(f"cycle_*/{APPROVAL_FILE}")
    )
    return sorted((a for a in found if a and a.status == "pending"), key=lambda a: a.cycle)


def decide_approval(cycle: int, approve: bool, decided_by: str, reason: str = "") -> Approval:
    """Approve or reject a pending winner; refused when there is none or it was already decided."""
    with _locked():
        approval = read_approval(cycle)
        if approval is None:
            pending = ", ".join(str(a.cycle) for a in pending_approvals()) or "none"
            raise SteeringError(f"cycle {cycle} has no winner waiting for approval (pending: {pending})")
        if approval.status != "pending":
            raise SteeringError(
                f"cycle {cycle}'s winner {approval.candidate} was already {approval.status} "
                f"by {approval.decided_by} at {approval.decided_at}"
            )
        approval = approval.model_copy(
            update={
                "status": "approved" if approve else "rejected",
                "decided_by": decided_by,
                "decided_at": now_iso(),
                "reason": reason,
            }
        )
        atomic_write_json(approval_path(cycle), approval)
    return approval
