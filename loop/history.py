"""The cycle history: `history.jsonl` (one line per cycle, crashed ones included) and its TSV view."""

from __future__ import annotations

from tools.core.atomic import append_line
from tools.core.contracts import CycleHistoryEntry
from tools.core.paths import loop_dir


def append_history(entry: CycleHistoryEntry) -> None:
    append_line(loop_dir() / "history.jsonl", entry.model_dump_json())
    _write_history_tsv()


def read_history() -> list[CycleHistoryEntry]:
    path = loop_dir() / "history.jsonl"
    if not path.exists():
        return []
    return [
        CycleHistoryEntry.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()
    ]


def _tsv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _write_history_tsv() -> None:
    """autoresearch-style results table: one line per cycle, crashed ones included."""
    from tools.core.atomic import atomic_write_text

    header = "cycle\tstatus\tchampion_mae\tcandidate_mae\tcandidate_rounded\tfocus\tdescription"
    lines = [header]
    for e in read_history():
        figures = (_tsv_number(x) for x in (e.champion_mae, e.candidate_mae, e.candidate_mae_rounded))
        lines.append("\t".join([str(e.cycle), e.status, *figures, ",".join(e.focus_dims), e.description]))
    atomic_write_text(loop_dir() / "history.tsv", "\n".join(lines) + "\n")
