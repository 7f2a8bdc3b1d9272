"""Issues 12.4 and 12.5: the server's teacher gets its key, a tool error carries its cause to the caller,
and a secret an upstream echoes back never lands in an artifact or a tool reply."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from agent_fixture_server import build_server as build_fixture_server
from fake_mistral_server import FakeMistralServer, completion, echoing_auth_error
from test_offline_entry_points import SMALL_CYCLE

from agent.mcp_client import McpEndpoint, child_environment, open_session
from agent.mistral_planner import MistralPlanner
from agent.planner import MistralPlannerConfig, PlanningContext
from loop.config import LoopConfig
from loop.state import RunLock
from tools.core.atomic import append_line, atomic_write_json, atomic_write_text
from tools.core.contracts import AugmentationSpec, CandidateSpec, CyclePlan
from tools.core.redaction import REDACTED, register_secret

MISTRAL_KEY = "mk-live-7f3a9c2e4b1d8f6a0c5e"
WANDB_KEY = "wk-0123456789abcdef0123456789abcdef"


def _plan(cycle: int) -> CyclePlan:
    candidate = CandidateSpec(
        name="probe",
        focus_dims=["energy"],
        augmentation=AugmentationSpec(teacher_pairs=4, replay_rows=0),
        reason="test",
    )
    return CyclePlan(cycle=cycle, candidates=[candidate], reasons={"search": "test"})


def _prepare_cycle(artifacts: Path, config: LoopConfig, cycle: int = 1) -> None:
    atomic_write_json(artifacts / "loop" / "config.json", config)
    atomic_write_json(artifacts / "loop" / f"cycle_{cycle}" / "plan.json", _plan(cycle))


def _stdio_endpoint(artifacts: Path, **extra: str) -> McpEndpoint:
    source = {
        "PATH": "/usr/bin:/bin",
        "KOTONE_ARTIFACTS": str(artifacts),
        "KOTONE_TRACKING": "offline",
        **extra,
    }
    return McpEndpoint.local_stdio(env=child_environment(source))


def _call(endpoint: McpEndpoint, name: str, arguments: dict) -> object:
    async def go() -> object:
        async with open_session(endpoint) as session:
            return await session.call_tool(name, arguments)

    return asyncio.run(go())


def _act(artifacts: Path, endpoint: McpEndpoint, name: str, arguments: dict) -> object:
    """An action tool called as the loop calls it: by the holder of the loop's lock, with its token."""
    with RunLock(artifacts / "loop" / ".lock") as lock:
        return _call(endpoint, name, {**arguments, "lock_token": lock.token})


def test_the_servers_teacher_gets_the_key_and_its_error_reaches_the_caller(tmp_path):
    """teacher=auto in the server means Mistral only if the key reached it; two malformed answers make
    the teacher give up, and the caller reads why (not just "Error executing tool ...")."""
    artifacts = tmp_path / "artifacts"
    with FakeMistralServer([completion(content="not json"), completion(content="still not json")]) as fake:
        _prepare_cycle(artifacts, LoopConfig(teacher="auto", mistral_server_url=fake.url))
        record = _act(
            artifacts,
            _stdio_endpoint(artifacts, MISTRAL_API_KEY=MISTRAL_KEY),
            "augment_training_data_tool",
            {"cycle": 1},
        )
    assert [r.headers.get("Authorization") for r in fake.requests] == [f"Bearer {MISTRAL_KEY}"] * 2
    assert record.is_error
    assert "TeacherError" in record.error and "malformed responses in a row" in record.error, record.error


def test_an_echoed_key_in_a_tool_error_is_redacted(tmp_path):
    artifacts = tmp_path / "artifacts"
    with FakeMistralServer([echoing_auth_error(401)]) as fake:
        _prepare_cycle(artifacts, LoopConfig(teacher="mistral", mistral_server_url=fake.url))
        record = _act(
            artifacts,
            _stdio_endpoint(artifacts, MISTRAL_API_KEY=MISTRAL_KEY),
            "augment_training_data_tool",
            {"cycle": 1},
        )
    assert record.is_error and "401" in record.error, record.error
    assert MISTRAL_KEY not in record.error and REDACTED in record.error


def test_every_artifact_writer_masks_known_secrets_and_bearer_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", MISTRAL_KEY)
    monkeypatch.setenv("WANDB_API_KEY", WANDB_KEY)
    monkeypatch.setenv("KOTONE_MCP_TOKEN", "kt-http-bearer-5551234")
    register_secret("generated-at-start-token-99")
    echoed = (
        f"401: Authorization: Bearer {MISTRAL_KEY}; wandb {WANDB_KEY}; mcp kt-http-bearer-5551234; "
        "other Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig; generated-at-start-token-99"
    )
    atomic_write_text(tmp_path / "a.md", echoed)
    atomic_write_json(tmp_path / "b.json", {"fallback_reason": echoed})
    atomic_write_json(tmp_path / "c.json", _plan(1).model_copy(update={"fallback_reason": echoed}))
    append_line(tmp_path / "d.jsonl", json.dumps({"description": echoed}))
    for path in tmp_path.iterdir():
        text = path.read_text()
        for secret in (MISTRAL_KEY, WANDB_KEY, "kt-http-bearer-5551234", "eyJhbGci", "generated-at-start"):
            assert secret not in text, (path.name, text)
        assert REDACTED in text
    assert "a bearer of good news" in _written(tmp_path, "a bearer of good news")


def _written(folder: Path, text: str) -> str:
    atomic_write_text(folder / "prose.txt", text)
    return (folder / "prose.txt").read_text()


def test_the_weave_trace_store_masks_a_key_in_inputs_outputs_and_exceptions(tmp_path, monkeypatch):
    """Traced agent steps (a fallback's reason, a failed call) pass through the local Weave store."""
    import datetime

    from tools.tracking.weave_sqlite import SqliteTraceServer

    monkeypatch.setenv("MISTRAL_API_KEY", MISTRAL_KEY)
    echoed = f"401: Authorization: Bearer {MISTRAL_KEY}"
    now = datetime.datetime.now(datetime.UTC)
    server = SqliteTraceServer(tmp_path / "traces.sqlite")
    start = {"project_id": "p/q", "id": "c1", "op_name": "planner_fallback", "started_at": now}
    server.call_start({"start": {**start, "inputs": {"reason": echoed}, "attributes": {"note": echoed}}})
    server.call_end(
        {"end": {"project_id": "p/q", "id": "c1", "ended_at": now, "output": echoed, "exception": echoed}}
    )
    server.close()
    stored = (tmp_path / "traces.sqlite").read_bytes()
    assert MISTRAL_KEY.encode() not in stored and REDACTED.encode() in stored


def test_the_planners_401_echo_never_reaches_plan_or_transcript_files(tmp_path, monkeypatch):
    """The loop process holds the key: the fallback reason it writes (plan.json, transcript) is masked."""
    from test_mistral_planner import fixture

    monkeypatch.setenv("MISTRAL_API_KEY", MISTRAL_KEY)
    with FakeMistralServer([echoing_auth_error(401)]) as fake:
        config = MistralPlannerConfig(server_url=fake.url, retry_wait_initial_s=0.01, retry_wait_max_s=0.02)

        async def go() -> tuple[CyclePlan, object]:
            async with open_session(build_fixture_server(fixture())) as session:
                plan = await MistralPlanner(config, api_key=MISTRAL_KEY).plan(session, 2, PlanningContext())
                return plan, session.transcript

        plan, transcript = asyncio.run(go())
    assert plan.fallback_reason and MISTRAL_KEY in fake.requests[0].headers["Authorization"]
    atomic_write_json(tmp_path / "plan.json", plan)
    transcript.write(tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 3
    for path in files:
        assert MISTRAL_KEY not in path.read_text(), path.name
    assert REDACTED in (tmp_path / "plan.json").read_text()


def test_read_loop_artifact_tool_masks_a_key_written_by_anyone(tmp_path):
    """A file some other program wrote with the key in it: the server (which holds the key) masks it."""
    artifacts = tmp_path / "artifacts"
    leaked = artifacts / "loop" / "cycle_1" / "notes.txt"
    leaked.parent.mkdir(parents=True)
    leaked.write_text(f"upstream said: Authorization: Bearer {MISTRAL_KEY}\n")
    record = _call(
        _stdio_endpoint(artifacts, MISTRAL_API_KEY=MISTRAL_KEY),
        "read_loop_artifact_tool",
        {"path": "cycle_1/notes.txt"},
    )
    assert not record.is_error, record.error
    assert MISTRAL_KEY not in json.dumps(record.result) and REDACTED in record.result["text"]


@pytest.fixture(autouse=True)
def _no_inherited_keys(monkeypatch):
    for name in ("MISTRAL_API_KEY", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
def test_a_whole_cycle_with_an_upstream_echoing_the_key_leaves_it_in_no_file(tmp_path, tiny_base_model):
    """The Mistral planner's server answers 401 quoting the Authorization header; the cycle goes on with
    the offline plan. Not one file under the artifacts (JSON, markdown, W&B record logs, the Weave store)
    holds the key, and no artifact read through the server shows it."""
    import os
    import subprocess
    import sys

    from tools.core.paths import PROJECT_ROOT, cache_dir

    artifacts = tmp_path / "artifacts"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KOTONE_", "MISTRAL_", "WANDB_"))}
    with FakeMistralServer([echoing_auth_error(401) for _ in range(4)]) as fake:
        env = {
            **base,
            "KOTONE_ARTIFACTS": str(artifacts),
            "KOTONE_CACHE": str(cache_dir()),
            "KOTONE_BASE_MODEL": str(tiny_base_model),
            "KOTONE_PLANNER": "mistral",
            "KOTONE_MISTRAL_SERVER_URL": fake.url,
            "KOTONE_TEACHER": "offline",
            "KOTONE_MAX_EVAL_ROWS": "16",
            "KOTONE_MAX_TRAIN_ROWS": "64",
            "KOTONE_STUDENT_OPTIONS": '{"layers_kept": 2, "lora_layers": 1, "epochs": 1}',
            "MISTRAL_API_KEY": MISTRAL_KEY,
            **SMALL_CYCLE,
        }
        result = subprocess.run(
            [sys.executable, "-m", "loop.run", "--cycles", "1"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert fake.requests and MISTRAL_KEY in fake.requests[0].headers["Authorization"]
    plan = json.loads((artifacts / "loop" / "cycle_1" / "plan.json").read_text())
    assert "401" in plan["fallback_reason"] and REDACTED in plan["fallback_reason"]
    files = [p for p in artifacts.rglob("*") if p.is_file()]
    holding = [str(p.relative_to(artifacts)) for p in files if MISTRAL_KEY.encode() in p.read_bytes()]
    assert holding == [] and len(files) > 20
    assert MISTRAL_KEY not in result.stdout + result.stderr

    loop = artifacts / "loop"
    # Every artifact the tool serves (per-row evaluation reports are the gate's and refused, see test_mcp_server).
    readable = [
        p
        for p in loop.rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl", ".md", ".tsv") and not p.name.startswith("eval_")
    ]

    async def read_all() -> list:
        async with open_session(_stdio_endpoint(artifacts, MISTRAL_API_KEY=MISTRAL_KEY)) as session:
            return [
                await session.call_tool("read_loop_artifact_tool", {"path": str(p.relative_to(loop))})
                for p in readable
            ]

    replies = asyncio.run(read_all())
    assert all(not r.is_error for r in replies)
    assert all(MISTRAL_KEY not in json.dumps(r.result) for r in replies)
