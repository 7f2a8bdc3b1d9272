"""Read-only Weave trace tools, mirroring the official W&B MCP server (v0.3.3): names, arguments, JSON shapes."""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from tools.mcp.safety import add_tools
from tools.mcp.wandb_tools import EntityName, ProjectName, json_errors, tool_error
from tools.tracking.call_filters import CallFilters
from tools.tracking.store import open_store
from tools.tracking.store_models import TraceCall
from tools.tracking.trace_db import op_short_name

DEFAULT_TRACES = 100
MAX_TRACES = 500  # more is refused (`query_too_large`), as the official server's hosted guard does
REPLY_CHAR_BUDGET = 100_000  # ~25k tokens: past it the last traces are dropped and the metadata says so
MAX_PER_TASK = 50


def _truncate(value: Any, length: int | None) -> Any:
    """Strings cut to `length` characters (0 keeps only the keys, as the official tool)."""
    if length is None:
        return value
    if isinstance(value, str):
        return value if len(value) <= length else value[:length] + "..."
    if isinstance(value, dict):
        return {k: _truncate(v, length) for k, v in value.items()}
    if isinstance(value, list):
        return [_truncate(v, length) for v in value]
    return value


SCHEMA_FIELDS = ("id", "trace_id", "op_name", "started_at", "ended_at", "status", "parent_id", "display_name")
SORTABLE = ("started_at", "ended_at", "op_name", "display_name", "latency_ms", "status", "trace_id", "id")


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
        "wb_run_id": call.wb_run_id,
    }


def _sorted(calls: list[TraceCall], sort_by: str, direction: str) -> list[TraceCall]:
    if sort_by not in SORTABLE:
        raise ToolError(f"sort_by {sort_by!r} is not sortable here; use one of {', '.join(SORTABLE)}")
    present = [c for c in calls if getattr(c, sort_by) is not None]
    missing = [c for c in calls if getattr(c, sort_by) is None]
    present.sort(key=lambda c: getattr(c, sort_by), reverse=direction == "desc")
    return present + missing


def query_weave_traces_tool(
    entity_name: EntityName,
    project_name: ProjectName,
    filters: CallFilters | None = None,
    sort_by: str = "started_at",
    sort_direction: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Field(ge=1)] = DEFAULT_TRACES,
    include_costs: bool = True,
    include_feedback: bool = True,
    columns: list[str] | None = None,
    expand_columns: list[str] | None = None,
    truncate_length: Annotated[int, Field(ge=0)] = 1000,
    return_full_data: bool = False,
    metadata_only: bool = False,
    detail_level: Literal["schema", "summary", "full"] = "summary",
    offset: Annotated[int, Field(ge=0)] = 0,
) -> str:
    """Query Weave traces (calls) with filters; returns {"metadata": {...}, "traces": [...]}.

    filters (the official server's names): op_name (exact, or "*" for a substring), op_name_contains,
    display_name, display_name_contains, trace_id, trace_ids, call_ids, parent_ids, trace_roots_only,
    status ("success" / "error" / "running"), has_exception, time_range ({"start": ISO, "end": ISO}),
    latency ({"$gt": ms}), attributes / inputs / output ({"dot.path": value} or {"dot.path": {"$gt" |
    "$gte" | "$lt" | "$lte" | "$eq" | "$contains": v}}), wb_run_id (the W&B run a call is linked to).
    detail_level: "schema" (structural fields only: id, trace_id, op_name, started_at, ended_at, status,
    parent_id, display_name), "summary" (strings cut to truncate_length, the default), "full" (untruncated,
    as return_full_data). Evaluation rows are the Evaluation.predict_and_score calls: inputs.example has
    the request and target, output has the prediction, served_by, latency_ms, per-dim abs_error and the
    scores (mae, mae_rounded, json_valid). limit defaults to 100 and may be at most 500 (more is refused
    with query_too_large; page with offset); a reply past ~100k characters drops its last traces and says
    so in metadata (truncation_applied, truncation_dropped_count, truncation_note). Costs, feedback and
    expand_columns have nothing to act on locally (accepted, no effect).
    """
    if limit > MAX_TRACES:
        return tool_error(
            f"query_too_large: limit {limit} is over {MAX_TRACES} traces; page with offset, narrow the "
            "filters, or ask for metadata_only / detail_level='schema' / fewer columns"
        )
    store = open_store(entity_name, project_name, agent_view=True)
    matching = _sorted(store.query_calls(filters, sort_direction="asc"), sort_by, sort_direction)
    page = matching[offset : offset + limit]
    started = [c.started_at for c in matching]
    metadata = {
        "total_traces": len(matching),
        "total_matching_count": len(matching),
        "token_counts": {},
        "time_range": {"earliest": min(started, default=None), "latest": max(started, default=None)},
        "status_summary": dict(Counter(c.status for c in matching)),
        "op_distribution": dict(Counter(op_short_name(c.op_name) for c in matching)),
        "returned_count": 0 if metadata_only else len(page),
        "has_more": offset + len(page) < len(matching),
        "truncation_applied": False,
    }
    if metadata_only:
        return json.dumps({"metadata": metadata, "traces": []}, default=str)
    full = return_full_data or detail_level == "full"
    wanted = set(columns or (SCHEMA_FIELDS if detail_level == "schema" else ()))
    traces = []
    for call in page:
        trace = _trace_dict(call)
        if wanted:
            trace = {k: v for k, v in trace.items() if k in wanted | {"id", "trace_id", "op_name"}}
        if detail_level == "schema":
            trace = {k: v for k, v in trace.items() if k in SCHEMA_FIELDS}
        traces.append(trace if full else _truncate(trace, truncate_length))
    return _within_budget(metadata, traces)


def _within_budget(metadata: dict[str, Any], traces: list[dict[str, Any]]) -> str:
    """The reply as JSON, its last traces dropped until it fits REPLY_CHAR_BUDGET (said in metadata)."""
    reply = json.dumps({"metadata": metadata, "traces": traces}, default=str)
    if len(reply) <= REPLY_CHAR_BUDGET:
        return reply
    sizes = [len(json.dumps(trace, default=str)) + 2 for trace in traces]
    truncation_fields = 600  # the characters the truncation keys below add to the metadata, at most
    room = (
        REPLY_CHAR_BUDGET
        - len(json.dumps({"metadata": metadata, "traces": []}, default=str))
        - truncation_fields
    )
    kept = 0
    while kept < len(traces) and sizes[kept] <= room:
        room -= sizes[kept]
        kept += 1
    dropped = len(traces) - kept
    metadata = {
        **metadata,
        "returned_count": kept,
        "has_more": True,
        "truncation_applied": True,
        "truncation_dropped_count": dropped,
        "truncation_note": f"reply trimmed to {REPLY_CHAR_BUDGET} characters: the last {dropped} of "
        f"{len(traces)} traces were dropped; ask for fewer (limit, offset), fewer columns, a smaller "
        "truncate_length or detail_level='schema'",
    }
    return json.dumps({"metadata": metadata, "traces": traces[:kept]}, default=str)


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

    eval_name matches the evaluation's display name (our wandb run name) or op name. Returns
    {"evaluations": [...], returned_count, total_count, has_more, limit, project_exhaustive, project}
    ("items" is the same list, as the official server also sends). Each evaluation has eval_id,
    display_name, op_name, started_at, wb_run_id, total_predictions, observed_predictions, coverage,
    details_exhaustive, successes, errors, error_rate, scores ({mae: {mean, count}, json_valid:
    {true_count, true_fraction}, ...}), token_usage, output (the summary the evaluation logged) and,
    with include_per_task, the first rows with their status and scores.
    """
    store = open_store(entity_name, project_name, agent_view=True)
    evaluations = [
        c
        for c in store.query_calls(CallFilters(op_name_contains="Evaluation.evaluate", trace_roots_only=True))
        if eval_name is None or eval_name in (c.display_name or "") or eval_name in c.op_name
    ]
    # Aggregate scores come from every row as recorded; rows the agent sees carry no validation label.
    recorded = open_store(entity_name, project_name)
    summaries = []
    for evaluation in evaluations[:max_evals]:
        rows = CallFilters(parent_ids=[evaluation.id], op_name_contains="Evaluation.predict_and_score")
        children = store.query_calls(rows, sort_direction="asc")
        errors = sum(1 for c in children if c.status == "error" or c.exception is not None)
        summary: dict[str, Any] = {
            "eval_id": evaluation.id,
            "display_name": evaluation.display_name,
            "op_name": evaluation.op_name,
            "started_at": evaluation.started_at,
            "wb_run_id": evaluation.wb_run_id,
            "total_predictions": len(children),
            "observed_predictions": len(children),
            "returned_count": len(children),
            "coverage": 1.0,
            "details_exhaustive": True,
            "aggregate_scope": "exhaustive",
            "observed_successes": len(children) - errors,
            "observed_errors": errors,
            "observed_error_rate": round(errors / max(len(children), 1), 4),
            "successes": len(children) - errors,
            "errors": errors,
            "error_rate": round(errors / max(len(children), 1), 4),
            "scores": _scores(recorded.query_calls(rows, sort_direction="asc")),
            "token_usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "output": evaluation.output,
        }
        if include_per_task:
            summary["per_task"] = [
                {
                    "id": c.id,
                    "status": c.status,
                    "has_exception": c.exception is not None,
                    "inputs": (c.inputs or {}).get("example"),
                    "scores": (c.output or {}).get("scores"),
                }
                for c in children[:MAX_PER_TASK]
            ]
        summaries.append(summary)
    return json.dumps(
        {
            "evaluations": summaries,
            "items": summaries,
            "returned_count": len(summaries),
            "total_count": len(evaluations),
            "has_more": len(evaluations) > len(summaries),
            "limit": max_evals,
            "project_exhaustive": len(evaluations) <= len(summaries),
            "count": len(summaries),
            "project": f"{entity_name}/{project_name}",
        },
        default=str,
    )


def register(server: MCPServer) -> None:
    add_tools(
        server,
        *(
            json_errors(tool)
            for tool in (query_weave_traces_tool, count_weave_traces_tool, summarize_evaluation_tool)
        ),
    )
