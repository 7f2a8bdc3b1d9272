"""The MCP client: one config for every endpoint, real sessions (in-process, stdio, streamable HTTP),
and a record of every tools/call written atomically into the cycle folder."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_fixture_server import Fixture, build_server, cycle_entry, failure, metrics
from tracking_support import offline_tracking

from agent.mcp_client import (
    McpConfigError,
    McpEndpoint,
    ToolCallFailed,
    ToolSession,
    child_environment,
    endpoint_from_env,
    open_session,
)
from agent.offline_planner import OfflinePlanner
from agent.planner import PlanningContext
from agent.transcript import SNAPSHOT_FILE, TRANSCRIPT_FILE, digest
from tools.core.atomic import atomic_write_json
from tools.core.contracts import CandidateSpec, EvalSnapshot, ModelRecord, StudentRecipe
from tools.core.paths import PROJECT_ROOT
from tools.core.schema import ParamVector, Prediction, TrainingRow
from tools.evaluation.metrics import EvalReport, build_report, score_row

FIXTURE_SERVER = Path(__file__).with_name("agent_fixture_server.py")
REJECTED = CandidateSpec(name="stack", focus_dims=["nostalgia"], reason="the default stack")


def fixture() -> Fixture:
    return Fixture(
        snapshot=EvalSnapshot(
            champion=None,
            base_metrics=metrics([1.0] * 6),
            champion_metrics=metrics([0.7, 0.8, 0.9, 1.0, 1.1, 1.2]),
            top_failures=[failure([0, 5, 5, 5, 5, 10], [5] * 6, text="a quiet lullaby")],
        ),
        history=[cycle_entry(0, "baseline"), cycle_entry(1, "rejected", [REJECTED], 0.9, 1.0)],
        run_histories={"run-1": [{"step": 1, "loss": 2.5}]},
    )


def in_process(body: Any) -> Any:
    async def go() -> Any:
        async with open_session(build_server(fixture())) as session:
            return await body(session)

    return asyncio.run(go())


def test_listing_shows_every_tool_with_its_json_input_schema() -> None:
    async def body(session: ToolSession) -> Any:
        return {spec.name: spec for spec in await session.list_tools()}

    specs = in_process(body)
    assert {
        "get_eval_snapshot_tool",
        "get_cycle_history_tool",
        "get_champion_tool",
        "get_run_history_tool",
    } <= set(specs)
    run_history = specs["get_run_history_tool"].input_schema
    assert set(run_history["required"]) == {"entity_name", "project_name", "run_id"}
    assert specs["get_eval_snapshot_tool"].accepts("top_k") and not specs["get_champion_tool"].accepts(
        "top_k"
    )


def test_every_call_is_recorded_with_arguments_result_and_latency() -> None:
    async def body(session: ToolSession) -> Any:
        records = [
            await session.call_tool("get_eval_snapshot_tool", {"top_k": 1}),
            await session.call_tool("get_cycle_history_tool", {}),
            await session.call_tool("get_champion_tool"),
        ]
        return records, session.transcript

    (snapshot, history, champion), transcript = in_process(body)
    assert EvalSnapshot.model_validate(snapshot.result) == fixture().snapshot
    assert snapshot.arguments == {"top_k": 1} and snapshot.latency_ms > 0 and not snapshot.is_error
    assert [entry["status"] for entry in history.result] == ["baseline", "rejected"]
    assert champion.result is None and champion.arguments == {}
    assert transcript.tool_calls == [snapshot, history, champion]
    assert snapshot.endpoint == "in-process:kotone-agent-fixture"


def test_json_string_results_of_wandb_style_tools_are_parsed_and_their_errors_flagged() -> None:
    coordinates = {"entity_name": "e", "project_name": "kotone"}

    async def body(session: ToolSession) -> Any:
        found = await session.call_tool("get_run_history_tool", {**coordinates, "run_id": "run-1"})
        missing = await session.call_tool("get_run_history_tool", {**coordinates, "run_id": "nope"})
        return found, missing

    found, missing = in_process(body)
    assert found.result == [{"step": 1, "loss": 2.5}] and not found.is_error
    assert missing.is_error and missing.error == "run nope not found in e/kotone"


def test_tool_failures_come_back_as_error_records_and_call_json_raises() -> None:
    async def body(session: ToolSession) -> Any:
        bad_arguments = await session.call_tool("get_run_history_tool", {"run_id": 3})
        unknown = await session.call_tool("no_such_tool", {})
        with pytest.raises(ToolCallFailed, match="Unknown tool"):
            await session.call_json("no_such_tool")
        return bad_arguments, unknown, len(session.transcript.tool_calls)

    bad_arguments, unknown, n_recorded = in_process(body)
    assert bad_arguments.is_error and "entity_name" in bad_arguments.error
    assert unknown.is_error and "Unknown tool: no_such_tool" in unknown.error
    assert n_recorded == 3


def test_the_transcript_lands_in_the_cycle_folder_with_every_call(tmp_path: Path) -> None:
    async def body(session: ToolSession) -> Any:
        await OfflinePlanner().plan(session, 2, PlanningContext())
        session.transcript.record_fallback("example fallback")
        return session.transcript.write(tmp_path / "cycle_2")

    snapshot_path, transcript_path = in_process(body)
    assert (snapshot_path.name, transcript_path.name) == (SNAPSHOT_FILE, TRANSCRIPT_FILE)
    saved = json.loads(snapshot_path.read_text())
    assert [call["name"] for call in saved["calls"]] == [
        "get_eval_snapshot_tool",
        "get_cycle_history_tool",
        "get_champion_tool",
        "get_augmentation_capacity_tool",
    ]
    assert saved["calls"][0]["result"]["champion_metrics"]["per_dim_mae"]["nostalgia"] == 1.2
    assert "get_run_history_tool" in saved["listed_tools"]["in-process:kotone-agent-fixture"]
    events = [json.loads(line) for line in transcript_path.read_text().splitlines()]
    tool_events = [e for e in events if e["kind"] == "tool_call"]
    assert [e["data"]["result_digest"] for e in tool_events] == [digest(c["result"]) for c in saved["calls"]]
    assert events[-1]["kind"] == "fallback" and events[-1]["data"]["reason"] == "example fallback"
    assert sorted(p.name for p in (tmp_path / "cycle_2").iterdir()) == [TRANSCRIPT_FILE, SNAPSHOT_FILE]


SECRETS = {"MISTRAL_API_KEY": "m-secret", "WANDB_API_KEY": "w-secret", "HF_TOKEN": "h-secret"}


def test_the_stdio_child_gets_paths_settings_and_the_teacher_key_but_no_unneeded_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**SECRETS, "WANDB_PROJECT": "kotone", "KOTONE_ARTIFACTS": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    fixture_file = tmp_path / "fixture.json"
    fixture_file.write_text(fixture().model_dump_json())
    endpoint = McpEndpoint(command=sys.executable, args=[str(FIXTURE_SERVER), str(fixture_file)])

    async def go() -> Any:
        async with open_session(endpoint) as session:
            names = await session.call_json("environment_names_tool")
            snapshot = await session.call_json("get_eval_snapshot_tool")
            return names, snapshot

    names, snapshot = asyncio.run(go())
    assert {"KOTONE_ARTIFACTS", "PYTHONPATH", "WANDB_PROJECT", "WANDB_MODE", "PATH"} <= set(names)
    assert "MISTRAL_API_KEY" in names  # the augment tool's teacher needs it
    assert not {"WANDB_API_KEY", "HF_TOKEN"} & set(names)
    assert endpoint.env["KOTONE_ARTIFACTS"] == str(tmp_path) and endpoint.env["WANDB_MODE"] == "offline"
    assert EvalSnapshot.model_validate(snapshot) == fixture().snapshot
    assert "env" not in endpoint.model_dump()


def test_the_wandb_key_reaches_the_child_only_in_online_mode() -> None:
    offline = child_environment({**SECRETS, "PATH": "/bin"})
    online = child_environment({**SECRETS, "PATH": "/bin", "WANDB_MODE": "online"})
    online_by_kotone = child_environment({**SECRETS, "PATH": "/bin", "KOTONE_TRACKING": "online"})
    assert "WANDB_API_KEY" not in offline and online["WANDB_API_KEY"] == "w-secret"
    assert online_by_kotone["WANDB_API_KEY"] == "w-secret"
    assert "HF_TOKEN" not in set(offline) | set(online)
    assert offline["PYTHONPATH"].split(":")[0] == str(PROJECT_ROOT)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def fixture_http_server(tmp_path: Path) -> Iterator[int]:
    fixture_file = tmp_path / "fixture.json"
    fixture_file.write_text(fixture().model_dump_json())
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(FIXTURE_SERVER), str(fixture_file), "--http", str(port)],
        env=child_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_streamable_http_endpoint_sends_the_bearer_token_from_the_named_env_var(
    fixture_http_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOTONE_TEST_MCP_TOKEN", "token-123")
    endpoint = McpEndpoint.local_http(fixture_http_server).model_copy(
        update={"bearer_token_env": "KOTONE_TEST_MCP_TOKEN"}
    )

    async def go() -> Any:
        async with open_session(endpoint) as session:
            return await session.call_json("authorization_header_tool"), await session.call_json(
                "get_cycle_history_tool", {"limit": 1}
            )

    authorization, history = asyncio.run(go())
    assert authorization == "Bearer token-123"
    assert [entry["cycle"] for entry in history] == [1]
    assert "token-123" not in endpoint.model_dump_json()


def test_endpoint_config_for_the_hosted_wandb_server_and_its_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    hosted = McpEndpoint.wandb_hosted()
    assert (hosted.transport, hosted.url, hosted.bearer_token_env) == (
        "http",
        "https://mcp.withwandb.com/mcp",
        "WANDB_API_KEY",
    )
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(McpConfigError, match="WANDB_API_KEY is not set"):
        hosted.http_headers()
    monkeypatch.setenv("WANDB_API_KEY", "w-secret")
    assert hosted.http_headers() == {"Authorization": "Bearer w-secret"}
    assert "w-secret" not in hosted.model_dump_json()
    with pytest.raises(ValueError, match="must be on 127.0.0.1"):
        McpEndpoint(transport="http", url="http://example.com/mcp")

    monkeypatch.setenv("KOTONE_MCP", "wandb")
    assert endpoint_from_env().label == "wandb-hosted"
    monkeypatch.setenv("KOTONE_MCP", "http://127.0.0.1:8765/mcp")
    assert endpoint_from_env().url == "http://127.0.0.1:8765/mcp"
    monkeypatch.setenv("KOTONE_MCP", "stdio")
    assert endpoint_from_env().args == ["-m", "tools.server"]
    monkeypatch.setenv("KOTONE_MCP", "carrier-pigeon")
    with pytest.raises(McpConfigError, match="KOTONE_MCP"):
        endpoint_from_env()


def cv_report(predictor: str, per_dim_error: list[float], n_rows: int = 12) -> EvalReport:
    """Out-of-fold rows of one predictor: targets 5, errors `per_dim_error` scaled per row."""
    results = []
    for index in range(n_rows):
        scale = 0.5 + (index % 4) / 2
        prediction = Prediction(
            values=[5 + error * scale for error in per_dim_error], json_valid=True, served_by="model"
        )
        row = TrainingRow(
            request_text=f"{predictor} training row {index}",
            source_type="rule_prompt",
            target=ParamVector.from_list([5] * 6),
        )
        results.append(score_row(index, row, prediction, "model"))
    return build_report(results, predictor=predictor, decoder="cv", dataset="shipped", data_hash="h")


def test_the_real_server_over_stdio_serves_the_evidence_the_offline_planner_decides_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loop.config import LoopConfig
    from loop.stages.scoring import log_cv

    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    champion_cv = cv_report("tfidf-ridge", [0.6, 0.6, 0.6, 0.6, 0.6, 1.2])
    constant_cv = cv_report("train-median", [1.0] * 6)
    with offline_tracking(tmp_path):
        for name, report in (("tfidf-ridge", champion_cv), ("train-median", constant_cv)):
            log_cv(report, cycle=0, name=name, role="baseline", extra={"predictor": name})
    champion = ModelRecord(
        cycle=0,
        candidate="tfidf-ridge",
        student_path="registry/cycle_0/tfidf-ridge/student",
        decoder="regression",
        base_model="tiny",
        recipe=StudentRecipe(family="baseline", baseline="tfidf-ridge"),
        metrics=metrics([0.7, 0.8, 0.7, 0.8, 0.7, 1.0]),
    )
    atomic_write_json(tmp_path / "registry" / "champion.json", champion)
    atomic_write_json(tmp_path / "loop" / "config.json", LoopConfig(teacher="none"))
    history = [cycle_entry(0, "baseline"), cycle_entry(1, "rejected", [REJECTED], 0.83, 0.95)]
    (tmp_path / "loop" / "history.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in history))

    async def go() -> Any:
        async with open_session(McpEndpoint.local_stdio()) as session:
            names = {spec.name for spec in await session.list_tools()}
            plan = await OfflinePlanner().plan(session, 2, PlanningContext())
            return names, plan, session.transcript

    names, plan, transcript = asyncio.run(go())
    calls = {call.name: call for call in transcript.tool_calls}
    assert set(calls) <= names and not any(call.is_error for call in calls.values())
    assert list(calls) == [
        "get_eval_snapshot_tool",
        "get_cycle_history_tool",
        "get_champion_tool",
        "get_learnability_tool",
        "get_augmentation_capacity_tool",
    ]
    snapshot = EvalSnapshot.model_validate(calls["get_eval_snapshot_tool"].result)
    assert snapshot.champion == champion
    assert snapshot.champion_cv.per_dim_mae == pytest.approx(champion_cv.per_dim_mae)
    assert set(snapshot.baselines_cv) == {"tfidf-ridge", "train-median"}
    assert [f.request_text for f in snapshot.top_failures] == [
        r.request_text for r in champion_cv.top_failures
    ]
    assert all(f.trace_id for f in snapshot.top_failures)
    assert [entry["status"] for entry in calls["get_cycle_history_tool"].result] == ["baseline", "rejected"]
    assert calls["get_augmentation_capacity_tool"].result["max_teacher_pairs"] == 0

    assert plan.focus_dims == ["nostalgia"]
    assert plan.reasons["focus_dims"].startswith("highest CV MAE / train-median CV MAE: nostalgia 1.20")
    assert [spec.name for spec in plan.candidates] == ["stack", "stack-cheap"]
    assert all(spec.augmentation.teacher_pairs == 0 for spec in plan.candidates)
