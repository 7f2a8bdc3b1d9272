"""Read-only W&B run tools. `query_wandb_tool` (GraphQL), `get_run_history_tool` and `compare_runs_tool`
mirror the official W&B MCP server (github.com/wandb/wandb-mcp-server v0.3.3): same names, arguments and
result shapes (tests/fixtures/wandb_mcp_v0.3.3_tools.json is the snapshot the tests hold them to).
`list_runs_tool` and `get_run_table_tool` are this project's own. Backed by `tools.tracking.open_store`
(offline logs or cloud).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from tools.mcp.safety import add_tools
from tools.tracking.env import tracking_settings
from tools.tracking.graphql_api import execute_query
from tools.tracking.store import open_store
from tools.tracking.store_models import RunInfo

MAX_HISTORY_ROWS = 2000
MAX_QUERY_ITEMS = 200

EntityName = Annotated[str, Field(min_length=1, max_length=128, description="W&B entity (team or username)")]
ProjectName = Annotated[str, Field(min_length=1, max_length=128, description="W&B project name")]
RunId = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="short run id")
]


def tool_error(message: str) -> str:
    """A failure as the official tools report it: a JSON `{"error": ...}` in a successful result."""
    return json.dumps({"error": message})


def json_errors(tool: Callable[..., str]) -> Callable[..., str]:
    """Expected failures of a JSON tool (bad filter, unknown run, ...) come back as `{"error": ...}`."""

    @functools.wraps(tool)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        try:
            return tool(*args, **kwargs)
        except (ToolError, LookupError, ValueError) as exc:
            return tool_error(str(exc) if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}")

    return wrapper


def _safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return value


def _public_summary(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not k.startswith(("_", "wandb/"))}


def _serialize_run(run: RunInfo, include: set[str], summary_keys: list[str] | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": run.id,
        "display_name": run.name,
        "state": run.state,
        "entity": run.entity,
        "project": run.project,
        "created_at": run.created_at,
        "group": run.group,
        "job_type": run.job_type,
        "tags": run.tags,
    }
    if "summary" in include or summary_keys:
        summary = _public_summary(run.summary)
        item["summary"] = (
            summary if not summary_keys else {k: summary[k] for k in summary_keys if k in summary}
        )
    if "config" in include:
        item["config"] = run.config
    return item


def query_wandb_tool(
    query: Annotated[str, Field(min_length=1, max_length=20_000, description="a GraphQL query document")],
    variables: dict[str, Any] | None = None,
    max_items: Annotated[int, Field(ge=1, le=MAX_QUERY_ITEMS)] = 100,
    items_per_page: Annotated[int, Field(ge=1, le=MAX_QUERY_ITEMS)] = 20,
) -> dict[str, Any]:
    """Execute a GraphQL query against W&B Models data (projects and runs), as W&B's own API reads it.

    Same arguments and result as the official W&B MCP server's query_wandb_tool: `variables` fill the
    query's `$names`; `filters` is a JSON *string* (json.dumps of a Mongo-style filter such as
    {"jobType": "eval", "config.role": "base", "summary_metrics.eval/vector_mae": {"$lt": 1}}); `order`
    is "-createdAt" (default), "+summary_metrics.<key>", ...; `run(name:)` takes the short run id, a
    display name needs runs(filters: {"displayName": ...}). Collections use the connection pattern
    (`edges { node { ... } } pageInfo { endCursor hasNextPage }`; continue with `after: endCursor`).
    Run fields: id name displayName state group jobType tags createdAt config summaryMetrics (JSON
    strings) historyKeys historyLineCount sampledHistory(specs: ["{\"keys\": [\"train/loss\"]}"]).
    Example: query($entity: String, $project: String!) { project(name: $project, entityName: $entity)
    { runs(first: 5, order: "-createdAt") { edges { node { name displayName summaryMetrics } }
    pageInfo { endCursor hasNextPage } } } }. Returns {"data": ...} and "errors" when a field failed.
    A connection returns at most max_items nodes per call; items_per_page is accepted for compatibility
    (the local store answers in one page).
    """
    settings = tracking_settings()
    return execute_query(
        query,
        variables,
        open_store=lambda entity, project: open_store(entity, project, agent_view=True),
        known_project=settings.project,
        max_items=max_items,
    )


def list_runs_tool(
    entity_name: EntityName,
    project_name: ProjectName,
    resource: Literal["runs", "run"] = "runs",
    run_id: RunId | None = None,
    filters: dict[str, Any] | None = None,
    order: Literal["-created_at", "+created_at", "created_at"] = "-created_at",
    limit: Annotated[int, Field(ge=1, le=MAX_QUERY_ITEMS)] = 50,
    include: list[Literal["summary", "config"]] | None = None,
    summary_keys: list[str] | None = None,
) -> str:
    """kotone-loop's own run listing (no GraphQL): list runs (resource="runs") or read one
    (resource="run", run_id=...) of a W&B project.

    filters: W&B's run filter, as query_wandb_tool's runs(filters:) reads it, e.g. {"jobType": "eval",
    "config.role": "base"}, {"summary_metrics.eval/vector_mae": {"$lt": 1}}, {"displayName": {"$regex":
    "base"}} (operators $eq $ne $gt $gte $lt $lte $in $nin $regex $exists, $and / $or). include: add "summary" and/or "config" to each run.
    A single run always includes its summary and config. Returns items with id, display_name,
    state, group, job_type, tags, created_at; collections add returned_count, total_count,
    has_more, limit.
    """
    store = open_store(entity_name, project_name, agent_view=True)
    if resource == "run":
        if run_id is None:
            raise ToolError('resource="run" needs run_id')
        run = store.get_run(run_id)
        return json.dumps({"item": _serialize_run(run, {"summary", "config"}, summary_keys)}, default=str)
    runs = store.list_runs(filters)
    runs.sort(key=lambda r: r.created_at or "", reverse=order.startswith("-"))
    items = [_serialize_run(r, set(include or []), summary_keys) for r in runs[:limit]]
    return json.dumps(
        {
            "items": items,
            "returned_count": len(items),
            "count": len(items),
            "total_count": len(runs),
            "has_more": len(runs) > len(items),
            "limit": limit,
            "project_exhaustive": len(runs) <= len(items),
            "project": f"{entity_name}/{project_name}",
        },
        default=str,
    )


def get_run_history_tool(
    entity_name: EntityName,
    project_name: ProjectName,
    run_id: RunId,
    keys: list[str] | None = None,
    samples: Annotated[int, Field(ge=1)] = 500,
    min_step: int | None = None,
    max_step: int | None = None,
) -> str:
    """Step-indexed rows of the metrics a run logged (loss, lr, epoch, ...), evenly sampled to `samples`.

    Returns rows ({_step, key, ...}), run_id, run_name, total_steps, sampled_points, keys_returned.
    """
    history = open_store(entity_name, project_name, agent_view=True).get_history(run_id, keys)
    rows = [
        {k: _safe(v) for k, v in row.items()}
        for row in history.rows
        if (min_step is None or row["_step"] >= min_step) and (max_step is None or row["_step"] <= max_step)
    ]
    wanted = min(samples, MAX_HISTORY_ROWS)
    if len(rows) > wanted:
        stride = len(rows) / wanted
        rows = [rows[int(i * stride)] for i in range(wanted)]
    returned = sorted({k for row in rows for k in row if k != "_step"})
    return json.dumps(
        {
            "rows": rows,
            "run_id": run_id,
            "run_name": history.run_name,
            "total_steps": history.total_steps,
            "sampled_points": len(rows),
            "keys_returned": returned,
        }
    )


def _diff_dicts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    only_a, only_b, changed, same = {}, {}, {}, 0
    for key in sorted(set(a) | set(b)):
        if key not in b:
            only_a[key] = _safe(a[key])
        elif key not in a:
            only_b[key] = _safe(b[key])
        elif a[key] != b[key]:
            entry: dict[str, Any] = {"run_a": _safe(a[key]), "run_b": _safe(b[key])}
            numeric = (int, float)
            if isinstance(a[key], numeric) and isinstance(b[key], numeric) and not isinstance(a[key], bool):
                entry["delta"] = round(b[key] - a[key], 6)
            changed[key] = entry
        else:
            same += 1
    return {"only_in_run_a": only_a, "only_in_run_b": only_b, "changed": changed, "identical_count": same}


def compare_runs_tool(
    entity_name: EntityName,
    project_name: ProjectName,
    run_id_a: RunId,
    run_id_b: RunId,
    include_history_overlap: bool = False,
    history_keys: list[str] | None = None,
    history_samples: Annotated[int, Field(ge=1, le=500)] = 50,
) -> str:
    """Compare two runs: config diff, summary-metric diff (delta = b - a), metadata, optional history.

    Returns run_a / run_b (id, name, state), config_diff, summary_diff (only_in_run_a,
    only_in_run_b, changed, identical_count), metadata_diff, and history_comparison when asked.
    """
    store = open_store(entity_name, project_name, agent_view=True)
    run_a, run_b = store.get_run(run_id_a), store.get_run(run_id_b)
    summary_a, summary_b = _public_summary(run_a.summary), _public_summary(run_b.summary)
    result: dict[str, Any] = {
        "run_a": {"id": run_a.id, "name": run_a.name, "state": run_a.state},
        "run_b": {"id": run_b.id, "name": run_b.name, "state": run_b.state},
        "config_diff": _diff_dicts(run_a.config, run_b.config),
        "summary_diff": _diff_dicts(
            {k: v for k, v in summary_a.items() if not isinstance(v, dict)},
            {k: v for k, v in summary_b.items() if not isinstance(v, dict)},
        ),
        "metadata_diff": {
            name: {
                "created_at": run.created_at,
                "tags": run.tags,
                "group": run.group,
                "job_type": run.job_type,
            }
            for name, run in (("run_a", run_a), ("run_b", run_b))
        },
    }
    if include_history_overlap:
        keys = history_keys or sorted(
            k for k in set(summary_a) & set(summary_b) if isinstance(summary_a[k], int | float)
        )
        hist_a = store.get_history(run_id_a, keys).rows[:history_samples]
        hist_b = store.get_history(run_id_b, keys).rows[:history_samples]
        result["history_comparison"] = {
            "keys": keys,
            "run_a_rows": len(hist_a),
            "run_b_rows": len(hist_b),
            "run_a_sample": [{k: _safe(r.get(k)) for k in ["_step", *keys[:5]]} for r in hist_a[:10]],
            "run_b_sample": [{k: _safe(r.get(k)) for k in ["_step", *keys[:5]]} for r in hist_b[:10]],
        }
    return json.dumps(result, default=str)


def get_run_table_tool(
    entity_name: EntityName,
    project_name: ProjectName,
    run_id: RunId,
    table_key: Annotated[str, Field(min_length=1, max_length=200)] = "eval/top_failures",
    limit: Annotated[int, Field(ge=1, le=1000)] = 50,
) -> str:
    """Rows of a wandb.Table a run logged (eval runs log "eval/top_failures" and "eval/rows").

    Returns run_id, table_key, columns, rows (dicts), returned_count, total_count.
    """
    table = open_store(entity_name, project_name, agent_view=True).get_table(run_id, table_key)
    return json.dumps(
        {
            "run_id": run_id,
            "table_key": table_key,
            "columns": table.columns,
            "rows": table.rows[:limit],
            "returned_count": min(limit, len(table.rows)),
            "total_count": len(table.rows),
        },
        default=str,
    )


def register(server: MCPServer) -> None:
    json_tools = (list_runs_tool, get_run_history_tool, compare_runs_tool, get_run_table_tool)
    add_tools(server, query_wandb_tool, *(json_errors(tool) for tool in json_tools))
