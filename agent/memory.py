"""Memory a person can read: per (lever, focus), what every earlier candidate of the whole history gave.

A row per (lever, focus dims) pair: how often it was tried, its best gain over the champion of its cycle
(valid MAE, champion minus candidate: positive is better), its best bootstrap P(better), and the verdicts.
The lever is the candidate's name (the rule planner names candidates after their lever; a model planner's
names are its own). The rule planner moves a lever to the back of its order once it was rejected twice
for the same focus without a promotion ("not that again"); model planners see the table in their prompt;
the report shows it.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from tools.core.contracts import CycleHistoryEntry

REJECTIONS_BEFORE_DEMOTION = 2


class OutcomeRow(BaseModel):
    lever: str
    focus: str
    tried: int
    verdicts: dict[str, int]
    best_gain: float | None
    best_p_better: float | None
    cycles: list[int]

    @property
    def verdict(self) -> str:
        return ", ".join(f"{status} ×{count}" for status, count in sorted(self.verdicts.items()))

    @property
    def not_again(self) -> bool:
        return self.verdicts.get("promoted", 0) == 0 and (
            self.verdicts.get("rejected", 0) + self.verdicts.get("pruned", 0) >= REJECTIONS_BEFORE_DEMOTION
        )

    def line(self) -> str:
        gain = "-" if self.best_gain is None else f"{self.best_gain:+.3f}"
        p = "-" if self.best_p_better is None else f"{self.best_p_better:.2f}"
        return (
            f"{self.lever} on {self.focus}: tried {self.tried} (cycles {', '.join(map(str, self.cycles))}), "
            f"best gain {gain}, best P(better) {p}, {self.verdict}"
        )


def _best(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def outcome_table(history: list[CycleHistoryEntry]) -> list[OutcomeRow]:
    """Rows in the order they were first tried; cycle 0 (the baselines) and crashes are no judgement."""
    groups: dict[tuple[str, str], list[tuple[int, str, float | None, float | None]]] = {}
    for entry in history:
        if entry.cycle == 0:
            continue
        for outcome in entry.candidates:
            if outcome.status in ("crashed", "not_trained"):
                continue
            focus = ",".join(outcome.focus_dims or entry.focus_dims) or "-"
            gain = (
                entry.champion_mae - outcome.valid_mae
                if entry.champion_mae is not None and outcome.valid_mae is not None
                else None
            )
            groups.setdefault((outcome.name, focus), []).append(
                (entry.cycle, outcome.status, gain, outcome.p_better)
            )
    return [
        OutcomeRow(
            lever=lever,
            focus=focus,
            tried=len(rows),
            verdicts=dict(Counter(status for _, status, _, _ in rows)),
            best_gain=_best([gain for _, _, gain, _ in rows]),
            best_p_better=_best([p for _, _, _, p in rows]),
            cycles=sorted({cycle for cycle, _, _, _ in rows}),
        )
        for (lever, focus), rows in groups.items()
    ]


def demoted_levers(table: list[OutcomeRow], focus: list[str]) -> list[OutcomeRow]:
    """Rows that say "not that again" for this focus."""
    key = ",".join(focus)
    return [row for row in table if row.focus == key and row.not_again]
