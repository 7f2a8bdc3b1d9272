"""Steering a loop: operator notes, pause / stop, approvals — the durable files, `kotone-steer`, the MCP
steering tools (a change needs the run's lock token), and how the running loop honours them at its cycle
boundaries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from loop import steer
from loop.server.assemble import build_server
from loop.state import RunLock
from loop.steering import hold_while_paused, stop_requested, wait_for_approval
from tools.core import steering


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr("loop.steering.POLL_S", 0.01)
    return tmp_path


def _call(name: str, arguments: dict[str, Any]) -> Any:
    async def go() -> Any:
        async with Client(build_server()) as client:
            return await client.call_tool(name, arguments)

    return asyncio.run(go())


def test_notes_are_numbered_kept_on_disk_and_closed_with_who_and_why(artifacts):
    first = steering.add_note("prefer more replay on warmth;  leave the learning rate alone", "ana")
    second = steering.add_note("stop after this cycle", "ben")
    assert (first.id, second.id) == (1, 2)
    assert first.text == "prefer more replay on warmth; leave the learning rate alone"
    on_disk = json.loads((artifacts / "loop" / "steering" / "notes.json").read_text())
    assert [n["text"] for n in on_disk["notes"]] == [first.text, second.text]
    closed = steering.close_note(1, "ana", "done")
    assert (closed.status, closed.closed_by, closed.close_reason) == ("closed", "ana", "done")
    assert [n.id for n in steering.open_notes()] == [2]
    assert steering.add_note("one more", "ana").id == 3  # ids are never reused
    with pytest.raises(steering.SteeringError, match="already closed"):
        steering.close_note(1, "ana")
    with pytest.raises(steering.SteeringError, match="no operator note 9"):
        steering.close_note(9, "ana")
    with pytest.raises(steering.SteeringError, match="needs some text"):
        steering.add_note("   ", "ana")


def test_an_approval_is_pending_once_then_decided_once(artifacts):
    pending = steering.request_approval(3, "stack", timeout_s=60)
    again = steering.request_approval(3, "other", timeout_s=1)  # a repeat after a kill keeps the first record
    assert again == pending and [a.cycle for a in steering.pending_approvals()] == [3]
    decided = steering.decide_approval(3, True, "ana")
    assert (decided.status, decided.decided_by) == ("approved", "ana") and decided.decided_at
    assert steering.pending_approvals() == []
    with pytest.raises(steering.SteeringError, match="already approved by ana"):
        steering.decide_approval(3, False, "ben", "too slow")
    with pytest.raises(steering.SteeringError, match="cycle 4 has no winner waiting"):
        steering.decide_approval(4, True, "ana")


def test_only_an_approved_winner_or_no_approval_asked_lets_the_champion_move(artifacts):
    assert steering.allows_promotion(None)  # approve mode off: the gate alone decides
    pending = steering.request_approval(2, "stack", None)
    assert not steering.allows_promotion(pending)
    assert not steering.allows_promotion(pending.model_copy(update={"status": "rejected"}))
    assert steering.allows_promotion(steering.decide_approval(2, True, "ana"))


def test_kotone_steer_writes_directly_and_refuses_bad_requests_with_exit_2(artifacts, capsys):
    assert steer.main(["prefer more replay on warmth; leave the learning rate alone"]) == 0
    assert "note 1 added" in capsys.readouterr().out
    assert steer.main(["--pause"]) == 0 and steering.read_control().paused
    assert steer.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "loop: paused" in listed and "[1] open: prefer more replay on warmth" in listed
    assert steer.main(["--resume"]) == 0 and not steering.read_control().paused
    assert steer.main(["--stop-after-cycle"]) == 0 and steering.read_control().stop_after_cycle
    assert steer.main(["--close", "1", "not needed any more"]) == 0
    assert steering.read_notes()[0].close_reason == "not needed any more"
    capsys.readouterr()
    assert steer.main(["--close", "7"]) == 2
    assert "error: no operator note 7" in capsys.readouterr().err
    assert steer.main(["--approve", "2"]) == 2
    assert "cycle 2 has no winner waiting" in capsys.readouterr().err
    steering.request_approval(2, "stack", None)
    assert steer.main(["--reject", "2"]) == 2  # a rejection says why
    assert steer.main(["--reject", "2", "p95 latency doubled"]) == 0
    assert steering.read_approval(2).reason == "p95 latency doubled"
    assert steer.main([]) == 2


def test_the_mcp_steering_tools_act_only_for_the_run_holding_the_lock(artifacts):
    with RunLock(artifacts / "loop" / ".lock") as lock:
        refused = _call("add_operator_note_tool", {"text": "focus on warmth", "lock_token": "guessed"})
        assert refused.is_error and "refused" in refused.content[0].text
        assert steering.read_notes() == []
        added = _call("add_operator_note_tool", {"text": "focus on warmth", "lock_token": lock.token})
        assert not added.is_error and steering.read_notes()[0].added_by == "an MCP client"
        paused = _call("steer_run_tool", {"action": "pause", "lock_token": lock.token})
        assert not paused.is_error and steering.read_control().paused
        steering.request_approval(1, "stack", None)
        decided = _call(
            "decide_winner_tool",
            {"cycle": 1, "decision": "approve", "lock_token": lock.token, "reason": "ok"},
        )
        assert not decided.is_error and steering.read_approval(1).status == "approved"
        twice = _call("decide_winner_tool", {"cycle": 1, "decision": "reject", "lock_token": lock.token})
        assert twice.is_error and "already approved" in twice.content[0].text
    listed = _call("list_operator_notes_tool", {})  # reading needs no token
    assert not listed.is_error and listed.structured_content["notes"][0]["text"] == "focus on warmth"


def test_a_paused_loop_waits_at_the_boundary_until_resumed(artifacts, capsys):
    steering.set_control("ana", paused=True)

    async def scenario() -> bool:
        waiting = asyncio.create_task(hold_while_paused(4))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # held
        steering.set_control("ana", paused=False)
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(scenario()) is False
    out = capsys.readouterr().out
    assert "paused before cycle 4 (by ana" in out and "resumed by ana" in out and "cycle 4 starts" in out


def test_a_stop_asked_while_paused_ends_the_run(artifacts, capsys):
    steering.set_control("ana", paused=True)
    steering.set_control("ben", stop_after_cycle=True)
    assert asyncio.run(hold_while_paused(2)) is True
    assert not steering.read_control().stop_after_cycle  # consumed
    assert "stopping while paused" in capsys.readouterr().out


def test_not_paused_goes_straight_on(artifacts):
    assert asyncio.run(hold_while_paused(1)) is False


def test_a_stop_flag_or_a_stop_note_ends_the_run_after_the_cycle_once(artifacts):
    assert stop_requested(1) is None
    steering.set_control("ana", stop_after_cycle=True)
    assert "kotone-steer --stop-after-cycle" in stop_requested(1)
    assert stop_requested(2) is None  # the flag was consumed
    steering.add_note("prefer lr-half", "ana")
    steering.add_note("stop the run after this one", "ben")
    reason = stop_requested(3)
    assert reason is not None and "operator note 2" in reason
    note = steering.read_notes()[1]
    assert note.status == "closed" and "stopped after cycle 3" in note.close_reason
    assert steering.read_notes()[0].status == "open" and stop_requested(4) is None


def test_approval_waits_for_a_person(artifacts, capsys):
    steering.request_approval(5, "stack", None)

    async def scenario() -> steering.Approval:
        waiting = asyncio.create_task(wait_for_approval(5))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        steering.decide_approval(5, True, "ana")
        return await asyncio.wait_for(waiting, 5)

    assert asyncio.run(scenario()).status == "approved"
    out = capsys.readouterr().out
    assert "kotone-steer --approve 5" in out and "APPROVED by ana" in out


def test_an_unanswered_winner_is_rejected_after_its_timeout(artifacts, capsys):
    steering.request_approval(6, "stack", timeout_s=0.2)
    approval = asyncio.run(asyncio.wait_for(wait_for_approval(6), 10))
    assert (approval.status, approval.decided_by) == ("rejected", "timeout")
    assert "nobody answered within 0.2 s" in approval.reason
    assert "REJECTED by timeout" in capsys.readouterr().out
