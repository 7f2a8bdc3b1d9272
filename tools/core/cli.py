"""What every command's parser shares: the name the user started it by, and `--version`.

Kept free of heavy imports: a command's `--help` and `--version` must answer at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PACKAGE = "kotone-loop"


def command_name(module: str, script: str) -> str:
    """`script` (e.g. kotone-run) when started as that installed console script, else `python -m module`."""
    started = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return script if started == script else f"python -m {module}"


def project_version() -> str:
    """The installed package's version; from pyproject.toml when running from a checkout not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        import tomllib

        from tools.core.paths import PROJECT_ROOT

        return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]


def command_parser(module: str, script: str, **kwargs: object) -> argparse.ArgumentParser:
    """An ArgumentParser named as the user started the command, with `--version`."""
    parser = argparse.ArgumentParser(prog=command_name(module, script), **kwargs)  # type: ignore[arg-type]
    parser.add_argument("--version", action="version", version=f"%(prog)s {project_version()}")
    return parser
