"""Issue 12.12: a Mistral server that accepts requests and never answers holds neither the planner nor
the teacher for long: per-request timeout and attempts are settings, and the planner's whole turn is
capped (default <= 120 s), after which the offline planner decides with the reason recorded."""

from __future__ import annotations

import asyncio
import time

import pytest
from agent_fixture_server import build_server
from fake_mistral_server import FakeMistralServer, never_answers
from test_mistral_planner import fixture

from agent.backends import PlannerConfig
from agent.mcp_client import open_session
from agent.mistral_planner import MistralPlanner
from agent.planner import MistralPlannerConfig, PlanningContext
from loop.config import LoopConfig
from tools.core.contracts import AugmentationSpec
from tools.data.dataset import load_dataset
from tools.data.teacher import MistralTeacher, TeacherError, make_teacher


def _plan_against(config: MistralPlannerConfig):
    async def go():
        async with open_session(build_server(fixture())) as session:
            return await MistralPlanner(config, api_key="test-key").plan(session, 2, PlanningContext())

    started = time.monotonic()
    plan = asyncio.run(go())
    return plan, time.monotonic() - started


def test_the_planner_gives_up_on_a_silent_server_after_its_timeout_and_attempts():
    with FakeMistralServer([never_answers(), never_answers()]) as fake:
        config = MistralPlannerConfig(
            server_url=fake.url,
            timeout_ms=400,
            max_attempts=2,
            retry_wait_initial_s=0.01,
            retry_wait_max_s=0.02,
        )
        plan, elapsed = _plan_against(config)
        assert len(fake.requests) == 2
    assert plan.fallback_reason and "chat.complete failed" in plan.fallback_reason
    assert elapsed < 10, elapsed


def test_the_planners_whole_turn_is_capped_whatever_the_request_timeout():
    with FakeMistralServer([never_answers()]) as fake:
        config = MistralPlannerConfig(server_url=fake.url, timeout_ms=600_000, max_total_s=1.5)
        plan, elapsed = _plan_against(config)
    assert plan.fallback_reason and "max_total_s=1.5" in plan.fallback_reason
    assert 1.5 <= elapsed < 10, elapsed


def test_the_teacher_gives_up_on_a_silent_server_with_a_clear_error():
    with FakeMistralServer([never_answers(), never_answers()]) as fake:
        teacher = MistralTeacher(
            train=load_dataset("shipped").train[:20],
            api_key="test-key",
            server_url=fake.url,
            timeout_ms=400,
            max_attempts=2,
            retry_wait_s=(0.01, 0.02),
        )
        started = time.monotonic()
        with pytest.raises(TeacherError, match="no usable answer after 2 attempts"):
            teacher.generate(AugmentationSpec(), ["energy"], 4, seed=0)
        assert time.monotonic() - started < 10 and len(fake.requests) == 2


def test_timeouts_and_attempts_are_loop_settings_read_by_planner_and_teacher(monkeypatch):
    assert MistralPlannerConfig().max_total_s <= 120
    assert LoopConfig().planner_max_total_s <= 120
    config = LoopConfig(
        planner="mistral",
        teacher="mistral",
        mistral_server_url="http://127.0.0.1:9",
        mistral_timeout_s=7.5,
        mistral_max_attempts=2,
        planner_max_total_s=30,
    )
    planner = PlannerConfig.from_loop(config)
    assert (planner.backend, planner.mistral.server_url) == ("mistral", "http://127.0.0.1:9")
    assert (planner.mistral.timeout_ms, planner.mistral.max_attempts, planner.mistral.max_total_s) == (
        7500,
        2,
        30,
    )
    monkeypatch.setenv("MISTRAL_API_KEY", "test-key")
    teacher = make_teacher(config, train=load_dataset("shipped").train[:5])
    assert (teacher.timeout_ms, teacher.max_attempts) == (7500, 2)
