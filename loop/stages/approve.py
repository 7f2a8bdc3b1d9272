"""Approve stage: in approve mode (`loop.run --approve`) a winner that passed the gate and its confirmation
waits for a person (`kotone-steer --approve N` / `--reject N "why"`) instead of becoming champion.

The pending record (`cycle_N/approval.json`) is written once: a kill and `--resume` find it and wait again,
with the clock of the first wait (`--approve-timeout`: unanswered that long, the winner is rejected and the
champion stays). Outside approve mode, and when no winner passed, the stage records nothing.
"""

from __future__ import annotations

from loop.config import LoopConfig
from loop.stages.decide import read_gate
from tools.core.steering import Approval, read_approval, request_approval


def approval_for(cycle: int, config: LoopConfig) -> Approval | None:
    """The cycle's approval record: an existing one (whatever today's settings say), else a new pending one
    when approve mode is on and the gate's winner passed its confirmation, else None."""
    existing = read_approval(cycle)
    if existing is not None:
        return existing
    gate = read_gate(cycle)
    if not config.approve or not gate.promoted or gate.winner is None:
        return None
    return request_approval(cycle, gate.winner, config.approve_timeout_s)
