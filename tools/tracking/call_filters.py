"""The trace filter language of the official W&B MCP server's `query_weave_traces_tool` (`filters`), applied
to stored calls."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tools.tracking.store_models import TraceCall
from tools.tracking.trace_db import op_short_name

FieldCondition = (
    Any  # a literal (equality) or {"$eq" | "$gt" | "$gte" | "$lt" | "$lte" | "$contains": operand}
)


class TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime | None = Field(None, description="ISO datetime; calls started at or after it")
    end: datetime | None = Field(None, description="ISO datetime; calls started before it")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class CallFilters(BaseModel):
    """Trace filters, named and read as the official W&B MCP server's `filters` argument."""

    model_config = ConfigDict(extra="forbid")

    op_name: str | None = Field(
        None, description='exact op name (full ref or short name); "*" for a substring'
    )
    op_name_contains: str | None = None
    display_name: str | None = Field(None, description='exact display name; "*" for a substring')
    display_name_contains: str | None = None
    trace_id: str | None = None
    trace_ids: list[str] | None = None
    call_ids: list[str] | None = Field(None, description="call (span) ids; a single id is accepted too")
    parent_ids: list[str] | None = Field(None, description="children of these call ids")
    trace_roots_only: bool | None = None
    status: Literal["success", "error", "running"] | None = None
    has_exception: bool | None = None
    time_range: TimeRange | None = Field(None, description='{"start": ISO, "end": ISO} on started_at')
    latency: dict[Literal["$gt", "$gte", "$lt", "$lte", "$eq"], float] | None = Field(
        None, description='summary.weave.latency_ms bounds, e.g. {"$gt": 500}'
    )
    attributes: dict[str, FieldCondition] | None = Field(
        None, description='dot path -> value or {"$gt"|"$gte"|"$lt"|"$lte"|"$eq"|"$contains": v}'
    )
    inputs: dict[str, FieldCondition] | None = Field(
        None, description="dot path into the inputs -> as attributes"
    )
    output: dict[str, FieldCondition] | None = Field(
        None, description="dot path into the output -> as attributes"
    )
    wb_run_id: str | dict[Literal["$contains"], str] | None = Field(
        None, description='"entity/project/run_id" (or the bare run id), or {"$contains": text}'
    )

    _lists = field_validator("call_ids", "parent_ids", "trace_ids", mode="before")(_as_list)


def _get_path(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda value, operand: value == operand,
    "$gt": lambda value, operand: value > operand,
    "$gte": lambda value, operand: value >= operand,
    "$lt": lambda value, operand: value < operand,
    "$lte": lambda value, operand: value <= operand,
}


def _satisfies(value: Any, condition: FieldCondition) -> bool:
    if not (isinstance(condition, dict) and len(condition) == 1 and next(iter(condition)).startswith("$")):
        return value == condition
    ((operator, operand),) = condition.items()
    if operator == "$contains":
        return isinstance(value, str) and str(operand).lower() in value.lower()
    if operator not in _BOUNDS:
        raise ValueError(f"unsupported operator {operator!r}; supported: {', '.join(_BOUNDS)}, $contains")
    try:
        return value is not None and _BOUNDS[operator](value, operand)
    except TypeError:
        return False


def _name_matches(pattern: str, *names: str) -> bool:
    if "*" in pattern:
        needle = pattern.replace(".*", "").replace("*", "")
        return any(needle in name for name in names)
    return pattern in names


def _run_id_matches(wb_run_id: str | None, wanted: str | dict[str, str]) -> bool:
    if wb_run_id is None:
        return False
    if isinstance(wanted, dict):
        return wanted["$contains"] in wb_run_id
    return wb_run_id == wanted or wb_run_id.endswith(f"/{wanted}")


def _started_within(started_at: str, window: TimeRange) -> bool:
    started = datetime.fromisoformat(started_at)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)

    def aware(moment: datetime) -> datetime:
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    return (window.start is None or started >= aware(window.start)) and (
        window.end is None or started < aware(window.end)
    )


def call_matches(call: TraceCall, filters: CallFilters) -> bool:
    short = op_short_name(call.op_name)
    display = call.display_name or ""
    checks = [
        filters.op_name is None or _name_matches(filters.op_name, call.op_name, short),
        filters.op_name_contains is None or filters.op_name_contains in call.op_name,
        filters.display_name is None or _name_matches(filters.display_name, display, short),
        filters.display_name_contains is None or filters.display_name_contains in display,
        filters.trace_id is None or call.trace_id == filters.trace_id,
        filters.trace_ids is None or call.trace_id in filters.trace_ids,
        filters.call_ids is None or call.id in filters.call_ids,
        filters.parent_ids is None or call.parent_id in filters.parent_ids,
        not filters.trace_roots_only or call.parent_id is None,
        filters.status is None or call.status == filters.status,
        filters.has_exception is None or (call.exception is not None) == filters.has_exception,
        filters.time_range is None or _started_within(call.started_at, filters.time_range),
        filters.wb_run_id is None or _run_id_matches(call.wb_run_id, filters.wb_run_id),
    ]
    if filters.latency:
        checks.append(all(_satisfies(call.latency_ms, {op: b}) for op, b in filters.latency.items()))
    for source, conditions in (
        (call.attributes, filters.attributes),
        (call.inputs, filters.inputs),
        (call.output, filters.output),
    ):
        for path, condition in (conditions or {}).items():
            checks.append(_satisfies(_get_path(source, path), condition))
    return all(checks)
