"""The OpenAI-compatible planner and teacher against a scripted chat server on 127.0.0.1 (the stdlib fake
of `fake_mistral_server.py`: the chat-completions wire format is the same). The real transport runs:
httpx, tenacity retries on 429 / 5xx / transport errors, the time cap, the transcript, structured output,
and the fallback to the rule planner with the reason recorded."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from agent_fixture_server import build_server
from fake_mistral_server import FakeMistralServer, completion, echoing_auth_error, http_error, never_answers
from test_mistral_planner import answer, candidate, fixture, offline_plan

from agent.backends import PlannerConfig, make_planner
from agent.mcp_client import open_session
from agent.openai_planner import OpenAIPlanner, OpenAIPlannerConfig, plan_answer_schema
from agent.planner import PlanningContext
from agent.transcript import Transcript
from loop.config import LoopConfig
from tools.core.contracts import AugmentationSpec, CyclePlan
from tools.core.openai_chat import OpenAIChatClient, OpenAIStatusError
from tools.core.schema import TrainingRow
from tools.core.steering import OperatorNote
from tools.data.openai_teacher import OpenAITeacher
from tools.data.teacher import TeacherError, make_teacher

NOTE = OperatorNote(
    id=4, text="leave the learning rate alone", added_at="2026-12-07T20:00:00+00:00", added_by="ana"
)


def settings(server: FakeMistralServer, **overrides: Any) -> OpenAIPlannerConfig:
    return OpenAIPlannerConfig(
        base_url=server.url + "/v1",
        model="local-model",
        retry_wait_initial_s=0.01,
        retry_wait_max_s=0.02,
        **overrides,
    )


def run_planner(
    planner_settings: OpenAIPlannerConfig, api_key: str | None = None, notes: list[OperatorNote] = ()
) -> tuple[CyclePlan, Transcript]:
    async def go() -> tuple[CyclePlan, Transcript]:
        async with open_session(build_server(fixture())) as session:
            context = PlanningContext(operator_notes=list(notes))
            plan = await OpenAIPlanner(planner_settings, api_key=api_key).plan(session, 2, context)
            return plan, session.transcript

    return asyncio.run(go())


def test_tool_calls_then_a_plan_over_the_openai_wire_format():
    script = [
        completion(tool_calls=[("get_eval_snapshot_tool", {}), ("get_augmentation_capacity_tool", {})]),
        completion(content=answer()),
    ]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(settings(server), api_key="sk-local-test-key")
    assert plan.planner == "openai:local-model" and plan.fallback_reason is None
    assert [c.name for c in plan.candidates] == ["deeper", "lr-half"]
    assert all(check.passed for check in plan.evidence_checks)
    first, second = (request.body for request in server.requests)
    assert server.requests[0].path == "/v1/chat/completions"
    assert first["model"] == "local-model" and first["tool_choice"] == "auto"
    assert {tool["function"]["name"] for tool in first["tools"]} >= {"get_eval_snapshot_tool"}
    assert "response_format" not in first  # a server cannot constrain a tool-calling turn to a schema
    assert second["messages"][2]["tool_calls"][0]["function"]["name"] == "get_eval_snapshot_tool"
    assert second["messages"][3]["role"] == "tool"
    assert server.requests[0].headers["Authorization"] == "Bearer sk-local-test-key"
    assert len([e for e in transcript.events_of("model_message") if e.data["role"] == "assistant"]) == 2
    assert "sk-local-test-key" not in json.dumps([e.model_dump() for e in transcript.events])


def test_without_tools_the_evidence_is_in_the_prompt_and_the_answer_follows_the_plan_schema():
    reply = json.loads(answer(candidate()))
    reply["note_replies"] = [{"note_id": 4, "followed": True, "reason": "no candidate moves it"}]
    with FakeMistralServer([completion(content=json.dumps(reply))]) as server:
        plan, _ = run_planner(settings(server, use_tools=False), notes=[NOTE])
    (request,) = (r.body for r in server.requests)
    assert "tools" not in request and "Authorization" not in server.requests[0].headers
    assert request["response_format"]["type"] == "json_schema"
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema == plan_answer_schema(2, [4])
    assert schema["properties"]["candidates"]["maxItems"] == 2
    assert schema["properties"]["note_replies"]["items"]["properties"]["note_id"] == {"enum": [4]}
    prompt = request["messages"][1]["content"]
    assert "Weakest dims (choose the focus among these): complexity, energy, warmth" in prompt
    assert "note 4: leave the learning rate alone" in prompt and "Tools you may call" not in prompt
    assert plan.fallback_reason is None
    assert [(r.note_id, r.followed, r.note) for r in plan.note_replies] == [(4, True, NOTE.text)]


def test_a_plan_that_moves_what_a_note_fixed_fails_the_evidence_check():
    with FakeMistralServer([completion(content=answer())]) as server:  # its lr-half halves the learning rate
        plan, _ = run_planner(settings(server, use_tools=False), notes=[NOTE])
    check = next(c for c in plan.evidence_checks if c.name == "operator_notes")
    assert not check.passed and "lr-half moves learning_rate" in check.detail
    assert plan.planner == "offline" and "evidence check failed: operator_notes" in plan.fallback_reason
    assert "lr-half" not in {c.name for c in plan.candidates}  # the rule planner honours the note


def test_a_429_then_a_503_are_retried_and_recorded():
    script = [http_error(429, "slow down"), http_error(503), completion(content=answer())]
    with FakeMistralServer(script) as server:
        plan, transcript = run_planner(settings(server, use_tools=False))
    retries = transcript.events_of("retry")
    assert [e.data["attempt"] for e in retries] == [1, 2] and "HTTP 429" in retries[0].data["error"]
    assert plan.fallback_reason is None and len(server.requests) == 3


def test_persistent_5xx_falls_back_to_the_rule_planner_with_the_reason():
    with FakeMistralServer([http_error(502)] * 3) as server:
        plan, transcript = run_planner(settings(server, use_tools=False))
    assert len(server.requests) == 3 and "HTTP 502" in plan.fallback_reason
    assert plan.model_copy(update={"fallback_reason": None}) == offline_plan()
    assert transcript.events_of("fallback")[0].data["reason"] == plan.fallback_reason


def test_a_4xx_is_not_retried_and_an_echoed_key_never_reaches_the_record():
    with FakeMistralServer([echoing_auth_error(401)]) as server:
        plan, transcript = run_planner(settings(server, use_tools=False), api_key="sk-echoed-secret-123")
    assert len(server.requests) == 1 and "HTTP 401" in plan.fallback_reason
    assert "sk-echoed-secret-123" not in plan.fallback_reason
    assert "sk-echoed-secret-123" not in json.dumps([e.model_dump() for e in transcript.events])


def test_an_unreachable_server_is_retried_then_falls_back():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    planner_settings = OpenAIPlannerConfig(
        base_url=f"http://127.0.0.1:{port}/v1",
        retry_wait_initial_s=0.01,
        retry_wait_max_s=0.02,
        use_tools=False,
    )
    plan, transcript = run_planner(planner_settings)
    assert "ConnectError" in plan.fallback_reason and len(transcript.events_of("retry")) == 2


def test_a_server_that_never_answers_is_cut_by_the_time_cap():
    with FakeMistralServer([never_answers()] * 3) as server:
        plan, _ = run_planner(settings(server, use_tools=False, max_total_s=1.0, timeout_ms=30_000))
    assert "max_total_s=1 s" in plan.fallback_reason and len(server.requests) == 1


def test_the_client_raises_the_status_on_a_client_error():
    with FakeMistralServer([http_error(400, "bad schema")]) as server:
        client = OpenAIChatClient(server.url + "/v1", timeout_s=5, max_attempts=3, retry_wait_s=(0.01, 0.02))
        with pytest.raises(OpenAIStatusError, match="HTTP 400: bad schema") as raised:
            client.complete({"model": "m", "messages": []})
    assert raised.value.status_code == 400 and len(server.requests) == 1


def test_loop_settings_pick_the_openai_planner_and_teacher(monkeypatch):
    monkeypatch.setenv("MY_LOCAL_KEY", "sk-from-env-123")
    config = LoopConfig(
        planner="openai",
        teacher="openai",
        openai_base_url="http://127.0.0.1:8080/v1",
        openai_model="smollm2",
        openai_auth_env="MY_LOCAL_KEY",
        openai_tools=False,
        openai_timeout_s=7,
    )
    planner = make_planner(PlannerConfig.from_loop(config))
    assert isinstance(planner, OpenAIPlanner) and planner.name == "openai:smollm2"
    assert planner.config.use_tools is False and planner.config.timeout_ms == 7000
    assert planner._client.headers["Authorization"] == "Bearer sk-from-env-123"
    teacher = make_teacher(config, train=[ROW])
    assert (
        isinstance(teacher, OpenAITeacher)
        and teacher.client.url == "http://127.0.0.1:8080/v1/chat/completions"
    )


ROW = TrainingRow.model_validate(
    {
        "request_text": "a calm piano piece for the evening",
        "source_type": "request_text",
        "target": {
            "energy": 2,
            "warmth": 7,
            "brightness": 4,
            "acousticness": 9,
            "complexity": 3,
            "nostalgia": 6,
        },
    }
)


def teacher_for(server: FakeMistralServer) -> OpenAITeacher:
    return OpenAITeacher(
        train=[ROW], base_url=server.url + "/v1", model="local-model", retry_wait_s=(0.01, 0.02), batch_size=2
    )


def pairs(*texts: str, warmth: int = 9) -> str:
    base = {
        "energy": 3,
        "warmth": warmth,
        "brightness": 5,
        "acousticness": 5,
        "complexity": 4,
        "nostalgia": 2,
    }
    return json.dumps({"pairs": [{"request_text": text, **base} for text in texts]})


def test_the_teacher_asks_for_the_batch_schema_and_retries_a_503():
    script = [http_error(503), completion(content=pairs("a warm fireside tune", "a cosy hearth song"))]
    with FakeMistralServer(script) as server:
        teacher = teacher_for(server)
        rows = teacher.generate(AugmentationSpec(target_buckets={"warmth": [9]}), ["warmth"], 2, seed=1)
    assert [r.request_text for r in rows] == ["a warm fireside tune", "a cosy hearth song"]
    assert all(r.origin == "teacher:openai" and r.target.warmth == 9 for r in rows)
    assert teacher.stats.retries == 1 and teacher.stats.calls == 1 and teacher.stats.tokens_used == 120
    body = server.requests[-1].body
    assert body["response_format"]["json_schema"]["name"] == "teacher_batch"
    assert "pairs" in body["response_format"]["json_schema"]["schema"]["properties"]


def test_the_teacher_gives_up_after_malformed_answers_and_after_the_retries():
    malformed = [completion(content="not json"), completion(content='{"pairs": 3}')]
    with FakeMistralServer(malformed) as server, pytest.raises(TeacherError, match="2 malformed responses"):
        teacher_for(server).generate(AugmentationSpec(), ["warmth"], 2, seed=1)
    failing = FakeMistralServer([http_error(500)] * 3)
    with failing as server, pytest.raises(TeacherError, match="no usable answer after 3 attempts"):
        teacher_for(server).generate(AugmentationSpec(), ["warmth"], 2, seed=1)
    assert len(server.requests) == 3
