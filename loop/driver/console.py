"""What a run prints beyond each stage's own lines (`loop.stages.console`): the cycle's closing table of
candidates, champion and baselines."""

from __future__ import annotations

from loop.decision_log import DecisionRecord
from loop.stages.console import fmt


def cycle_table(decision: DecisionRecord) -> str:
    """Every candidate vs the champion vs the baselines (valid MAE raw and rounded, CV MAE), as text."""
    lines = [f"{'':<34}{'valid':>8}{'round':>8}{'cv':>8}{'cv rnd':>8}  verdict"]
    for c in decision.candidates:
        mae, rounded = (c.valid.vector_mae, c.valid.vector_mae_rounded) if c.valid else (None, None)
        lines.append(
            f"{'candidate ' + c.name:<34}{fmt(mae):>8}{fmt(rounded):>8}"
            f"{fmt(c.cv_mae):>8}{fmt(c.cv_mae_rounded):>8}  {c.status}"
            + (f" ({', '.join(c.failed_checks)})" if c.failed_checks else "")
        )
    for row in decision.table:
        if row.role.startswith("winner"):
            continue
        lines.append(f"{row.role[:34]:<34}{fmt(row.vector_mae):>8}{fmt(row.vector_mae_rounded):>8}")
    return "\n".join(lines)


def say(lines: list[str]) -> None:
    for line in lines:
        print(line, flush=True)
