"""Operator notes in the plan: what the rule planner reads in a note, how it honours it (focus, levers to
prefer or leave alone, stop), and the reply every open note gets — a note can never relax the gate.
Also the outcome memory per (lever, focus) the planners use."""

from __future__ import annotations

import asyncio

from agent_fixture_server import Fixture, build_server, cycle_entry, metrics

from agent.mcp_client import open_session
from agent.memory import demoted_levers, outcome_table
from agent.offline_planner import OfflinePlanner
from agent.operator_notes import GATE_REPLY, complete_replies, read_note
from agent.planner import PlanningContext
from tools.core.contracts import (
    CandidateOutcome,
    Capacity,
    CycleHistoryEntry,
    CyclePlan,
    EvalSnapshot,
    ModelRecord,
    NoteReply,
    StudentRecipe,
)
from tools.core.steering import OperatorNote

# The champion is the cycle-0 ridge; its CV error is worst on complexity, then nostalgia.
CHAMPION = ModelRecord(
    cycle=0,
    candidate="tfidf-ridge",
    student_path="registry/cycle_0/tfidf-ridge/student",
    decoder="regression",
    base_model="bundled",
    recipe=StudentRecipe(family="baseline", baseline="tfidf-ridge"),
    metrics=metrics([0.8] * 6),
)
SNAPSHOT = EvalSnapshot(
    champion=CHAMPION,
    base_metrics=metrics([4.5] * 6),
    champion_metrics=metrics([0.8] * 6),
    top_failures=[],
    champion_cv=metrics([0.8, 0.7, 0.8, 0.8, 1.3, 1.1]),
    baselines_cv={"train-median": metrics([1.0] * 6)},
)
CAPACITY = Capacity(teacher="offline", max_teacher_pairs=300, max_replay_rows=50)


def note(note_id: int, text: str) -> OperatorNote:
    return OperatorNote(id=note_id, text=text, added_at="2026-12-07T20:00:00+00:00", added_by="ana")


def plan_with(notes: list[OperatorNote], history: list[CycleHistoryEntry] = (), k: int = 2) -> CyclePlan:
    fixture = Fixture(
        snapshot=SNAPSHOT,
        capacity=CAPACITY,
        champion=CHAMPION,
        history=[cycle_entry(0, "baseline"), *history],
    )

    async def go() -> CyclePlan:
        async with open_session(build_server(fixture)) as session:
            return await OfflinePlanner().plan(
                session, 1, PlanningContext(candidates=k, operator_notes=notes)
            )

    return asyncio.run(go())


def test_the_issue_example_reads_as_a_lever_a_focus_and_a_lever_to_leave_alone():
    asks = read_note(note(1, "prefer more replay on warmth; leave the learning rate alone"))
    assert asks.prefer == ["more-data"] and asks.focus == ["warmth"]
    assert set(asks.avoid) == {"lr-half", "lr-double"}
    assert not asks.stop and not asks.relax_gate


def test_a_stop_a_gate_request_and_prose_are_told_apart():
    assert read_note(note(1, "Stop after this cycle, please.")).stop
    assert not read_note(note(1, "stop trying the learning rate")).stop
    assert read_note(note(1, "stop trying the learning rate")).avoid == ["lr-half", "lr-double"]
    gate = read_note(note(1, "lower the margin and promote anyway"))
    assert gate.relax_gate and not gate.prefer
    assert not read_note(note(1, "the weather is nice")).understood
    assert read_note(note(1, "try stack-cheap")).prefer == ["stack-cheap"]  # not also "stack"


def test_the_rule_planner_follows_the_note_and_says_so():
    plan = plan_with([note(1, "prefer more replay on warmth; leave the learning rate alone")])
    assert plan.focus_dims == ["warmth"]  # the diagnosis alone would pick complexity
    assert "operator note" in plan.reasons["focus_dims"]
    assert plan.candidates[0].name == "more-data"
    assert not {"lr-half", "lr-double"} & {c.name for c in plan.candidates}
    (reply,) = plan.note_replies
    assert reply.note_id == 1 and reply.followed, reply.reason
    assert (
        "candidate more-data proposed" in reply.reason
        and "no candidate uses lr-half, lr-double" in reply.reason
    )
    assert reply.note == "prefer more replay on warmth; leave the learning rate alone"


def test_levers_left_alone_are_never_proposed_however_far_the_search_goes():
    plan = plan_with([note(1, "leave the learning rate alone")], k=8)
    assert len(plan.candidates) == 8 and not {"lr-half", "lr-double"} & {c.name for c in plan.candidates}


def test_a_note_the_rules_cannot_follow_gets_a_reason():
    # the very stack-cheap candidate the rules plan today, judged in an earlier cycle (another seed)
    judged = plan_with([note(1, "try stack-cheap")]).candidate("stack-cheap").model_copy(update={"seed": 0})
    history = [cycle_entry(1, "rejected", [judged])]
    plan = plan_with([note(1, "try stack-cheap"), note(2, "the weather is nice")], history=history)
    replies = {r.note_id: r for r in plan.note_replies}
    assert not replies[1].followed and "already judged" in replies[1].reason
    assert not replies[2].followed and "read no ask" in replies[2].reason


def test_a_note_never_relaxes_the_gate_whatever_a_model_replies():
    plan = plan_with([note(1, "promote anyway, skip the confirmation")])
    assert (
        plan.note_replies[0].followed is False
        and plan.note_replies[0].reason == f"not followed: {GATE_REPLY}"
    )
    asks = [read_note(note(1, "promote anyway")), read_note(note(2, "focus on warmth"))]
    model_plan = plan.model_copy(
        update={
            "note_replies": [
                NoteReply(note_id=1, followed=True, reason="sure"),
                NoteReply(note_id=7, followed=True, reason="?"),
            ]
        }
    )
    replies = complete_replies(model_plan, asks)
    assert [(r.note_id, r.followed) for r in replies] == [(1, False), (2, False)]
    assert replies[0].reason == GATE_REPLY and replies[1].reason == "the planner gave no reply to this note"


def test_a_stop_note_is_answered_as_the_last_cycle():
    plan = plan_with([note(3, "stop the loop")])
    assert plan.note_replies[0].followed and "last cycle" in plan.note_replies[0].reason


def outcome(name: str, status: str, valid: float, p: float | None, focus: list[str]) -> CandidateOutcome:
    return CandidateOutcome(
        name=name, recipe_key=f"{name}{valid}", description=name, status=status, valid_mae=valid,
        p_better=p, focus_dims=focus,
    )  # fmt: skip


def entry(cycle: int, champion_mae: float, *outcomes: CandidateOutcome) -> CycleHistoryEntry:
    return CycleHistoryEntry(
        cycle=cycle,
        status="rejected",
        description="",
        candidates=list(outcomes),
        champion_mae=champion_mae,
        started_at="2026-12-07T20:00:00+00:00",
    )


def test_the_memory_table_sums_up_every_lever_and_focus_across_the_history():
    history = [
        entry(1, 0.80, outcome("deeper", "rejected", 0.79, 0.71, ["warmth"]), outcome("lr-half", "pruned", 0.9, None, ["warmth"])),
        entry(2, 0.80, outcome("deeper", "rejected", 0.82, 0.40, ["warmth"]), outcome("deeper", "promoted", 0.70, 0.99, ["energy"])),
    ]  # fmt: skip
    rows = {(r.lever, r.focus): r for r in outcome_table(history)}
    deeper = rows[("deeper", "warmth")]
    assert (deeper.tried, deeper.cycles, deeper.verdicts) == (2, [1, 2], {"rejected": 2})
    assert round(deeper.best_gain, 3) == 0.01 and deeper.best_p_better == 0.71
    assert deeper.not_again and not rows[("deeper", "energy")].not_again
    assert rows[("lr-half", "warmth")].verdict == "pruned ×1"
    assert [r.lever for r in demoted_levers(list(rows.values()), ["warmth"])] == ["deeper"]
    assert (
        "deeper on warmth: tried 2 (cycles 1, 2), best gain +0.010, best P(better) 0.71, rejected ×2"
        in deeper.line()
    )


def test_the_rule_planner_moves_a_lever_rejected_twice_for_its_focus_to_the_back():
    baseline_plan = plan_with([], k=1)
    first = baseline_plan.candidates[0]
    focus = baseline_plan.focus_dims
    history = [
        entry(
            c,
            0.8,
            outcome(first.name, "rejected", 0.85, 0.1, focus).model_copy(update={"recipe_key": f"x{c}"}),
        )
        for c in (1, 2)
    ]
    plan = plan_with([], history=history, k=1)
    assert plan.candidates[0].name != first.name
    assert "rejected twice" in plan.reasons["memory"]
