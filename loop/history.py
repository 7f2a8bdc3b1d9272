"""The cycle history: `history.jsonl` (one line per cycle, crashed ones included) and its TSV view."""

from __future__ import annotations

from tools.core.atomic import append_line
from tools.core.contracts import CycleHistoryEntry
from tools.core.paths import loop_dir
from tools.core.records import history_path, read_history


def append_history(entry: CycleHistoryEntry) -> None:
    append_line(history_path(), entry.model_dump_json())
    _write_history_tsv()


def _tsv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _write_history_tsv() -> None:
    """autoresearch-style results table: one line per candidate (keep / discard / pruned / crash), and one
    per cycle that never got to candidates (crashed or interrupted early)."""
    from tools.core.atomic import atomic_write_text

    header = "cycle\tcandidate\tstatus\tvalid_mae\tvalid_rounded\tcv_mae\tchampion_mae\tdescription"
    lines = [header]
    for e in read_history():
        if not e.candidates:
            lines.append(
                "\t".join(
                    [str(e.cycle), "-", e.status, "", "", "", _tsv_number(e.champion_mae), e.description]
                )
            )
        for c in e.candidates:
            figures = (_tsv_number(x) for x in (c.valid_mae, c.valid_mae_rounded, c.cv_mae, e.champion_mae))
            lines.append("\t".join([str(e.cycle), c.name, c.status, *figures, c.description]))
    atomic_write_text(loop_dir() / "history.tsv", "\n".join(lines) + "\n")
