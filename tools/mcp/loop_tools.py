"""Read-only domain tools: the champion, the eval snapshot the agent reads first, the cycle history."""

from __future__ import annotations

import json
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from tools.core import paths, records
from tools.core.contracts import CycleHistoryEntry, EvalSnapshot, FailureCase, MetricSummary, ModelRecord
from tools.core.schema import DIMS
from tools.mcp.pathguard import confine
from tools.mcp.safety import add_tools
from tools.tracking.store import open_store
from tools.tracking.store_models import RunInfo, TableNotFoundError, TrackingStore
from tools.tracking.wandb_logger import FAILURES_TABLE_KEY

READABLE_SUFFIXES = (".json", ".jsonl", ".md", ".tsv", ".txt")
MAX_ARTIFACT_CHARS = 200_000
ROW_REPORT_PREFIX = "eval_"


def metric_summary(summary: dict[str, Any]) -> MetricSummary:
    """The headline figures of an eval run, from its `eval/` summary keys."""

    def get(key: str) -> Any:
        return summary.get(f"eval/{key}")

    return MetricSummary(
        vector_mae=get("vector_mae"),
        vector_mae_rounded=get("vector_mae_rounded"),
        mse_norm=get("mse_norm"),
        r2=get("r2"),
        json_valid_rate=get("json_valid_rate") or 0.0,
        fallback_rate=get("fallback_rate") or 0.0,
        p50_latency_ms=get("p50_latency_ms") or 0.0,
        p95_latency_ms=get("p95_latency_ms") or 0.0,
        per_dim_mae={d: v for d in DIMS if (v := get(f"per_dim_mae/{d}")) is not None},
        n_rows=int(get("n_rows") or 0),
    )


def load_champion() -> ModelRecord | None:
    try:
        return records.read_champion()
    except records.RecordError as exc:
        raise ToolError(str(exc)) from None


def _failures(store: TrackingStore, run: RunInfo, top_k: int) -> list[FailureCase]:
    try:
        table = store.get_table(run.id, FAILURES_TABLE_KEY)
    except TableNotFoundError:
        return []
    return [
        FailureCase(
            request_text=row["request_text"],
            source_type=row["source_type"],
            target=json.loads(row["target"]),
            prediction=None if row["prediction"] is None else json.loads(row["prediction"]),
            row_mae=row["row_mae"],
            trace_id=row.get("trace_id"),
        )
        for row in table.rows[:top_k]
    ]


def _latest_by_role(runs: list[RunInfo], role: str) -> list[RunInfo]:
    return sorted((r for r in runs if r.config.get("role") == role), key=lambda r: r.created_at or "")


def _latest_cv(runs: list[RunInfo], cycle: int, candidate: str) -> RunInfo | None:
    matching = [
        r
        for r in _latest_by_role(runs, "cv")
        if r.config.get("cycle") == cycle and r.config.get("candidate") == candidate
    ]
    return matching[-1] if matching else None


def get_eval_snapshot_tool(top_k: Annotated[int, Field(ge=1, le=50)] = 10) -> EvalSnapshot:
    """What a planner decides from: the champion's and the baselines' cross-validated figures on the
    training split (`champion_cv`, `baselines_cv`) and the champion's worst out-of-fold TRAINING rows
    (`top_failures`, each with the Weave trace id of its row: query_weave_traces_tool shows it). The
    validation figures (`champion_metrics`, `base_metrics`, `baselines`) are the gate's, shown for the
    record; no validation row is listed.
    """
    store = open_store(agent_view=True)
    eval_runs = store.list_runs({"jobType": "eval"})
    champion = load_champion()
    champion_run = next((r for r in eval_runs if champion and r.id == champion.eval_run_id), None)
    bases = _latest_by_role(eval_runs, "base")
    base_run = bases[-1] if bases else None
    baselines = {
        str(run.config.get("predictor") or run.name): metric_summary(run.summary)
        for run in _latest_by_role(eval_runs, "baseline")
    }
    baselines_cv = {
        str(run.config.get("candidate")): metric_summary(run.summary)
        for run in _latest_by_role(eval_runs, "cv")
        if run.config.get("of_role") == "baseline"
    }
    champion_cv_run = _latest_cv(eval_runs, champion.cycle, champion.candidate) if champion else None
    champion_metrics = (
        metric_summary(champion_run.summary) if champion_run else (champion.metrics if champion else None)
    )
    return EvalSnapshot(
        champion=champion,
        base_metrics=metric_summary(base_run.summary) if base_run else None,
        champion_metrics=champion_metrics,
        top_failures=_failures(store, champion_cv_run, top_k) if champion_cv_run else [],
        baselines=baselines,
        champion_cv=metric_summary(champion_cv_run.summary) if champion_cv_run else None,
        baselines_cv=baselines_cv,
    )


def get_champion_tool() -> ModelRecord | None:
    """The current champion (cycle, adapter path, base model, eval run id, validation metrics); null if none."""
    return load_champion()


def get_cycle_history_tool(last_n: Annotated[int | None, Field(ge=1)] = None) -> list[CycleHistoryEntry]:
    """One entry per finished or crashed cycle from artifacts/loop/history.jsonl, oldest first."""
    try:
        entries = records.read_history()
    except records.RecordError as exc:
        raise ToolError(str(exc)) from None
    return entries if last_n is None else entries[-last_n:]


class ArtifactText(BaseModel):
    path: str
    text: str
    truncated: bool


def read_loop_artifact_tool(
    path: Annotated[str, Field(min_length=1, max_length=300)],
    max_chars: Annotated[int, Field(ge=1, le=MAX_ARTIFACT_CHARS)] = 20_000,
) -> ArtifactText:
    """Read a text artifact a cycle wrote (plan.json, gate.json, decision_log.md, ...).

    `path` is relative to artifacts/loop/ (e.g. "cycle_3/decision_log.md"); anything outside it is refused,
    and so are per-row evaluation reports (eval_*.json: validation rows with targets are the gate's; its
    figures are in gate.json, decision.json and decision_log.md).
    """
    root = paths.loop_dir()
    resolved = confine(path, root=root)
    if resolved.suffix not in READABLE_SUFFIXES:
        raise ToolError(f"only {', '.join(READABLE_SUFFIXES)} files can be read")
    if resolved.name.startswith(ROW_REPORT_PREFIX):
        raise ToolError(
            "per-row evaluation reports are the gate's (validation rows and their targets): read gate.json, "
            "decision.json or decision_log.md for the figures"
        )
    if not resolved.is_file():
        raise ToolError(f"no such artifact: {path}")
    text = resolved.read_text(encoding="utf-8", errors="replace")
    return ArtifactText(
        path=str(resolved.relative_to(root)), text=text[:max_chars], truncated=len(text) > max_chars
    )


def register(server: MCPServer) -> None:
    add_tools(
        server, get_eval_snapshot_tool, get_champion_tool, get_cycle_history_tool, read_loop_artifact_tool
    )
