"""The agent's MCP tool calls and planner turns land in the local Weave store as calls of the cycle."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from agent.mcp_client import open_session
from agent.transcript import Transcript
from tools.tracking.call_filters import CallFilters
from tools.tracking.store import open_store
from tools.tracking.store_models import TraceCall


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    monkeypatch.setenv("KOTONE_TRACKING", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return tmp_path


def run_session(transcript: Transcript) -> None:
    """A short real session: a tool that answers, one that fails, and the planner's turn."""
    from loop.server.assemble import build_server

    async def go() -> None:
        async with open_session(build_server(), transcript) as session:
            await session.list_tools()
            await session.call_tool("get_cycle_history_tool", {})
            await session.call_tool("read_loop_artifact_tool", {"path": "../registry/champion.json"})
            transcript.record_model_message("assistant", '{"focus_dims": ["warmth"]}', model="scripted")

    asyncio.run(go())


def agent_calls() -> tuple[list[TraceCall], list[TraceCall]]:
    store = open_store()
    roots = store.query_calls(CallFilters(op_name="agent_cycle"), sort_direction="asc")
    children = store.query_calls(CallFilters(parent_ids=[r.id for r in roots]), sort_direction="asc")
    return roots, children


def test_a_cycle_transcript_is_traced_with_every_tool_call_and_turn(artifacts):
    transcript = Transcript()
    run_session(transcript)
    transcript.write(artifacts / "loop" / "cycle_3")
    (root,), children = agent_calls()
    assert root.display_name == "cycle 3: agent"
    assert root.attributes["kotone"] == {"cycle": 3, "group": "cycle_3", "role": "agent"}
    assert root.output["tool_calls"] == 2 and root.output["tool_errors"] == 1
    by_name = {c.display_name: c for c in children}
    assert by_name["get_cycle_history_tool"].status == "success"
    assert by_name["get_cycle_history_tool"].output == []  # the result as the agent saw it
    failed = by_name["read_loop_artifact_tool"]
    assert failed.status == "error" and "outside" in failed.exception
    assert failed.inputs["arguments"] == {"path": "../registry/champion.json"}
    turn = by_name["assistant"]
    assert turn.output == {"content": '{"focus_dims": ["warmth"]}'} and turn.inputs["model"] == "scripted"
    assert "tools/list" in by_name
    assert all(c.attributes["kotone"]["cycle"] == 3 for c in children)
    assert all(datetime.fromisoformat(c.started_at) <= datetime.fromisoformat(c.ended_at) for c in children)


def test_each_stretch_is_traced_once(artifacts):
    transcript = Transcript()
    run_session(transcript)
    folder = artifacts / "loop" / "cycle_4"
    transcript.write(folder)
    transcript.write(folder)  # nothing new: no second trace
    transcript.record_note(what="plan written")
    transcript.write(folder)
    roots, children = agent_calls()
    assert len(roots) == 2
    assert len(children) == len(transcript.events)


def test_a_transcript_written_outside_the_cycle_folders_is_not_traced(artifacts, tmp_path_factory):
    transcript = Transcript()
    transcript.record_note(what="scratch")
    transcript.write(tmp_path_factory.mktemp("elsewhere") / "cycle_5")
    assert agent_calls() == ([], [])
