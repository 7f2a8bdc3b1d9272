"""Steering tools: what a person tells a running loop, over MCP (`kotone-steer` is the same on the command line).

Reading is open to any client; every change needs the lock token of the `loop.run` process that holds the
loop's lock, like the action tools (over HTTP a client must be given it; `kotone-steer` writes the files
directly and needs none).
"""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from loop.server.stage_tools import LockToken, _check_token
from tools.core import steering
from tools.mcp.safety import READ_ONLY, add_tools

CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
BY = "an MCP client"


def add_operator_note_tool(
    text: Annotated[str, Field(min_length=1, max_length=steering.MAX_NOTE_CHARS)], lock_token: LockToken
) -> steering.OperatorNote:
    """Add an operator note for the running loop (e.g. "prefer more replay on warmth; leave the learning
    rate alone"). Every following cycle's plan replies to it (followed or not, and why) until it is closed.
    A note can ask for a lever, a focus dim or a stop; it can never relax the gate."""
    _check_token(lock_token)
    return steering.add_note(text, BY)


def close_operator_note_tool(
    note_id: Annotated[int, Field(ge=1)], lock_token: LockToken, reason: str = ""
) -> steering.OperatorNote:
    """Close an operator note: planners stop answering it."""
    _check_token(lock_token)
    return steering.close_note(note_id, BY, reason)


class SteeringView(BaseModel):
    """What a person has told the running loop, and what waits for a person."""

    notes: list[steering.OperatorNote]
    control: steering.RunControl
    pending_approvals: list[steering.Approval]


def list_operator_notes_tool() -> SteeringView:
    """Every operator note (open and closed), whether the run is paused or asked to stop, and the winners
    waiting for approval."""
    return SteeringView(
        notes=steering.read_notes(),
        control=steering.read_control(),
        pending_approvals=steering.pending_approvals(),
    )


def decide_winner_tool(
    cycle: Annotated[int, Field(ge=1)],
    decision: Literal["approve", "reject"],
    lock_token: LockToken,
    reason: str = "",
) -> steering.Approval:
    """Approve mode: approve (it becomes champion) or reject (the champion stays) the winner of `cycle`
    that waits for a person."""
    _check_token(lock_token)
    return steering.decide_approval(cycle, decision == "approve", BY, reason)


def steer_run_tool(
    action: Literal["pause", "resume", "stop_after_cycle"], lock_token: LockToken
) -> steering.RunControl:
    """Pause the run before its next cycle, resume it, or stop it after the current cycle."""
    _check_token(lock_token)
    if action == "stop_after_cycle":
        return steering.set_control(BY, stop_after_cycle=True)
    return steering.set_control(BY, paused=action == "pause")


def register(server: MCPServer) -> None:
    add_tools(server, list_operator_notes_tool, annotations=READ_ONLY)
    add_tools(
        server,
        add_operator_note_tool,
        close_operator_note_tool,
        decide_winner_tool,
        steer_run_tool,
        annotations=CHANGES,
    )
