"""The agent's transcript as Weave calls: one root per written stretch of a cycle, a child per event.

Children: every MCP tools/call (`mcp_tools_call`, shown under the tool's name, with its arguments, full
result, error and latency), every planner message (`planner_message`: a model turn), retries, re-asks,
fallbacks and notes (the tools/list). Every call carries `kotone: {cycle, group: "cycle_N", role: "agent"}`
(the cycle's W&B runs share that group) and, when given, the W&B run it belongs to (`wb_run_id`).

Timestamps are the recorded ones, so the same events give the same trace whether written during the
cycle (`Transcript.write`) or re-logged later from the files (`loop.publish`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent.transcript import ToolCallRecord, TranscriptEvent

ROOT_OP = "agent_cycle"
CALL_OPS = {
    "tool_call": "mcp_tools_call",
    "model_message": "planner_message",
    "retry": "planner_retry",
    "reask": "planner_reask",
    "fallback": "planner_fallback",
    "note": "agent_note",
}


class _ToolFailed(Exception):
    """How a failed tools/call shows in Weave (the call's exception)."""


def _moment(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _child(
    event: TranscriptEvent, calls: list[ToolCallRecord], previous_end: datetime | None
) -> dict[str, Any]:
    """Op, display name, inputs, output, error and times of one event."""
    at = _moment(event.at)
    data = dict(event.data)
    if event.kind == "tool_call":
        index = data.get("index")
        record = calls[index] if isinstance(index, int) and index < len(calls) else None
        started = _moment(record.started_at) if record else at - timedelta(milliseconds=data["latency_ms"])
        return {
            "display_name": data["name"],
            "inputs": {"name": data["name"], "arguments": data["arguments"], "endpoint": data["endpoint"]},
            "output": record.result if record else {"result_digest": data.get("result_digest")},
            "error": data.get("error") if data.get("is_error") else None,
            "started": started,
            "ended": started + timedelta(milliseconds=data["latency_ms"]),
        }
    if event.kind == "model_message":
        content = data.pop("content", None)
        role = str(data.get("role", "message"))
        # A model's answer took from the previous event to its arrival; what we send is instantaneous.
        started = min(previous_end, at) if role == "assistant" and previous_end is not None else at
        return {
            "display_name": role,
            "inputs": data,
            "output": {"content": content},
            "error": None,
            "started": started,
            "ended": at,
        }
    name = str(data.get("what", event.kind))
    return {"display_name": name, "inputs": data, "output": None, "error": None, "started": at, "ended": at}


def trace_events(
    client: Any,
    events: list[TranscriptEvent],
    calls: list[ToolCallRecord],
    *,
    cycle: int,
    wb_run_id: str | None = None,
) -> str | None:
    """Log `events` as one Weave trace of the cycle's agent; returns the root call id (None: no events)."""
    if not events:
        return None
    from tools.tracking.weave_logger import linked_to_wandb_run

    attributes = {"kotone": {"cycle": cycle, "group": f"cycle_{cycle}", "role": "agent"}}
    children, previous_end = [], None
    for event in events:
        child = _child(event, calls, previous_end)
        children.append((event.kind, child))
        previous_end = child["ended"]
    tool_calls = [c for kind, c in children if kind == "tool_call"]
    with linked_to_wandb_run(client, wb_run_id):
        root = client.create_call(
            ROOT_OP,
            {"cycle": cycle, "events": len(events)},
            attributes=attributes,
            display_name=f"cycle {cycle}: agent",
            use_stack=False,
            started_at=min(c["started"] for _, c in children),
        )
        for kind, child in children:
            call = client.create_call(
                CALL_OPS[kind],
                child["inputs"],
                parent=root,
                attributes=attributes,
                display_name=child["display_name"],
                use_stack=False,
                started_at=child["started"],
            )
            error = _ToolFailed(child["error"]) if child["error"] else None
            client.finish_call(call, child["output"], exception=error, ended_at=child["ended"])
        summary = {
            "tool_calls": len(tool_calls),
            "tool_errors": sum(1 for c in tool_calls if c["error"]),
            "tools": sorted({c["display_name"] for c in tool_calls}),
            "model_messages": sum(1 for kind, _ in children if kind == "model_message"),
        }
        client.finish_call(root, summary, ended_at=max(c["ended"] for _, c in children))
    client.flush()
    return root.id
