"""The history: one JSON line per cycle (crashed and interrupted ones too), a TSV line per candidate."""

from __future__ import annotations

from loop.history import append_history, read_history
from tools.core.contracts import CandidateOutcome, CycleHistoryEntry
from tools.core.paths import loop_dir


def test_every_cycle_is_a_line_and_the_tsv_has_one_row_per_candidate(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    outcomes = [
        CandidateOutcome(
            name="stack",
            recipe_key="k1",
            description="stack(...)",
            status="promoted",
            valid_mae=0.5,
            cv_mae=0.6,
        ),
        CandidateOutcome(
            name="deeper", recipe_key="k2", description="deeper", status="pruned", note="worse on folds"
        ),
    ]
    append_history(
        CycleHistoryEntry(
            cycle=1,
            status="promoted",
            description="two",
            candidates=outcomes,
            champion_mae=0.8,
            started_at="t",
        )
    )
    append_history(
        CycleHistoryEntry(cycle=2, status="interrupted", description="stopped by a signal", started_at="t")
    )
    assert [(e.cycle, e.status) for e in read_history()] == [(1, "promoted"), (2, "interrupted")]
    rows = [line.split("\t") for line in (loop_dir() / "history.tsv").read_text().splitlines()]
    assert rows[0][:3] == ["cycle", "candidate", "status"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        ("1", "stack", "promoted"),
        ("1", "deeper", "pruned"),
        ("2", "-", "interrupted"),
    ]
    assert rows[1][3] == "0.5000" and rows[1][5] == "0.6000" and rows[1][6] == "0.8000"
