"""Where things live on disk. Everything a run writes goes under the artifacts root (git-ignored)."""

from __future__ import annotations

import os
import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """`KOTONE_ARTIFACTS` if set, else `<project>/artifacts`."""
    return Path(os.environ.get("KOTONE_ARTIFACTS", PROJECT_ROOT / "artifacts")).resolve()


def cache_dir() -> Path:
    """Converted base models and tokenizers, once per machine: `KOTONE_CACHE`, else
    `$XDG_CACHE_HOME/kotone-loop` (`~/.cache/kotone-loop`). Not under the artifacts folder, so pointing
    `KOTONE_ARTIFACTS` elsewhere does not redo the conversion."""
    if explicit := os.environ.get("KOTONE_CACHE"):
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(base).expanduser() / "kotone-loop").resolve()


def file_stem(name: str) -> str:
    """A name made safe as a file name on every system: `regression:cycle_1/student` -> `regression-cycle_1-student`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "unnamed"


def loop_dir() -> Path:
    return artifacts_dir() / "loop"


def cycle_dir(cycle: int) -> Path:
    return loop_dir() / f"cycle_{cycle}"


def registry_dir() -> Path:
    return artifacts_dir() / "registry"


def wandb_dir() -> Path:
    return artifacts_dir() / "wandb"


def weave_db_path() -> Path:
    return artifacts_dir() / "weave" / "traces.sqlite"
