"""Snapshot stage: the champion's evidence, read through the MCP tools the way an analyst would."""

from __future__ import annotations

import json
from typing import Any

from loop.driver.calls import StageFailed, act
from tools.core.contracts import SnapshotReading

SNAPSHOT_FILE = "snapshot.json"

# The champion's runs, asked the way one asks W&B itself (query_wandb_tool takes W&B's GraphQL).
CYCLE_RUNS_QUERY = """
query CycleRuns($entity: String, $project: String!, $filters: JSONString) {
  project(name: $project, entityName: $entity) {
    runs(first: 50, filters: $filters, order: "-createdAt") {
      edges { node { name displayName jobType state tags config summaryMetrics } }
      pageInfo { endCursor hasNextPage }
    }
  }
}
"""


async def read_snapshot(session: Any) -> SnapshotReading:
    """The evidence of the champion, read the way an analyst would through the W&B / Weave tools:
    domain snapshot, history, the champion's runs (summary + config), its training curve, the latest
    Weave evaluations, and the novelty profile of the validation split against the champion's training rows
    (drift: the share of requests less familiar than 95% of training). Returns what the planner decides
    from (snapshot, history, champion)."""
    from tools.tracking import tracking_settings

    settings = tracking_settings()
    project = {"entity_name": settings.entity, "project_name": settings.project}
    await session.list_tools()
    champion = await act(session, "snapshot", "get_champion_tool", {})
    reading = SnapshotReading(
        snapshot=await act(session, "snapshot", "get_eval_snapshot_tool", {}),
        history=await act(session, "snapshot", "get_cycle_history_tool", {}),
        champion=champion,
    )
    if champion is None:
        return reading
    await act(session, "snapshot", "get_novelty_profile_tool", {})
    variables = {
        "entity": settings.entity,
        "project": settings.project,
        "filters": json.dumps({"group": f"cycle_{champion['cycle']}"}),
    }
    result = await act(
        session, "snapshot", "query_wandb_tool", {"query": CYCLE_RUNS_QUERY, "variables": variables}
    )
    if result.get("errors"):
        raise StageFailed(f"stage snapshot: query_wandb_tool: {result['errors'][0]['message']}")
    for edge in result["data"]["project"]["runs"]["edges"] if result["data"]["project"] else []:
        if edge["node"]["jobType"] == "train":
            await act(
                session,
                "snapshot",
                "get_run_history_tool",
                {**project, "run_id": edge["node"]["name"], "keys": ["train/loss"]},
            )
    await act(session, "snapshot", "summarize_evaluation_tool", {**project, "max_evals": 3})
    return reading
