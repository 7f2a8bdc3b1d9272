"""Issue 12.1: the loop's action tools act only for the run holding the loop's lock, a finished cycle is
immutable, cycle 0 is made once, and every tool says truthfully what it does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from loop.config import LoopConfig
from loop.server.assemble import build_server
from loop.stages.progress import CycleState
from loop.state import RunLock
from tools.core.atomic import atomic_write_json, atomic_write_text

ACTIONS = [
    "diagnose_failures_tool",
    "augment_training_data_tool",
    "train_candidates_tool",
    "evaluate_candidates_tool",
    "run_gate_tool",
    "confirm_winner_tool",
    "request_approval_tool",
    "write_decision_log_tool",
]


def _call(name: str, arguments: dict[str, Any]) -> Any:
    async def go() -> Any:
        async with Client(build_server()) as client:
            return await client.call_tool(name, arguments)

    return asyncio.run(go())


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    atomic_write_json(tmp_path / "loop" / "config.json", LoopConfig())
    return tmp_path


@pytest.mark.parametrize("tool", ACTIONS)
def test_without_the_lock_token_every_action_is_refused_and_nothing_is_written(artifacts, tool):
    before = sorted(p.relative_to(artifacts) for p in artifacts.rglob("*"))
    with RunLock(artifacts / "loop" / ".lock"):
        for token in ("guessed", "x" * 32):
            result = _call(tool, {"cycle": 1, "lock_token": token})
            assert result.is_error and "refused" in result.content[0].text
    assert sorted(p.relative_to(artifacts) for p in artifacts.rglob("*")) == before


def test_no_token_is_valid_when_no_run_holds_the_lock(artifacts):
    with RunLock(artifacts / "loop" / ".lock") as lock:
        token = lock.token
    result = _call("run_gate_tool", {"cycle": 1, "lock_token": token})
    assert result.is_error and "refused" in result.content[0].text


def test_a_finished_cycle_is_immutable_even_for_the_lock_holder(artifacts):
    cycle = artifacts / "loop" / "cycle_1"
    state = CycleState(cycle=1, started_at="2026-11-30T00:00:00+00:00")
    state.mark_done("log", cycle)
    assert CycleState.load_or_new(cycle, 1).finished_at
    with RunLock(artifacts / "loop" / ".lock") as lock:
        for tool in ACTIONS:
            result = _call(tool, {"cycle": 1, "lock_token": lock.token})
            assert result.is_error and "immutable" in result.content[0].text, tool


def test_cycle_zero_is_made_once(artifacts):
    atomic_write_text(artifacts / "registry" / "champion.json", "{}")
    with RunLock(artifacts / "loop" / ".lock") as lock:
        result = _call("bootstrap_champion_tool", {"lock_token": lock.token})
    assert result.is_error and "already is a champion" in result.content[0].text


def test_annotations_say_which_tools_change_things():
    async def go() -> list[Any]:
        async with Client(build_server()) as client:
            return (await client.list_tools()).tools

    tools = asyncio.run(go())
    annotations = {tool.name: tool.annotations for tool in tools}
    required = {tool.name: set(tool.input_schema.get("required", [])) for tool in tools}
    for name in ACTIONS + ["bootstrap_champion_tool"]:
        assert annotations[name].read_only_hint is False, name
        assert "lock_token" in required[name], name
    assert annotations["write_decision_log_tool"].destructive_hint is True
    assert annotations["bootstrap_champion_tool"].destructive_hint is True
    assert annotations["bootstrap_champion_tool"].idempotent_hint is False
    for name in (
        "get_eval_snapshot_tool",
        "get_augmentation_capacity_tool",
        "get_learnability_tool",
        "predict_tool",
    ):
        assert annotations[name].read_only_hint is True, name


@pytest.mark.parametrize(
    "tool",
    [
        "get_learnability_tool",
        "get_augmentation_capacity_tool",
        "get_champion_tool",
        "get_cycle_history_tool",
    ],
)
def test_a_read_only_tool_writes_nothing(artifacts, tool):
    """Annotated read-only means it: no cache file, no folder, not even on a first call."""
    before = sorted(p.relative_to(artifacts) for p in artifacts.rglob("*"))
    result = _call(tool, {})
    assert not result.is_error, result.content
    assert sorted(p.relative_to(artifacts) for p in artifacts.rglob("*")) == before
