"""Path arguments of MCP tools: resolved and confined to the artifacts directory."""

from __future__ import annotations

from pathlib import Path

from tools.core import paths


class PathOutsideArtifactsError(ValueError):
    pass


def confine(path_arg: str, *, root: Path | None = None) -> Path:
    """Resolve `path_arg` (relative to `root`, default the artifacts dir) and refuse anything outside it.

    Absolute paths are refused outright; `..` segments and symlinks are resolved before the check,
    so neither can step out of the root.
    """
    root = (root or paths.artifacts_dir()).resolve()
    if not path_arg or "\x00" in path_arg:
        raise PathOutsideArtifactsError("path must be a non-empty relative path")
    candidate = Path(path_arg)
    if candidate.is_absolute() or path_arg.startswith("~"):
        raise PathOutsideArtifactsError(f"path {path_arg!r} must be relative to the artifacts directory")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise PathOutsideArtifactsError(f"path {path_arg!r} points outside the artifacts directory")
    return resolved
