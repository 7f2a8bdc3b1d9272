"""The loop's two records and their one reader each: the champion pointer (`registry/champion.json`) and the
cycle history (`loop/history.jsonl`, one line per cycle, crashed ones included).

Serving, the MCP tools and the loop all read them here; the loop alone writes them (`loop.registry.promote`,
`loop.history.append_history`), at the paths below.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tools.core.contracts import CycleHistoryEntry, ModelRecord
from tools.core.paths import loop_dir, registry_dir

CHAMPION_FILE = "champion.json"
HISTORY_FILE = "history.jsonl"


class RecordError(ValueError):
    """A record file that does not read as its model; the message names the file (and line) in one line."""


def champion_path() -> Path:
    return registry_dir() / CHAMPION_FILE


def history_path() -> Path:
    return loop_dir() / HISTORY_FILE


def _why(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{exc.error_count()} error(s); first: {where + ': ' if where else ''}{first['msg']}"


def read_champion() -> ModelRecord | None:
    """The current champion, None before cycle 0 made one; `RecordError` when the pointer does not read."""
    path = champion_path()
    if not path.is_file():
        return None
    try:
        return ModelRecord.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise RecordError(f"{path}: not a valid champion record ({_why(exc)})") from None


def read_history() -> list[CycleHistoryEntry]:
    """Every history line, oldest first (blank lines skipped); `RecordError` names the first bad line."""
    path = history_path()
    if not path.is_file():
        return []
    entries = []
    for line_no, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(CycleHistoryEntry.model_validate_json(line))
        except ValidationError as exc:
            raise RecordError(f"{path}:{line_no}: not a valid history entry ({_why(exc)})") from None
    return entries
