"""Atomic file writes: write to a temp file in the same folder, fsync, then rename over the target.

Every writer here is also where secrets are masked (`tools.core.redaction`): whatever a process writes
through them, a key it holds never lands on disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

from tools.core.redaction import redact_text


def atomic_write_text(path: Path, text: str) -> None:
    text = redact_text(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: object) -> None:
    if isinstance(data, BaseModel):
        text = data.model_dump_json(indent=2)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    atomic_write_text(path, text + "\n")


def append_line(path: Path, line: str) -> None:
    """Append one line (fsynced). Used for append-only logs such as history.jsonl."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(redact_text(line.rstrip("\n")) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
