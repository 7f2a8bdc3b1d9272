"""Snapshot stage: the champion's evidence, read through the MCP tools the way an analyst would."""

from __future__ import annotations

from typing import Any

from loop.stages.calls import act


async def read_snapshot(session: Any) -> None:
    """The evidence of the champion, read the way an analyst would through the W&B / Weave tools:
    domain snapshot, history, the champion's runs (summary + config), its training curve, the latest
    Weave evaluations."""
    from tools.tracking import tracking_settings

    settings = tracking_settings()
    project = {"entity_name": settings.entity, "project_name": settings.project}
    await session.list_tools()
    champion = await act(session, "snapshot", "get_champion_tool", {})
    await act(session, "snapshot", "get_eval_snapshot_tool", {})
    await act(session, "snapshot", "get_cycle_history_tool", {})
    if champion is None:
        return
    runs = await act(
        session,
        "snapshot",
        "query_wandb_tool",
        {**project, "filters": {"group": f"cycle_{champion['cycle']}"}, "include": ["summary", "config"]},
    )
    for run in runs.get("items", []):
        if run.get("job_type") == "train":
            await act(
                session,
                "snapshot",
                "get_run_history_tool",
                {**project, "run_id": run["id"], "keys": ["loss"]},
            )
    await act(session, "snapshot", "summarize_evaluation_tool", {**project, "max_evals": 3})
