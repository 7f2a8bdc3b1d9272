"""The agent's view of a tracking store: held-out splits do not exist, the gate's split shows no per-row
label."""

from __future__ import annotations

from typing import Any

from tools.tracking.call_filters import CallFilters, call_matches
from tools.tracking.store_models import (
    RunHistory,
    RunInfo,
    RunNotFoundError,
    RunTable,
    TraceCall,
    TrackingStore,
)

HELD_OUT_SPLITS = frozenset({"test"})
HELD_OUT_ROLES = frozenset({"test_record"})
# The gate's split: the agent sees its aggregate figures, never a row's target or error.
GATE_SPLITS = frozenset({"valid"})
ROW_LABEL_KEYS = frozenset(
    {"target", "abs_error", "abs_error_rounded", "mae", "mae_rounded", "row_mae", "row_mae_rounded"}
)


def is_held_out(labels: dict[str, Any]) -> bool:
    """A run (config) or evaluation (kotone attributes) of a split the agent must never read."""
    return labels.get("split") in HELD_OUT_SPLITS or labels.get("role") in HELD_OUT_ROLES


def is_gate_split(labels: dict[str, Any]) -> bool:
    """A run or evaluation of the validation split: aggregates for the agent, no per-row labels."""
    return labels.get("split") in GATE_SPLITS


def without_row_labels(value: Any) -> Any:
    """`value` with every target and per-row error taken out, at any depth."""
    if isinstance(value, dict):
        return {k: without_row_labels(v) for k, v in value.items() if k not in ROW_LABEL_KEYS}
    if isinstance(value, list):
        return [without_row_labels(v) for v in value]
    return value


class AgentVisibleStore:
    """A store as the agent may see it: runs and traces of held-out splits do not exist, and the rows of the
    gate's split (validation) carry no target and no per-row error, in tables and traces alike (the run's
    and the evaluation's aggregate figures stay). Trace filters apply to what the agent sees, so a filter
    on a hidden target matches nothing."""

    def __init__(self, inner: TrackingStore):
        self._inner = inner
        self.entity, self.project = inner.entity, inner.project

    def _visible_run(self, run_id: str) -> RunInfo:
        run = self._inner.get_run(run_id)
        if is_held_out(run.config):
            raise RunNotFoundError(f"run {run_id!r} not found in {self.entity}/{self.project}")
        return run

    def list_runs(self, filters: dict[str, Any] | None = None) -> list[RunInfo]:
        return [r for r in self._inner.list_runs(filters) if not is_held_out(r.config)]

    def get_run(self, run_id: str) -> RunInfo:
        return self._visible_run(run_id)

    def get_history(self, run_id: str, keys: list[str] | None = None) -> RunHistory:
        self._visible_run(run_id)
        return self._inner.get_history(run_id, keys)

    def get_table(self, run_id: str, key: str) -> RunTable:
        run = self._visible_run(run_id)
        table = self._inner.get_table(run_id, key)
        if not is_gate_split(run.config):
            return table
        return table.model_copy(
            update={
                "columns": [c for c in table.columns if c not in ROW_LABEL_KEYS],
                "rows": [without_row_labels(row) for row in table.rows],
            }
        )

    def _trace_labels(self) -> dict[str, dict[str, Any]]:
        roots = self._inner.query_calls(CallFilters(trace_roots_only=True))
        return {c.trace_id: c.attributes.get("kotone") or {} for c in roots}

    def query_calls(
        self, filters: CallFilters | None = None, limit: int | None = None, sort_direction: str = "desc"
    ) -> list[TraceCall]:
        labels = self._trace_labels()
        by_content = filters is not None and (filters.inputs or filters.output)
        inner_filters = filters.model_copy(update={"inputs": None, "output": None}) if by_content else filters
        calls = []
        for call in self._inner.query_calls(inner_filters, None, sort_direction):
            trace = labels.get(call.trace_id, {})
            if is_held_out(trace):
                continue
            if is_gate_split(trace):
                call = call.model_copy(
                    update={
                        "inputs": without_row_labels(call.inputs),
                        "output": call.output if call.parent_id is None else without_row_labels(call.output),
                    }
                )
            if by_content and not call_matches(call, filters):
                continue
            calls.append(call)
        return calls if limit is None else calls[:limit]

    def count_calls(self, filters: CallFilters | None = None) -> int:
        return len(self.query_calls(filters))
