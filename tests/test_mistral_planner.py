"""The Mistral planner, driven through the real `mistralai` client against a scripted server on 127.0.0.1,
reading its evidence over a real (in-process) MCP session. The model answers with K candidates as JSON;
the loop validates, clips and, when the model cannot give a usable plan, lets the offline planner decide."""

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
from loop.config import LoopConfig
from tools.core.atomic import atomic_write_json
from tools.core.contracts import (
    AugmentationSpec,
    CandidateSpec,
    Capacity,
    CyclePlan,
    EvalSnapshot,
    HParams,
    ModelRecord,
    StudentRecipe,
)

API_KEY = "test-dummy-key"
CAPACITY = Capacity(teacher="offline", max_teacher_pairs=300, max_replay_rows=50)
# Cycle 1 tried the default stack aimed at complexity; the gate rejected it.
JUDGED = CandidateSpec(
    name="stack",
    augmentation=AugmentationSpec(teacher_pairs=120, replay_rows=20, target_buckets={"complexity": [0, 10]}),
    focus_dims=["complexity"],
    seed=10,
    reason="the default stack",
)
CHAMPION = ModelRecord(
    cycle=0,
    candidate="tfidf-ridge",
    student_path="registry/cycle_0/tfidf-ridge/student",
    decoder="regression",
    base_model="bundled",
    recipe=StudentRecipe(family="baseline", baseline="tfidf-ridge"),
    metrics=metrics([0.8] * 6),
)


def fixture() -> Fixture:
    """A baseline champion whose CV error is worst on complexity, relative to the constant."""
    return Fixture(
        snapshot=EvalSnapshot(
            champion=CHAMPION,
            base_metrics=metrics([4.5] * 6),
            champion_metrics=metrics([0.8] * 6),
            top_failures=[
                failure([5, 5, 5, 5, 10, 5], [5, 5, 5, 5, 5, 5]),
                failure([5, 5, 5, 5, 0, 5], [5] * 6),
            ],
            champion_cv=metrics([0.8, 0.8, 0.8, 0.8, 1.3, 0.8]),
            baselines_cv={"train-median": metrics([1.0] * 6)},
        ),
        capacity=CAPACITY,
        champion=CHAMPION,
        history=[cycle_entry(0, "baseline"), cycle_entry(1, "rejected", [JUDGED], 0.8, 0.85)],
        run_histories={"run-1": [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.9}]},
    )


def candidate(name: str = "deeper", **overrides: Any) -> dict[str, Any]:
    """One candidate as the model writes it: a move off the judged stack (two more layers kept)."""
    spec: dict[str, Any] = {
        "name": name,
        "student": {"family": "stack", "options": {"layers_kept": 6, "lora_layers": 3}},
        "hparams": HParams().model_dump(),
        "augmentation": {"teacher_pairs": 120, "replay_rows": 20, "target_buckets": {"complexity": [0, 10]}},
        "focus_dims": ["complexity"],
        "reason": "cycle 1's stack was close: give its LM more layers",
    }
    spec.update(overrides)
    return spec


def answer(*candidates: dict[str, Any], **extra: Any) -> str:
    reasons = {
        "focus_dims": "complexity: CV MAE 1.3 vs the constant's 1.0",
        "augmentation": "two extreme failures on complexity",
        "search": "cycle 1's stack was rejected: move its depth and its learning rate",
    }
    chosen = list(candidates) or [candidate(), candidate("lr-half", hparams={"learning_rate": 1e-4})]
    return json.dumps({"candidates": chosen, "reasons": reasons, **extra})


def config(server_url: str, **overrides: Any) -> MistralPlannerConfig:
    return MistralPlannerConfig(
        server_url=server_url, retry_wait_initial_s=0.01, retry_wait_max_s=0.02, **overrides
    )


def run_planner(
    planner_config: MistralPlannerConfig, cycle: int = 2, evidence: Fixture | None = None
) -> tuple[CyclePlan, Transcript]:
    async def go() -> tuple[CyclePlan, Transcript]:
        async with open_session(build_server(evidence or fixture())) as session:
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


def reask_text(server: FakeMistralServer) -> str:
    """What the loop told the model when it sent the plan back (the last message of the second request)."""
    message = server.requests[1].body["messages"][-1]
    assert message["role"] == "user" and server.requests[1].body["tool_choice"] == "none"
    return message["content"]


def test_model_reads_evidence_through_tool_calls_then_answers_with_k_candidates() -> None:
    script = [
        completion(tool_calls=[("get_eval_snapshot_tool", {"top_k": 5}), ("get_cycle_history_tool", {})]),
        completion(
            tool_calls=[
                ("get_run_history_tool", {"entity_name": "e", "project_name": "kotone", "run_id": "run-1"})
            ]
        ),
        # Fields the loop owns (cycle, planner, seeds) are overwritten, whatever the model writes.
        completion(
            content="Here is the plan:\n```json\n"
            + answer(
                candidate(seed=7),
                candidate("lr-half", hparams={"learning_rate": 1e-4}),
                cycle=99,
                planner="me",
            )
            + "\n```"
        ),
    ]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(config(server.url))

    assert plan.planner == "mistral:mistral-large-latest" and plan.fallback_reason is None and plan.cycle == 2
    assert plan.evidence_checks and all(check.passed for check in plan.evidence_checks)
    assert [spec.name for spec in plan.candidates] == ["deeper", "lr-half"]
    assert [spec.seed for spec in plan.candidates] == [20, 21]
    assert plan.candidate("lr-half").hparams.learning_rate == 1e-4 and plan.focus_dims == ["complexity"]
    assert plan.reasons["search"].startswith("cycle 1's stack was rejected")

    first, second, third = (request.body for request in server.requests)
    assert server.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"
    assert first["model"] == "mistral-large-latest" and first["tool_choice"] == "auto"
    offered = {tool["function"]["name"]: tool["function"] for tool in first["tools"]}
    assert "start_training_tool" not in offered and "environment_names_tool" not in offered
    assert {"get_augmentation_capacity_tool", "get_champion_tool"} <= set(offered)
    assert "count_failures_tool" in offered  # not a known name, but annotated read-only by the server
    assert offered["get_eval_snapshot_tool"]["parameters"]["properties"]["top_k"]["type"] == "integer"
    system, user = first["messages"][:2]
    assert "teacher_pairs: 0 .. 300 (teacher: offline)" in system["content"]
    assert "propose at most 2 candidates" in user["content"]
    assert f"{JUDGED.recipe_key()}: {JUDGED.describe()} -> rejected" in user["content"]
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    snapshot_seen = json.loads(tool_messages[0]["content"])
    assert snapshot_seen["champion_cv"]["per_dim_mae"]["complexity"] == 1.3
    assert [m["tool_call_id"] for m in tool_messages] == ["call0", "call1"]
    run_history_seen = json.loads([m for m in third["messages"] if m["role"] == "tool"][-1]["content"])
    assert run_history_seen == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.9}]

    # The evidence the answer is validated against is read first, then the model's own calls.
    assert [record.name for record in transcript.tool_calls] == [
        "get_eval_snapshot_tool",
        "get_cycle_history_tool",
        "get_champion_tool",
        "get_augmentation_capacity_tool",
        "get_eval_snapshot_tool",
        "get_cycle_history_tool",
        "get_run_history_tool",
    ]
    roles = [e.data["role"] for e in transcript.events_of("model_message")]
    assert roles[:2] == ["system", "user"] and roles.count("assistant") == 3 and roles.count("tool") == 3


def test_a_429_is_retried_and_the_retry_is_recorded() -> None:
    with FakeMistralServer([http_error(429, "rate limited"), completion(content=answer())]) as server:
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
    assert plan.planner == "offline"


def test_malformed_json_is_reasked_once_then_falls_back() -> None:
    script = [
        completion(content="I would try a deeper stack on complexity."),
        completion(content='{"candidates": [], "reasons": {"search": "none"}}'),
    ]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(config(server.url))

    assert len(server.requests) == 2
    assert "no JSON object" in reask_text(server)
    assert len(transcript.events_of("reask")) == 1
    assert plan.fallback_reason is not None and "invalid plan after one re-ask" in plan.fallback_reason
    assert "candidates" in plan.fallback_reason
    assert plan.model_copy(update={"fallback_reason": None}) == offline_plan()


def test_an_invalid_plan_fixed_on_the_reask_is_used() -> None:
    unnamed = candidate(name="Deeper Stack")
    script = [completion(content=answer(unnamed)), completion(content=answer())]
    with FakeMistralServer(script) as server:
        plan, _ = run_planner(config(server.url))

    assert "candidates.0.name" in reask_text(server)
    assert plan.fallback_reason is None and [spec.name for spec in plan.candidates] == ["deeper", "lr-half"]


def test_an_answer_repeating_a_judged_recipe_is_sent_back_with_the_reason_whatever_its_seed() -> None:
    repeat = JUDGED.model_dump(mode="json", exclude={"seed"}) | {"name": "again", "seed": 77}
    with FakeMistralServer([completion(content=answer(repeat)), completion(content=answer())]) as server:
        plan, _ = run_planner(config(server.url))

    reason = reask_text(server)
    assert f"candidate again repeats a recipe the history already judged ({JUDGED.recipe_key()})" in reason
    assert JUDGED.recipe_key() not in [spec.recipe_key() for spec in plan.candidates]
    assert plan.fallback_reason is None


def test_the_baseline_champions_own_recipe_is_sent_back() -> None:
    itself = candidate("ridge", student={"family": "baseline", "baseline": "tfidf-ridge", "folds": 5})
    with FakeMistralServer([completion(content=answer(itself)), completion(content=answer())]) as server:
        plan, _ = run_planner(config(server.url))

    assert "candidate ridge is the champion's own recipe (baseline tfidf-ridge)" in reask_text(server)
    assert plan.fallback_reason is None


def test_a_trained_champions_recipe_is_judged_but_a_move_of_its_augmentation_alone_is_new() -> None:
    """The offline planner's `no-teacher` lever keeps the champion's student and hparams: a model proposing
    the same move must pass too, while the champion's exact recipe (its promoted history line) does not."""
    evidence = fixture()
    champion = CHAMPION.model_copy(
        update={"cycle": 1, "candidate": "stack", "recipe": JUDGED.student, "hparams": JUDGED.hparams}
    )
    promoted = cycle_entry(1, "promoted", [JUDGED], 0.8, 0.75)
    evidence = evidence.model_copy(update={"champion": champion, "history": [evidence.history[0], promoted]})
    exact = JUDGED.model_dump(mode="json") | {"name": "same"}
    data_move = exact | {"name": "no-teacher", "augmentation": exact["augmentation"] | {"teacher_pairs": 0}}
    script = [completion(content=answer(exact)), completion(content=answer(data_move))]
    with FakeMistralServer(script) as server:
        plan, _ = run_planner(config(server.url), evidence=evidence)

    assert "candidate same repeats a recipe the history already judged" in reask_text(server)
    (spec,) = plan.candidates
    assert plan.fallback_reason is None and spec.name == "no-teacher"
    assert (spec.student, spec.hparams, spec.augmentation.teacher_pairs) == (
        JUDGED.student,
        JUDGED.hparams,
        0,
    )


def test_more_than_k_candidates_are_sent_back() -> None:
    three = answer(
        candidate("a"), candidate("b", hparams={"epochs": 2.0}), candidate("c", student={"folds": 5})
    )
    with FakeMistralServer([completion(content=three), completion(content=answer())]) as server:
        plan, _ = run_planner(config(server.url))

    assert "propose at most 2 candidates, got 3" in reask_text(server)
    assert len(plan.candidates) == 2 and plan.fallback_reason is None


def test_two_candidates_with_the_same_recipe_are_sent_back() -> None:
    twins = answer(candidate("a"), candidate("b", reason="the same, said differently"))
    with FakeMistralServer([completion(content=twins), completion(content=answer())]) as server:
        plan, _ = run_planner(config(server.url))

    assert "two candidates have the same recipe" in reask_text(server)
    assert plan.fallback_reason is None


def test_out_of_range_values_fail_the_evidence_check_and_the_rule_planner_decides() -> None:
    """Issue 20.5: a plan the guardrails had to clip asked for something the evidence does not allow; it
    does not run, and the decision log's record names the checks that failed."""
    wild = candidate(
        hparams={"learning_rate": 0.5, "lora_r": 48, "lora_alpha": 96, "epochs": 9},
        augmentation={
            "teacher_pairs": 5000,
            "replay_rows": 999,
            "target_buckets": {"complexity": [0, 10, 12]},
        },
    )
    with FakeMistralServer([completion(content=answer(wild))]) as server:
        plan, transcript = run_planner(config(server.url))

    assert plan.model_copy(update={"fallback_reason": None, "evidence_checks": []}) == offline_plan()
    checks = {c.name: c for c in plan.evidence_checks}
    assert not checks["hparams_in_bounds"].passed and not checks["augmentation_within_capacity"].passed
    assert (
        "candidate deeper: lora_r 48 -> 32 (allowed 4, 8, 16, 32, 64)" in checks["hparams_in_bounds"].detail
    )
    assert "learning_rate 0.5 -> 0.005" in checks["hparams_in_bounds"].detail
    assert "teacher_pairs 5000 -> 300 (allowed 0 .. 300)" in checks["augmentation_within_capacity"].detail
    assert checks["focus_in_weak_dims"].passed and checks["recipe_not_judged"].passed
    assert "evidence check failed: hparams_in_bounds" in plan.fallback_reason
    assert "augmentation_within_capacity" in plan.fallback_reason and len(server.requests) == 1
    rejected = [
        e for e in transcript.events_of("note") if e.data.get("what") == "plan rejected by the evidence check"
    ]
    assert rejected and rejected[0].data["plan"]["candidates"][0]["name"] == "deeper"


def test_a_focus_outside_the_weak_dims_fails_the_evidence_check() -> None:
    """The fixture's diagnosis ranks complexity first (CV 1.3 vs the constant's 1.0), the rest tie at 0.8:
    the weak dims are complexity, energy, warmth; a plan aimed at nostalgia is not backed by the evidence."""
    off = candidate(
        augmentation={"teacher_pairs": 120, "replay_rows": 20, "target_buckets": {}}, focus_dims=["nostalgia"]
    )
    with FakeMistralServer([completion(content=answer(off))]) as server:
        plan, _ = run_planner(config(server.url))
    check = next(c for c in plan.evidence_checks if c.name == "focus_in_weak_dims")
    assert not check.passed and "weak dims complexity, energy, warmth" in check.detail
    assert "not weak: nostalgia" in check.detail and plan.planner == "offline"
    assert "evidence check failed: focus_in_weak_dims" in plan.fallback_reason


def test_action_tools_are_refused_and_the_tool_call_budget_is_enforced() -> None:
    script = [
        completion(
            tool_calls=[
                ("start_training_tool", {"cycle": 2}),
                ("get_champion_tool", {}),
                ("get_champion_tool", {}),
            ]
        ),
        completion(content=answer()),
    ]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(config(server.url, max_tool_calls=1))

    tool_messages = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert "not available to the planner" in tool_messages[0]["content"]
    assert "budget spent" in tool_messages[2]["content"]
    called = [r.name for r in transcript.tool_calls]
    assert called.count("get_champion_tool") == 2  # once for the evidence, once for the model
    assert "start_training_tool" not in called
    assert server.requests[1].body["tool_choice"] == "none"
    assert plan.fallback_reason is None


def test_spending_the_token_budget_on_tool_calls_falls_back() -> None:
    script = [completion(tool_calls=[("get_champion_tool", {})], prompt_tokens=5000)]
    with FakeMistralServer(script) as server:
        plan, _ = run_planner(config(server.url, max_total_tokens=1000))

    assert len(server.requests) == 1
    assert plan.fallback_reason is not None and "token budget" in plan.fallback_reason


def test_an_invalid_answer_that_spends_the_token_budget_is_not_reasked() -> None:
    script = [completion(content="no plan today", prompt_tokens=5000)]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(config(server.url, max_total_tokens=1000))

    assert len(server.requests) == 1 and not transcript.events_of("reask")
    assert plan.fallback_reason is not None and "token budget is spent" in plan.fallback_reason


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


def test_against_the_real_server_only_read_only_tools_are_offered_and_the_transcript_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(artifacts))
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    # The capacity tool reads the settings the run saved: the shipped data, replay only.
    atomic_write_json(artifacts / "loop" / "config.json", LoopConfig(teacher="none"))
    script = [
        completion(tool_calls=[("get_eval_snapshot_tool", {"top_k": 3}), ("get_cycle_history_tool", {})]),
        completion(
            content=answer(
                candidate(augmentation={"teacher_pairs": 60, "replay_rows": 0, "target_buckets": {}})
            )
        ),
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
    assert {
        "get_eval_snapshot_tool",
        "get_cycle_history_tool",
        "get_champion_tool",
        "get_augmentation_capacity_tool",
    } <= offered
    assert not offered & {
        "bootstrap_champion_tool",
        "augment_training_data_tool",
        "train_candidates_tool",
        "evaluate_candidates_tool",
        "run_gate_tool",
        "confirm_winner_tool",
        "write_decision_log_tool",
    }
    # 60 teacher pairs where the capacity tool says there is no teacher: the plan does not run
    assert "candidate deeper: teacher_pairs 60 -> 0 (allowed 0 .. 0)" in plan.evidence_checks[3].detail
    assert (
        plan.planner == "offline"
        and "evidence check failed: augmentation_within_capacity" in plan.fallback_reason
    )
    calls = json.loads(snapshot_path.read_text())["calls"]
    capacity_call = next(call for call in calls if call["name"] == "get_augmentation_capacity_tool")
    assert capacity_call["result"]["teacher"] == "none" and capacity_call["result"]["max_teacher_pairs"] == 0
    model_calls = calls[-2:]
    assert [call["name"] for call in model_calls] == ["get_eval_snapshot_tool", "get_cycle_history_tool"]
    assert model_calls[0]["arguments"] == {"top_k": 3} and not model_calls[0]["is_error"]
    kinds = [json.loads(line)["kind"] for line in transcript_path.read_text().splitlines()]
    assert kinds.count("model_message") >= 5 and kinds.count("tool_call") == len(calls)
