"""How the running loop honours a person's steering at its cycle boundaries (`kotone-steer` writes it).

- pause: before the next cycle starts, the loop says so and waits until `kotone-steer --resume`
  (a `--stop-after-cycle` given while paused ends the run instead);
- stop: after a cycle ends, `--stop-after-cycle` or an open operator note that asks for a stop ends the run
  (the flag is cleared and the note closed, each saying why);
- approval: a pending winner holds the cycle until it is approved or rejected, or its timeout passes
  (then it is rejected: the champion stays).
Every wait is `asyncio.sleep`, so Ctrl-C / SIGTERM still stop the run within seconds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from tools.core.steering import (
    Approval,
    close_note,
    decide_approval,
    open_notes,
    read_approval,
    read_control,
    set_control,
)

POLL_S = 0.5
LOOP_NAME = "loop.run"


async def hold_while_paused(next_cycle: int) -> bool:
    """Wait while the run is paused; True when a stop was asked meanwhile (the run should end)."""
    control = read_control()
    if not control.paused:
        return False
    print(
        f"paused before cycle {next_cycle} (by {control.changed_by} at {control.changed_at}); "
        "continue with: kotone-steer --resume",
        flush=True,
    )
    while control.paused and not control.stop_after_cycle:
        await asyncio.sleep(POLL_S)
        control = read_control()
    if control.stop_after_cycle:
        set_control(LOOP_NAME, stop_after_cycle=False)
        print(
            f"stopping while paused: asked by {control.changed_by} (kotone-steer --stop-after-cycle)",
            flush=True,
        )
        return True
    print(f"resumed by {control.changed_by} at {control.changed_at}: cycle {next_cycle} starts", flush=True)
    return False


def stop_requested(cycle: int) -> str | None:
    """Why the run should end after `cycle` (the request is consumed), or None to go on."""
    from agent.operator_notes import read_note

    control = read_control()
    if control.stop_after_cycle:
        set_control(LOOP_NAME, stop_after_cycle=False)
        return f"asked by {control.changed_by} at {control.changed_at} (kotone-steer --stop-after-cycle)"
    for note in open_notes():
        if read_note(note).stop:
            close_note(note.id, LOOP_NAME, f"honoured: the run stopped after cycle {cycle}")
            return f"operator note {note.id} asks for a stop: {note.text!r} (closed)"
    return None


def _age_s(since: str) -> float:
    return time.time() - datetime.fromisoformat(since).timestamp()


async def wait_for_approval(cycle: int) -> Approval:
    """Hold the cycle until its pending winner is decided, or its timeout passes (then rejected)."""
    approval = read_approval(cycle)
    assert approval is not None
    if approval.status == "pending":
        limit = f"; unanswered after {approval.timeout_s:g} s it is rejected" if approval.timeout_s else ""
        print(
            f"cycle {cycle}: winner {approval.candidate} passed the gate and its confirmation and waits for "
            f'approval: kotone-steer --approve {cycle}  or  kotone-steer --reject {cycle} "why"{limit}',
            flush=True,
        )
    while approval.status == "pending":
        if approval.timeout_s is not None and _age_s(approval.pending_since) >= approval.timeout_s:
            try:
                approval = decide_approval(
                    cycle,
                    False,
                    "timeout",
                    f"nobody answered within {approval.timeout_s:g} s (--approve-timeout)",
                )
            except ValueError:  # decided by a person in the same instant
                approval = read_approval(cycle) or approval
            break
        await asyncio.sleep(POLL_S)
        approval = read_approval(cycle) or approval
    print(
        f"cycle {cycle}: winner {approval.candidate} {approval.status.upper()} by {approval.decided_by} "
        f"at {approval.decided_at}" + (f": {approval.reason}" if approval.reason else ""),
        flush=True,
    )
    return approval
