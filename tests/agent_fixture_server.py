"""A small MCP server for the agent tests: kotone's read-only domain tools (and two W&B-mirroring tools)
served from recorded fixtures, with the same names, arguments and result shapes as the full server (loop.server.assemble).

In-process: `build_server(fixture)`. Over stdio: `python tests/agent_fixture_server.py FIXTURE.json`;
over streamable HTTP: add `--http PORT` (127.0.0.1). Two probe tools let a test see what reached the
server: `environment_names_tool` (env var names of the process) and `authorization_header_tool`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from tools.core.contracts import (
    CandidateOutcome,
    CandidateSpec,
    Capacity,
    CycleHistoryEntry,
    EvalSnapshot,
    FailureCase,
    LearnabilitySlice,
    MetricSummary,
    ModelRecord,
)
from tools.core.schema import DIMS


class Fixture(BaseModel):
    snapshot: EvalSnapshot
    capacity: Capacity = Capacity(teacher="offline", max_teacher_pairs=600, max_replay_rows=200)
    history: list[CycleHistoryEntry] = []
    champion: ModelRecord | None = None
    learnability: list[LearnabilitySlice] | None = None
    learnability_error: str | None = None
    run_histories: dict[str, list[dict[str, float]]] = {}


def metrics(per_dim: list[float], json_valid_rate: float = 1.0, n_rows: int = 88) -> MetricSummary:
    mae = sum(per_dim) / len(per_dim)
    return MetricSummary(
        vector_mae=mae,
        vector_mae_rounded=mae,
        mse_norm=mae * mae / 100,
        r2=0.1,
        json_valid_rate=json_valid_rate,
        fallback_rate=0.0,
        p50_latency_ms=800.0,
        p95_latency_ms=1000.0,
        per_dim_mae=dict(zip(DIMS, per_dim, strict=True)),
        n_rows=n_rows,
    )


def failure(target: list[int], prediction: list[float] | None, text: str = "a request") -> FailureCase:
    row_mae = (
        None if prediction is None else sum(abs(p - t) for p, t in zip(prediction, target, strict=True)) / 6
    )
    return FailureCase(
        request_text=text, source_type="request_text", target=target, prediction=prediction, row_mae=row_mae
    )


def cycle_entry(
    cycle: int,
    status: str,
    candidates: list[CandidateSpec] = (),
    champion_mae: float | None = None,
    candidate_mae: float | None = None,
    candidate_status: str | None = None,
) -> CycleHistoryEntry:
    """A history line whose candidates were judged `candidate_status` (default: the cycle's status)."""
    return CycleHistoryEntry(
        cycle=cycle,
        status=status,  # type: ignore[arg-type]
        description=f"cycle {cycle}",
        candidates=[
            CandidateOutcome(
                name=spec.name,
                recipe_key=spec.recipe_key(),
                description=spec.describe(),
                status=candidate_status or status,  # type: ignore[arg-type]
            )
            for spec in candidates
        ],
        champion_mae=champion_mae,
        candidate_mae=candidate_mae,
        started_at=f"2026-11-27T10:0{cycle}:00+00:00",
    )


def build_server(fixture: Fixture) -> MCPServer:
    server = MCPServer("kotone-agent-fixture")

    @server.tool()
    def get_eval_snapshot_tool(top_k: int = 10) -> EvalSnapshot:
        """Champion vs base on the validation split: metrics, per-dim MAE, top-k failures, baselines."""
        return fixture.snapshot.model_copy(update={"top_failures": fixture.snapshot.top_failures[:top_k]})

    @server.tool()
    def get_cycle_history_tool(limit: int = 50) -> list[CycleHistoryEntry]:
        """Every cycle so far (crashed ones included), oldest first."""
        return fixture.history[-limit:]

    @server.tool()
    def get_augmentation_capacity_tool() -> Capacity:
        """What augmentation can deliver this cycle (teacher pairs, replay rows)."""
        return fixture.capacity

    @server.tool()
    def get_champion_tool() -> ModelRecord | None:
        """The current champion, or null before the first evaluation."""
        return fixture.champion

    if fixture.learnability is not None or fixture.learnability_error:

        @server.tool()
        def get_learnability_tool() -> list[LearnabilitySlice]:
            """Cross-validated cheap-model vs constant error per (source type, dim) slice of train."""
            if fixture.learnability_error:
                raise ToolError(fixture.learnability_error)
            return fixture.learnability or []

    @server.tool()
    def get_run_history_tool(entity_name: str, project_name: str, run_id: str) -> str:
        """The logged history rows of one run, as a JSON string (W&B MCP shape)."""
        if run_id not in fixture.run_histories:
            return json.dumps({"error": f"run {run_id} not found in {entity_name}/{project_name}"})
        return json.dumps(fixture.run_histories[run_id])

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def count_failures_tool(min_row_mae: float = 1.5) -> int:
        """How many top failures have at least this row MAE (annotated read-only, not a known name)."""
        return sum(1 for f in fixture.snapshot.top_failures if (f.row_mae or 0) >= min_row_mae)

    @server.tool()
    def start_training_tool(cycle: int) -> str:
        """An action tool: starts training. Planners must never call it."""
        raise RuntimeError("a planner called an action tool")

    @server.tool()
    def environment_names_tool() -> list[str]:
        """Names (not values) of the environment variables this server process sees."""
        return sorted(os.environ)

    @server.tool()
    def authorization_header_tool(ctx: Context) -> str | None:
        """The Authorization header of this request (HTTP transports only)."""
        return (ctx.headers or {}).get("authorization")

    return server


if __name__ == "__main__":
    fixture_server = build_server(Fixture.model_validate_json(Path(sys.argv[1]).read_text()))
    if len(sys.argv) == 4 and sys.argv[2] == "--http":
        fixture_server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
    else:
        fixture_server.run()
