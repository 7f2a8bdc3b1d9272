"""W&B's run filter and order language (what `runs(filters:, order:)` takes) applied to stored runs.

Filters are MongoDB-style, as the W&B API reads them: `{"state": "finished"}`,
`{"displayName": {"$eq": "cycle0-base"}}`, `{"config.role": "base"}` (or `config.role.value`),
`{"summary_metrics.eval/vector_mae": {"$lt": 0.5}}`, `{"tags": {"$in": ["cycle_1"]}}`,
`{"$and": [...]}`, `{"$or": [...]}`. Order is a field prefixed `-` (descending) or `+` / nothing (ascending):
`-createdAt` (the default), `+summary_metrics.eval/vector_mae`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tools.tracking.store_models import RunInfo

_MISSING = object()
_FIELDS: dict[str, Callable[[RunInfo], Any]] = {
    "name": lambda run: run.id,
    "id": lambda run: run.id,
    "displayName": lambda run: run.name,
    "display_name": lambda run: run.name,
    "state": lambda run: run.state,
    "group": lambda run: run.group,
    "jobType": lambda run: run.job_type,
    "job_type": lambda run: run.job_type,
    "tags": lambda run: run.tags,
    "createdAt": lambda run: run.created_at,
    "created_at": lambda run: run.created_at,
}
_PREFIXES = {"config.": "config", "summary_metrics.": "summary", "summaryMetrics.": "summary"}


class RunFilterError(ValueError):
    """A filter or order the local store cannot apply; the message names what is supported."""


def _dig(values: dict[str, Any], path: str) -> Any:
    """A config / summary value by key; W&B keys may themselves contain dots and slashes."""
    if path in values:
        return values[path]
    head, _, rest = path.partition(".")
    if rest and isinstance(values.get(head), dict):
        return _dig(values[head], rest)
    return _MISSING


def field_value(run: RunInfo, field: str) -> Any:
    """The run's value for a filter / order field, or a missing marker."""
    if field in _FIELDS:
        return _FIELDS[field](run)
    for prefix, attribute in _PREFIXES.items():
        if field.startswith(prefix):
            path = field.removeprefix(prefix)
            values = getattr(run, attribute)
            if attribute == "config" and path.endswith(".value") and path not in values:
                path = path.removesuffix(".value")  # W&B stores config as {key: {"value": v}}
            return _dig(values, path)
    supported = ", ".join([*_FIELDS, "config.<key>", "summary_metrics.<key>"])
    raise RunFilterError(f"unknown run field {field!r}; supported: {supported}")


def _compare(value: Any, operator: str, operand: Any) -> bool:
    present = value is not _MISSING and value is not None
    if operator == "$exists":
        return present == bool(operand)
    if operator in ("$eq", "$ne"):
        equal = (operand in value) if isinstance(value, list) else (present and value == operand)
        return equal if operator == "$eq" else not equal
    if operator in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise RunFilterError(f"{operator} takes a list")
        values = value if isinstance(value, list) else [value]
        hit = present and any(v in operand for v in values)
        return hit if operator == "$in" else not hit
    if operator == "$regex":
        return present and isinstance(value, str) and re.search(str(operand), value) is not None
    if operator in ("$gt", "$gte", "$lt", "$lte"):
        if not present:
            return False
        try:
            return {
                "$gt": value > operand,
                "$gte": value >= operand,
                "$lt": value < operand,
                "$lte": value <= operand,
            }[operator]
        except TypeError:
            return False
    raise RunFilterError(
        f"unsupported operator {operator!r}; supported: $eq $ne $gt $gte $lt $lte $in $nin $regex $exists"
    )


def run_matches(run: RunInfo, filters: dict[str, Any]) -> bool:
    """Whether `run` satisfies every condition of a W&B run filter."""
    for key, condition in filters.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list):
                raise RunFilterError(f"{key} takes a list of filters")
            results = [run_matches(run, part) for part in condition]
            if not (all(results) if key == "$and" else any(results)):
                return False
            continue
        value = field_value(run, key)
        if isinstance(condition, dict) and condition and all(k.startswith("$") for k in condition):
            if not all(_compare(value, op, operand) for op, operand in condition.items()):
                return False
        elif not _compare(value, "$eq", condition):
            return False
    return True


def order_runs(runs: list[RunInfo], order: str | None) -> list[RunInfo]:
    """Runs sorted by a W&B order string; runs without the field come last."""
    order = (order or "-createdAt").strip()
    descending = order.startswith("-")
    field = order.lstrip("+-")
    keyed = [(field_value(run, field), run) for run in runs]
    present = [(v, r) for v, r in keyed if v is not _MISSING and v is not None]
    missing = [r for v, r in keyed if v is _MISSING or v is None]
    try:
        present.sort(key=lambda pair: pair[0], reverse=descending)
    except TypeError:
        present.sort(key=lambda pair: str(pair[0]), reverse=descending)
    return [r for _, r in present] + missing
