"""Where things live on disk. Everything a run writes goes under the artifacts root (git-ignored)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """`KOTONE_ARTIFACTS` if set, else `<project>/artifacts`."""
    return Path(os.environ.get("KOTONE_ARTIFACTS", PROJECT_ROOT / "artifacts")).resolve()


def cache_dir() -> Path:
    """Converted base models and tokenizers; shared across runs (`KOTONE_CACHE` overrides)."""
    return Path(os.environ.get("KOTONE_CACHE", artifacts_dir() / "cache")).resolve()


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
