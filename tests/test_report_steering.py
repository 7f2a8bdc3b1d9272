"""The report's steering block: every operator note with what each cycle's plan did with it, the winners
that waited for approval and who decided, and the outcome memory per (lever, focus)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loop.history import append_history
from loop.report_steering import steering_view
from tools.core.atomic import atomic_write_json
from tools.core.contracts import CandidateOutcome, CandidateSpec, CycleHistoryEntry, CyclePlan, NoteReply
from tools.core.paths import cycle_dir
from tools.core.prompting import render
from tools.core.steering import add_note, close_note, decide_approval, request_approval, set_control


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    return tmp_path


def plan(cycle: int, *replies: NoteReply) -> CyclePlan:
    spec = CandidateSpec(name="deeper", focus_dims=["warmth"], reason="more layers")
    return CyclePlan(cycle=cycle, candidates=[spec], reasons={"search": "x"}, note_replies=list(replies))


def test_the_block_shows_notes_with_each_reply_approvals_and_the_memory(artifacts):
    add_note("prefer more replay on warmth; leave the learning rate alone", "ana (kotone-steer)")
    add_note("promote anyway", "ben")
    close_note(2, "ana", "the gate decides")
    atomic_write_json(cycle_dir(1) / "plan.json", plan(1))
    atomic_write_json(
        cycle_dir(2) / "plan.json",
        plan(2, NoteReply(note_id=1, followed=False, reason="not followed: no more-data candidate: judged")),
    )
    request_approval(2, "deeper", None)
    decide_approval(2, False, "ana (kotone-steer)", "p95 latency doubled")
    set_control("ana", paused=True)
    append_history(
        CycleHistoryEntry(
            cycle=2,
            status="rejected",
            description="",
            champion_mae=0.8,
            candidates=[
                CandidateOutcome(
                    name="deeper",
                    recipe_key="k",
                    description="d",
                    status="rejected",
                    valid_mae=0.75,
                    p_better=0.97,
                    focus_dims=["warmth"],
                )  # fmt: skip
            ],
            started_at="2026-12-07T20:00:00+00:00",
        )
    )
    view = steering_view()
    assert [a.cycle for a in view.answers[1]] == [2] and 2 not in view.answers
    html = render("report_steering.html.j2", steering=view)
    assert "prefer more replay on warmth; leave the learning rate alone" in html
    assert "cycle 2: <strong>not followed</strong> — not followed: no more-data candidate: judged" in html
    assert 'closed <span class="muted">the gate decides</span>' in html
    assert "<strong>rejected</strong>: p95 latency doubled" in html and "ana (kotone-steer)" in html
    assert "<strong>Paused</strong>" in html
    assert '<td>deeper</td><td>warmth</td><td class="num">1</td><td class="num">+0.050</td>' in html
    assert "0.97" in html


def test_nothing_steered_shows_nothing(artifacts):
    assert render("report_steering.html.j2", steering=steering_view()).strip() == ""
