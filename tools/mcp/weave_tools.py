"""Read-only Weave trace tools, mirroring the official W&B MCP server's names, arguments and JSON shapes."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from tools.mcp.safety import add_tools
from tools.mcp.wandb_tools import EntityName, ProjectName
from tools.tracking.store import CallFilters, TraceCall, open_store
from tools.tracking.trace_db import op_short_name

MAX_TRACES = 1000
MAX_PER_TASK = 50


def _truncate(value: Any, length: int | None) -> Any:
    if length is None or length <= 0:
        return value
    if isinstance(value, str):
        return value if len(value) <= length else value[:length] + "..."
    if isinstance(value, dict):
        return {k: _truncate(v, length) for k, v in value.items()}
    if isinstance(value, list):
        return [_truncate(v, length) for v in value]
    return value


def _trace_dict(call: TraceCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "project_id": call.project_id,
        "op_name": call.op_name,
        "display_name": call.display_name or op_short_name(call.op_name),
        "trace_id": call.trace_id,
        "parent_id": call.parent_id,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "inputs": call.inputs,
        "output": call.output,
        "exception": call.exception,
        "attributes": call.attributes,
        "summary": call.summary,
        "status": call.status,
        "latency_ms": call.latency_ms,
    }


def query_weave_traces_tool(
    entity_name: EntityName,
    project_name: ProjectName,
    filters: CallFilters | None = None,
    sort_by: Literal["started_at"] = "started_at",
    sort_direction: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Field(ge=1, le=MAX_TRACES)] = 100,
    offset: Annotated[int, Field(ge=0)] = 0,
    include_costs: bool = True,
    include_feedback: bool = True,
    columns: list[str] | None = None,
    truncate_length: Annotated[int, Field(ge=0)] = 200,
    return_full_data: bool = False,
    metadata_only: bool = False,
) -> str:
    """Query Weave traces (calls) with filters; returns {"metadata": {...}, "traces": [...]}.

    filters: op_name / op_name_contains (e.g. "Evaluation.predict_and_score"), display_name,
    trace_id, call_ids, parent_ids, trace_roots_only, status, has_exception, latency
    ({"$gt": ms}), attributes ({"dot.path": value}). Evaluation rows are the
    Evaluation.predict_and_score calls: inputs.example has the request and target, output has the
    prediction, served_by, latency_ms, per-dim abs_error and the scores (mae, mae_rounded,
    json_valid). columns limits each trace's fields; strings are cut to truncate_length unless
    return_full_data. Costs and feedback are not recorded locally (flags accepted, no effect).
    """
    store = open_store(entity_name, project_name, agent_view=True)
    matching = store.query_calls(filters, sort_direction=sort_direction)
    page = matching[offset : offset + limit]
    started = [c.started_at for c in matching]
    metadata = {
        "total_traces": len(matching),
        "token_counts": {},
        "time_range": {"earliest": min(started, default=None), "latest": max(started, default=None)},
        "status_summary": dict(Counter(c.status for c in matching)),
        "op_distribution": dict(Counter(op_short_name(c.op_name) for c in matching)),
        "returned_count": 0 if metadata_only else len(page),
        "has_more": offset + len(page) < len(matching),
    }
    if metadata_only:
        return json.dumps({"metadata": metadata, "traces": []}, default=str)
    traces = []
    for call in page:
        trace = _trace_dict(call)
        if columns:
            trace = {k: v for k, v in trace.items() if k in set(columns) | {"id", "trace_id", "op_name"}}
        traces.append(trace if return_full_data else _truncate(trace, truncate_length))
    return json.dumps({"metadata": metadata, "traces": traces}, default=str)


def count_weave_traces_tool(
    entity_name: EntityName, project_name: ProjectName, filters: CallFilters | None = None
) -> str:
    """Count traces matching the filters: {"total_count": n, "root_traces_count": n_roots}."""
    store = open_store(entity_name, project_name, agent_view=True)
    filters = filters or CallFilters()
    roots = filters.model_copy(update={"trace_roots_only": True})
    return json.dumps(
        {"total_count": store.count_calls(filters), "root_traces_count": store.count_calls(roots)}
    )


def _scores(children: list[TraceCall]) -> dict[str, dict[str, Any]]:
    values: dict[str, list[Any]] = {}
    for child in children:
        for name, value in ((child.output or {}).get("scores") or {}).items():
            if value is not None:
                values.setdefault(name, []).append(value)
    scores: dict[str, dict[str, Any]] = {}
    for name, vals in values.items():
        if all(isinstance(v, bool) for v in vals):
            true_count = sum(vals)
            scores[name] = {"true_count": true_count, "true_fraction": round(true_count / len(vals), 6)}
        else:
            scores[name] = {"mean": sum(vals) / len(vals), "count": len(vals)}
    return scores


def summarize_evaluation_tool(
    entity_name: EntityName,
    project_name: ProjectName,
    eval_name: str | None = None,
    max_evals: Annotated[int, Field(ge=1, le=50)] = 5,
    include_per_task: bool = False,
) -> str:
    """Summarize Weave evaluations (Evaluation.evaluate traces), newest first, with per-scorer aggregates.

    eval_name matches the evaluation's display name (our wandb run name) or op name. Each item has
    eval_id, display_name, op_name, started_at, total_predictions, successes, errors, error_rate,
    scores ({mae: {mean}, json_valid: {true_count, true_fraction}, ...}), output (the summary the
    evaluation logged) and, with include_per_task, the first rows with their scores.
    """
    store = open_store(entity_name, project_name, agent_view=True)
    evaluations = [
        c
        for c in store.query_calls(CallFilters(op_name_contains="Evaluation.evaluate", trace_roots_only=True))
        if eval_name is None or eval_name in (c.display_name or "") or eval_name in c.op_name
    ]
    items = []
    for evaluation in evaluations[:max_evals]:
        children = store.query_calls(
            CallFilters(parent_ids=[evaluation.id], op_name_contains="Evaluation.predict_and_score"),
            sort_direction="asc",
        )
        errors = sum(1 for c in children if c.status == "error")
        item: dict[str, Any] = {
            "eval_id": evaluation.id,
            "display_name": evaluation.display_name,
            "op_name": evaluation.op_name,
            "started_at": evaluation.started_at,
            "total_predictions": len(children),
            "observed_predictions": len(children),
            "details_exhaustive": True,
            "successes": len(children) - errors,
            "errors": errors,
            "error_rate": round(errors / max(len(children), 1), 4),
            "scores": _scores(children),
            "output": evaluation.output,
        }
        if include_per_task:
            item["per_task"] = [
                {
                    "id": c.id,
                    "status": c.status,
                    "has_exception": c.exception is not None,
                    "inputs": (c.inputs or {}).get("example"),
                    "scores": (c.output or {}).get("scores"),
                }
                for c in children[:MAX_PER_TASK]
            ]
        items.append(item)
    return json.dumps(
        {
            "items": items,
            "evaluations": items,
            "returned_count": len(items),
            "total_count": len(evaluations),
            "has_more": len(evaluations) > len(items),
            "limit": max_evals,
            "count": len(items),
            "project": f"{entity_name}/{project_name}",
        },
        default=str,
    )


def register(server: MCPServer) -> None:
    add_tools(server, query_weave_traces_tool, count_weave_traces_tool, summarize_evaluation_tool)
