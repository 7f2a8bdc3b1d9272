"""How a command reports a failure: one line per cause (never an exception-group traceback) and an exit
code that tells bad input (2: fix the settings or the data) from a failed run (1)."""

from __future__ import annotations

from pydantic import ValidationError

from loop.config import ConfigError
from tools.core.records import RecordError
from tools.data.dataset import DatasetError, SplitLeakError

BAD_INPUT = (ConfigError, DatasetError, SplitLeakError, RecordError, ValidationError, FileNotFoundError)


def causes(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, e.g. from the MCP session's task group."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in causes(inner)]
    return [error]


def one_line(error: BaseException) -> str:
    if isinstance(error, ConfigError):
        return str(error)
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{error.title}: {where}: {first['msg']} ({error.error_count()} error(s))"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def one_line_causes(error: BaseException) -> list[str]:
    return [one_line(cause) for cause in causes(error)]


def exit_code(error: BaseException) -> int:
    return 2 if all(isinstance(cause, BAD_INPUT) for cause in causes(error)) else 1
