"""What a tracking store answers (runs, their history and tables, trace calls) and the interface every
store implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from tools.tracking.call_filters import CallFilters


class RunNotFoundError(LookupError):
    pass


class TableNotFoundError(LookupError):
    pass


class RunInfo(BaseModel):
    id: str
    name: str
    entity: str
    project: str
    group: str
    job_type: str
    state: str
    tags: list[str] = []
    created_at: str | None = None
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}


class RunHistory(BaseModel):
    run_id: str
    run_name: str
    rows: list[dict[str, Any]]
    keys: list[str]
    total_steps: int


class RunTable(BaseModel):
    run_id: str
    key: str
    columns: list[str]
    rows: list[dict[str, Any]]


class TraceCall(BaseModel):
    id: str
    project_id: str
    trace_id: str
    parent_id: str | None
    op_name: str
    display_name: str | None
    started_at: str
    ended_at: str | None
    attributes: dict[str, Any]
    inputs: dict[str, Any]
    output: Any
    summary: dict[str, Any]
    exception: str | None
    wb_run_id: str | None = None
    status: str
    latency_ms: int | None


class TrackingStore(Protocol):
    entity: str
    project: str

    def list_runs(self, filters: dict[str, Any] | None = None) -> list[RunInfo]:
        """Runs matching a W&B run filter (`tools.tracking.run_filters`), all runs when None."""
        ...

    def get_run(self, run_id: str) -> RunInfo: ...
    def get_history(self, run_id: str, keys: list[str] | None = None) -> RunHistory: ...
    def get_table(self, run_id: str, key: str) -> RunTable: ...
    def query_calls(
        self, filters: CallFilters | None = None, limit: int | None = None, sort_direction: str = "desc"
    ) -> list[TraceCall]: ...
    def count_calls(self, filters: CallFilters | None = None) -> int: ...


def select_history(run: RunInfo, rows: list[dict[str, Any]], keys: list[str] | None) -> RunHistory:
    wanted = set(keys or [])
    selected = []
    for row in rows:
        values = {
            k: v
            for k, v in row.items()
            if (not wanted or k in wanted)
            and not (k.startswith("_") and k != "_step")
            and not isinstance(v, dict)
        }
        if any(k != "_step" for k in values):
            values.setdefault("_step", row.get("_step"))
            selected.append(values)
    present = sorted({k for r in selected for k in r if k != "_step"})
    last_step = max((r.get("_step") or 0 for r in rows), default=0)
    return RunHistory(run_id=run.id, run_name=run.name, rows=selected, keys=present, total_steps=last_step)


def trace_call_from_record(call: dict[str, Any]) -> TraceCall:
    weave_block = call["summary"].get("weave", {})
    return TraceCall(
        **{k: call[k] for k in TraceCall.model_fields if k in call and k not in ("status", "latency_ms")},
        status=weave_block.get("status", "running"),
        latency_ms=weave_block.get("latency_ms"),
    )
