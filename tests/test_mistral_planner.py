"""The Mistral planner, driven through the real `mistralai` client against a scripted server on 127.0.0.1,
reading its evidence over a real (in-process) MCP session."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from agent_fixture_server import Fixture, build_server, cycle_entry, failure, metrics
from fake_mistral_server import FakeMistralServer, completion, http_error

from agent.backends import PlannerConfig, PlannerConfigError, make_planner
from agent.mcp_client import McpEndpoint, open_session
from agent.mistral_planner import MistralPlanner
from agent.offline_planner import OfflinePlanner
from agent.planner import MistralPlannerConfig, PlanningContext
from agent.transcript import Transcript
from tools.core.contracts import CyclePlan, EvalSnapshot, HParams
from tools.core.paths import PROJECT_ROOT

API_KEY = "test-dummy-key"
REJECTED = HParams(learning_rate=2e-4, lora_r=16, lora_alpha=32, epochs=1.0)


def fixture() -> Fixture:
    return Fixture(
        snapshot=EvalSnapshot(
            champion=None,
            base_metrics=metrics([1.0] * 6),
            champion_metrics=metrics([0.8, 0.8, 0.8, 0.8, 1.3, 0.8]),
            top_failures=[
                failure([5, 5, 5, 5, 10, 5], [5, 5, 5, 5, 5, 5]),
                failure([5, 5, 5, 5, 0, 5], [5] * 6),
            ],
            baselines={"train-median": metrics([1.0] * 6)},
        ),
        history=[cycle_entry(0, "baseline"), cycle_entry(1, "rejected", REJECTED, 0.9, 1.0)],
        run_histories={"run-1": [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.9}]},
    )


def plan_json(**overrides: Any) -> str:
    plan: dict[str, Any] = {
        "focus_dims": ["complexity"],
        "augmentation": {"new_pairs": 200, "replay_ratio": 0.2, "target_buckets": {"complexity": [0, 10]}},
        "hparams": {"learning_rate": 1e-4, "lora_r": 16, "lora_alpha": 32, "epochs": 1.0},
        "reasons": {
            "focus_dims": "complexity MAE 1.3 vs 0.8 elsewhere",
            "augmentation": "two extreme failures",
            "learning_rate": "cycle 1 at 2e-4 was worse: halve",
        },
    }
    plan.update(overrides)
    return json.dumps(plan)


def config(server_url: str, **overrides: Any) -> MistralPlannerConfig:
    return MistralPlannerConfig(
        server_url=server_url, retry_wait_initial_s=0.01, retry_wait_max_s=0.02, **overrides
    )


def run_planner(planner_config: MistralPlannerConfig, cycle: int = 2) -> tuple[CyclePlan, Transcript]:
    async def go() -> tuple[CyclePlan, Transcript]:
        async with open_session(build_server(fixture())) as session:
            plan = await MistralPlanner(planner_config, api_key=API_KEY).plan(
                session, cycle, PlanningContext()
            )
            return plan, session.transcript

    return asyncio.run(go())


def offline_plan(cycle: int = 2) -> CyclePlan:
    async def go() -> CyclePlan:
        async with open_session(build_server(fixture())) as session:
            return await OfflinePlanner().plan(session, cycle, PlanningContext())

    return asyncio.run(go())


def test_model_reads_evidence_through_tool_calls_then_returns_the_plan() -> None:
    script = [
        completion(tool_calls=[("get_eval_snapshot_tool", {"top_k": 5}), ("get_cycle_history_tool", {})]),
        completion(
            tool_calls=[
                ("get_run_history_tool", {"entity_name": "e", "project_name": "kotone", "run_id": "run-1"})
            ]
        ),
        completion(content="Here is the plan:\n```json\n" + plan_json() + "\n```"),
    ]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(config(server.url))

    assert plan.planner == "mistral:mistral-large-latest" and plan.fallback_reason is None
    assert plan.focus_dims == ["complexity"] and plan.hparams.learning_rate == 1e-4 and plan.cycle == 2
    first, second, third = (request.body for request in server.requests)
    assert server.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert first["model"] == "mistral-large-latest" and first["tool_choice"] == "auto"
    offered = {tool["function"]["name"]: tool["function"] for tool in first["tools"]}
    assert "start_training_tool" not in offered and "environment_names_tool" not in offered
    assert "count_failures_tool" in offered  # not a known name, but annotated read-only by the server
    assert offered["get_eval_snapshot_tool"]["parameters"]["properties"]["top_k"]["type"] == "integer"
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    snapshot_seen = json.loads(tool_messages[0]["content"])
    assert snapshot_seen["champion_metrics"]["per_dim_mae"]["complexity"] == 1.3
    assert [m["tool_call_id"] for m in tool_messages] == ["call0", "call1"]
    run_history_seen = json.loads([m for m in third["messages"] if m["role"] == "tool"][-1]["content"])
    assert run_history_seen == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.9}]
    called = [record.name for record in transcript.tool_calls]
    assert called[:3] == ["get_eval_snapshot_tool", "get_cycle_history_tool", "get_run_history_tool"]
    roles = [e.data["role"] for e in transcript.events_of("model_message")]
    assert roles[:2] == ["system", "user"] and roles.count("assistant") == 3 and roles.count("tool") == 3


def test_a_429_is_retried_and_the_retry_is_recorded() -> None:
    with FakeMistralServer([http_error(429, "rate limited"), completion(content=plan_json())]) as server:
        plan, transcript = run_planner(config(server.url))

    assert len(server.requests) == 2
    assert plan.fallback_reason is None and plan.planner.startswith("mistral:")
    (retry,) = transcript.events_of("retry")
    assert "429" in retry.data["error"]


def test_persistent_5xx_falls_back_to_the_offline_planner_with_the_reason() -> None:
    with FakeMistralServer([http_error(503)] * 3) as server:
        plan, transcript = run_planner(config(server.url, max_attempts=3))

    assert len(server.requests) == 3 and len(transcript.events_of("retry")) == 2
    assert plan.fallback_reason is not None and "503" in plan.fallback_reason
    assert plan.planner == "offline"
    assert plan.model_copy(update={"fallback_reason": None}) == offline_plan()
    assert transcript.events_of("fallback")[0].data["reason"] == plan.fallback_reason


def test_an_unreachable_server_is_retried_then_falls_back() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    plan, transcript = run_planner(config(f"http://127.0.0.1:{closed_port}", max_attempts=2))

    assert len(transcript.events_of("retry")) == 1
    assert plan.fallback_reason is not None and "ConnectError" in plan.fallback_reason


def test_malformed_json_is_reasked_once_then_falls_back() -> None:
    script = [
        completion(content="I think energy, lr 1e-4."),
        completion(content='{"focus_dims": ["loudness"]}'),
    ]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(config(server.url))

    assert len(server.requests) == 2
    reask = server.requests[1].body["messages"][-1]
    assert reask["role"] == "user" and "no JSON object" in reask["content"]
    assert server.requests[1].body["tool_choice"] == "none"
    assert len(transcript.events_of("reask")) == 1
    assert plan.fallback_reason is not None and "invalid plan after one re-ask" in plan.fallback_reason
    assert "focus_dims" in plan.fallback_reason
    assert plan.model_copy(update={"fallback_reason": None}) == offline_plan()


def test_an_invalid_plan_fixed_on_the_reask_is_used() -> None:
    script = [completion(content='{"focus_dims": []}'), completion(content=plan_json())]
    with FakeMistralServer(script) as server:
        plan, _ = run_planner(config(server.url))

    assert "focus_dims" in server.requests[1].body["messages"][-1]["content"]
    assert plan.fallback_reason is None and plan.focus_dims == ["complexity"]


def test_repeating_a_rejected_configuration_is_sent_back_to_the_model() -> None:
    repeat = plan_json(hparams=REJECTED.model_dump())
    with FakeMistralServer([completion(content=repeat), completion(content=plan_json())]) as server:
        plan, _ = run_planner(config(server.url))

    assert "rejected by the gate in cycle 1" in server.requests[1].body["messages"][-1]["content"]
    assert plan.hparams != REJECTED and plan.fallback_reason is None


def test_out_of_range_values_from_the_model_are_clipped_and_recorded() -> None:
    wild = plan_json(hparams={"learning_rate": 0.5, "lora_r": 48, "lora_alpha": 96, "epochs": 9})
    with FakeMistralServer([completion(content=wild)]) as server:
        plan, _ = run_planner(config(server.url))

    assert plan.hparams.lora_r == 32 and plan.hparams.learning_rate == 5e-3 and plan.hparams.epochs == 4
    assert "lora_r 48 -> 32 (allowed 4, 8, 16, 32, 64)" in plan.clipped
    assert any(line.startswith("learning_rate 0.5 -> 0.005") for line in plan.clipped)


def test_action_tools_are_refused_and_the_tool_call_budget_is_enforced() -> None:
    script = [
        completion(
            tool_calls=[
                ("start_training_tool", {"cycle": 2}),
                ("get_champion_tool", {}),
                ("get_champion_tool", {}),
            ]
        ),
        completion(content=plan_json()),
    ]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(config(server.url, max_tool_calls=1))

    tool_messages = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert "not available to the planner" in tool_messages[0]["content"]
    assert "budget spent" in tool_messages[2]["content"]
    assert [r.name for r in transcript.tool_calls].count("get_champion_tool") == 1
    assert "start_training_tool" not in [r.name for r in transcript.tool_calls]
    assert server.requests[1].body["tool_choice"] == "none"
    assert plan.fallback_reason is None


def test_spending_the_token_budget_on_tool_calls_falls_back() -> None:
    script = [completion(tool_calls=[("get_champion_tool", {})], prompt_tokens=5000)]
    with FakeMistralServer(script) as server:
        plan, _ = run_planner(config(server.url, max_total_tokens=1000))

    assert plan.fallback_reason is not None and "token budget" in plan.fallback_reason


def test_make_planner_picks_mistral_only_with_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    assert isinstance(make_planner(PlannerConfig()), OfflinePlanner)
    with pytest.raises(PlannerConfigError, match="MISTRAL_API_KEY"):
        make_planner(PlannerConfig(backend="mistral"))
    monkeypatch.setenv("MISTRAL_API_KEY", API_KEY)
    monkeypatch.setenv("MISTRAL_SERVER_URL", "http://127.0.0.1:9")
    planner = make_planner()
    assert isinstance(planner, MistralPlanner) and planner.config.server_url == "http://127.0.0.1:9"
    assert isinstance(make_planner(PlannerConfig(backend="offline")), OfflinePlanner)


@pytest.mark.skipif(
    not (PROJECT_ROOT / "tools" / "server.py").exists(),
    reason="tools/mcp/server.py (the project's MCP server) not there yet",
)
def test_against_the_real_server_only_read_only_tools_are_offered_and_the_transcript_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    script = [
        completion(tool_calls=[("get_eval_snapshot_tool", {"top_k": 3}), ("get_cycle_history_tool", {})]),
        completion(content=plan_json()),
    ]

    async def go() -> tuple[CyclePlan, tuple[Path, Path]]:
        async with open_session(McpEndpoint.local_stdio()) as session:
            plan = await MistralPlanner(config(server.url), api_key=API_KEY).plan(
                session, 1, PlanningContext()
            )
            return plan, session.transcript.write(tmp_path / "cycle_1")

    with FakeMistralServer(script) as server:
        plan, (snapshot_path, transcript_path) = asyncio.run(go())

    offered = {tool["function"]["name"] for tool in server.requests[0].body["tools"]}
    assert {"get_eval_snapshot_tool", "get_cycle_history_tool", "get_champion_tool"} <= offered
    assert not offered & {
        "augment_training_data_tool",
        "train_candidate_tool",
        "run_gate_tool",
        "write_decision_log_tool",
    }
    assert plan.fallback_reason is None and plan.focus_dims == ["complexity"]
    calls = json.loads(snapshot_path.read_text())["calls"]
    assert [call["name"] for call in calls][:2] == ["get_eval_snapshot_tool", "get_cycle_history_tool"]
    assert calls[0]["arguments"] == {"top_k": 3} and not calls[0]["is_error"]
    kinds = [json.loads(line)["kind"] for line in transcript_path.read_text().splitlines()]
    assert kinds.count("model_message") >= 5 and kinds.count("tool_call") == len(calls)
