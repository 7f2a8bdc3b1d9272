"""The MCP server: tools listed with schemas, and tool calls return exactly what tracking logged."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from tracking_support import TRAIN_STEPS, LoggedRuns, log_runs, offline_tracking, tracking_env

from loop.registry import metric_summary
from tools.core.contracts import ChampionRecord, CycleHistoryEntry
from tools.core.schema import DIMS
from tools.mcp.server import build_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENTITY = {"entity_name": "local", "project_name": "kotone-loop"}
SECRET = "mistral-secret-value-1234567890"
MIRRORED = {
    "get_run_history_tool",
    "compare_runs_tool",
    "summarize_evaluation_tool",
    "query_weave_traces_tool",
    "count_weave_traces_tool",
    "query_wandb_tool",
}
DOMAIN = {"get_eval_snapshot_tool", "get_cycle_history_tool", "get_champion_tool", "read_loop_artifact_tool"}


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LoggedRuns]]:
    artifacts = tmp_path_factory.mktemp("artifacts")
    with offline_tracking(artifacts):
        runs = log_runs()
    champion = ChampionRecord(
        cycle=0,
        student_path=None,
        base_model="tiny",
        eval_run_id=runs.eval_run_id,
        metrics=metric_summary(runs.report),
    )
    (artifacts / "registry").mkdir()
    (artifacts / "registry" / "champion.json").write_text(champion.model_dump_json())
    loop = artifacts / "loop"
    (loop / "cycle_1").mkdir(parents=True)
    (loop / "cycle_1" / "decision_log.md").write_text("# Cycle 1\nrejected: gate failed on mae\n")
    entries = [
        CycleHistoryEntry(
            cycle=0, status="baseline", description="base model", started_at="2026-11-27T10:00:00Z"
        ),
        CycleHistoryEntry(
            cycle=1,
            status="rejected",
            description=f"lr up; leaked {SECRET} in a note",
            candidate_mae=0.91,
            started_at="2026-11-27T11:00:00Z",
        ),
    ]
    (loop / "history.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in entries))
    yield artifacts, runs


@pytest.fixture
def env(logged: tuple[Path, LoggedRuns], monkeypatch: pytest.MonkeyPatch) -> LoggedRuns:
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(logged[0]))
    monkeypatch.setenv("MISTRAL_API_KEY", SECRET)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("KOTONE_TRACKING", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return logged[1]


def call(name: str, arguments: dict[str, Any]) -> Any:
    """One in-process tools/call; returns (is_error, parsed JSON or structured content or text)."""

    async def go() -> Any:
        async with Client(build_server()) as client:
            return await client.call_tool(name, arguments)

    result = anyio.run(go)
    text = result.content[0].text if result.content else ""
    if result.is_error:
        return True, text
    structured = result.structured_content
    if structured is not None and set(structured) == {"result"} and isinstance(structured["result"], str):
        return False, json.loads(structured["result"])
    return False, structured if structured is not None else text


def ok(name: str, arguments: dict[str, Any]) -> Any:
    is_error, value = call(name, arguments)
    assert not is_error, value
    return value


def test_tools_list_shows_the_mirrored_and_domain_tools_with_schemas(env):
    async def go() -> Any:
        async with Client(build_server()) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in anyio.run(go)}
    assert set(tools) >= MIRRORED | DOMAIN
    for name in MIRRORED:
        props = tools[name].input_schema["properties"]
        assert {"entity_name", "project_name"} <= set(props), name
        assert tools[name].annotations.read_only_hint
    assert {"run_id_a", "run_id_b"} <= set(tools["compare_runs_tool"].input_schema["properties"])
    snapshot_schema = tools["get_eval_snapshot_tool"].output_schema
    assert {"champion", "base_metrics", "top_failures"} <= set(snapshot_schema["properties"])
    assert tools["get_run_history_tool"].description.startswith("Step-indexed rows")


def test_run_history_returns_the_logged_training_steps(env):
    history = ok("get_run_history_tool", {**ENTITY, "run_id": env.train_run_id, "keys": ["loss", "lr"]})
    assert history["rows"] == [{"_step": m["step"], "loss": m["loss"], "lr": m["lr"]} for m in TRAIN_STEPS]
    assert history["keys_returned"] == ["loss", "lr"]
    assert (history["run_name"], history["total_steps"], history["sampled_points"]) == ("cycle1-train", 7, 8)
    sampled = ok("get_run_history_tool", {**ENTITY, "run_id": env.train_run_id, "samples": 4, "min_step": 2})
    assert [r["_step"] for r in sampled["rows"]] == [2, 3, 5, 6]


def test_query_wandb_lists_eval_runs_with_their_summary_metrics(env):
    listing = ok(
        "query_wandb_tool", {**ENTITY, "filters": {"jobType": "eval"}, "include": ["summary", "config"]}
    )
    by_id = {item["id"]: item for item in listing["items"]}
    assert set(by_id) == {env.eval_run_id, env.baseline_run_id}, "the test-split record must stay hidden"
    assert by_id[env.eval_run_id]["summary"]["eval/vector_mae"] == pytest.approx(env.report.vector_mae)
    assert by_id[env.baseline_run_id]["config"]["role"] == "baseline"
    assert listing["total_count"] == 2 and listing["has_more"] is False
    one = ok("query_wandb_tool", {**ENTITY, "resource": "run", "run_id": env.eval_run_id})
    assert one["item"]["summary"]["eval/per_dim_mae/energy"] == pytest.approx(
        env.report.per_dim_mae["energy"]
    )


def test_compare_runs_reports_metric_deltas(env):
    diff = ok("compare_runs_tool", {**ENTITY, "run_id_a": env.eval_run_id, "run_id_b": env.baseline_run_id})
    mae = diff["summary_diff"]["changed"]["eval/vector_mae"]
    assert mae["run_a"] == pytest.approx(env.report.vector_mae)
    assert mae["delta"] == pytest.approx(env.baseline_report.vector_mae - env.report.vector_mae, abs=1e-6)
    assert diff["config_diff"]["changed"]["role"] == {"run_a": "base", "run_b": "baseline"}


def test_eval_snapshot_gives_champion_base_baselines_and_failures_with_trace_ids(env):
    snapshot = ok("get_eval_snapshot_tool", {"top_k": 5})
    assert snapshot["champion"]["eval_run_id"] == env.eval_run_id
    for key in ("champion_metrics", "base_metrics"):
        assert snapshot[key]["vector_mae"] == pytest.approx(env.report.vector_mae)
        assert snapshot[key]["per_dim_mae"] == pytest.approx(env.report.per_dim_mae)
    assert snapshot["baselines"]["tfidf_ridge"]["vector_mae"] == pytest.approx(env.baseline_report.vector_mae)
    failures = snapshot["top_failures"]
    expected = env.report.top_failures[:5]
    assert [f["request_text"] for f in failures] == [r.request_text for r in expected]
    assert [f["row_mae"] for f in failures] == pytest.approx([r.mae for r in expected])
    traces = ok("query_weave_traces_tool", {**ENTITY, "filters": {"call_ids": [failures[0]["trace_id"]]}})
    (trace,) = traces["traces"]
    assert trace["inputs"]["example"]["request_text"] == failures[0]["request_text"]
    assert trace["output"]["scores"]["mae"] == pytest.approx(failures[0]["row_mae"])


def test_weave_trace_tools_count_and_summarize_the_logged_evaluations(env):
    counts = ok("count_weave_traces_tool", {**ENTITY, "filters": {"op_name_contains": "predict_and_score"}})
    assert counts["total_count"] == env.report.n_rows + env.baseline_report.n_rows
    assert counts["root_traces_count"] == 0
    roots = ok("count_weave_traces_tool", {**ENTITY, "filters": {"trace_roots_only": True}})
    assert roots["root_traces_count"] == 2
    summary = ok(
        "summarize_evaluation_tool", {**ENTITY, "eval_name": "cycle0-base", "include_per_task": True}
    )
    (evaluation,) = summary["evaluations"]
    assert evaluation["total_predictions"] == env.report.n_rows
    assert evaluation["scores"]["mae"]["mean"] == pytest.approx(env.report.vector_mae)
    assert evaluation["scores"]["mae"]["count"] == env.report.n_scored
    assert evaluation["scores"]["json_valid"]["true_fraction"] == pytest.approx(
        env.report.json_valid_rate, abs=1e-6
    )
    assert len(evaluation["per_task"]) == 50
    page = ok(
        "query_weave_traces_tool",
        {**ENTITY, "filters": {"op_name": "mae"}, "limit": 3, "columns": ["output"]},
    )
    assert len(page["traces"]) == 3 and page["metadata"]["has_more"]
    assert set(page["traces"][0]) == {"id", "trace_id", "op_name", "output"}


def test_cycle_history_and_champion_come_back_as_contract_models(env):
    entries = ok("get_cycle_history_tool", {})["result"]
    assert [e["status"] for e in entries] == ["baseline", "rejected"]
    assert entries[1]["candidate_mae"] == 0.91
    champion = ok("get_champion_tool", {})
    assert ChampionRecord.model_validate(champion["result"]).eval_run_id == env.eval_run_id


def test_secrets_never_appear_in_results(env):
    entries = ok("get_cycle_history_tool", {"last_n": 1})["result"]
    assert SECRET not in json.dumps(entries)
    assert "[redacted]" in entries[0]["description"]


def test_artifacts_inside_the_loop_dir_are_readable(env):
    text = ok("read_loop_artifact_tool", {"path": "cycle_1/decision_log.md"})
    assert text["text"].startswith("# Cycle 1") and text["truncated"] is False


@pytest.mark.parametrize(
    "path", ["../registry/champion.json", "cycle_1/../../../etc/passwd", "/etc/passwd", "~/.netrc", "..", ""]
)
def test_path_arguments_cannot_escape_the_artifacts_dir(env, path):
    is_error, message = call("read_loop_artifact_tool", {"path": path})
    assert is_error
    assert "Traceback" not in message
    assert any(word in message for word in ("outside", "relative", "at least 1 character", "only"))


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("get_run_history_tool", {**ENTITY, "run_id": "nosuchrun"}, "not found"),
        ("get_run_history_tool", {**ENTITY, "run_id": "../../x"}, "run_id"),
        ("get_run_history_tool", {**ENTITY}, "run_id"),
        ("query_weave_traces_tool", {**ENTITY, "filters": {"bogus": 1}}, "bogus"),
        ("query_weave_traces_tool", {**ENTITY, "limit": 0}, "limit"),
        ("query_wandb_tool", {**ENTITY, "filters": {"summary.x": {"$gt": 1}}}, "unsupported filter"),
        ("query_wandb_tool", {**ENTITY, "filters": {"group": {"$ne": "a"}}}, "only equality"),
        ("query_wandb_tool", {**ENTITY, "resource": "run"}, "needs run_id"),
        ("get_eval_snapshot_tool", {"top_k": "many"}, "top_k"),
    ],
)
def test_bad_arguments_come_back_as_clear_mcp_errors(env, name, arguments, expected):
    is_error, message = call(name, arguments)
    assert is_error
    assert expected in message
    assert "Traceback" not in message


def test_held_out_runs_cannot_be_read_by_id(env):
    is_error, message = call(
        "get_run_table_tool", {**ENTITY, "run_id": env.test_run_id, "table_key": "eval/rows"}
    )
    assert is_error and "not found" in message


def test_help_describes_the_transports():
    result = subprocess.run(
        [sys.executable, "-m", "tools.server", "--help"], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert result.returncode == 0
    assert "--http" in result.stdout and "127.0.0.1:PORT" in result.stdout


def test_a_real_stdio_session_lists_tools_and_returns_the_logged_numbers(logged):
    artifacts, runs = logged
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "tools.server"],
        cwd=str(PROJECT_ROOT),
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), **tracking_env(artifacts)},
    )
    timings: dict[str, float] = {}

    async def go() -> dict[str, Any]:
        started = time.perf_counter()
        async with Client(params) as client:
            timings["startup_s"] = time.perf_counter() - started
            tools = (await client.list_tools()).tools
            results = {}
            for name, arguments in [
                ("get_run_history_tool", {**ENTITY, "run_id": runs.train_run_id, "keys": ["loss"]}),
                ("get_eval_snapshot_tool", {}),
                ("count_weave_traces_tool", {**ENTITY, "filters": {"op_name_contains": "predict_and_score"}}),
                ("summarize_evaluation_tool", {**ENTITY, "eval_name": "cycle0-base"}),
            ]:
                t0 = time.perf_counter()
                results[name] = await client.call_tool(name, arguments)
                timings[name] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(10):
                await client.call_tool("get_run_history_tool", {**ENTITY, "run_id": runs.train_run_id})
            timings["history_call_mean_s"] = (time.perf_counter() - t0) / 10
            return {"tools": tools, **results}

    out = anyio.run(go)
    print("stdio timings:", json.dumps({k: round(v, 4) for k, v in timings.items()}))
    assert {t.name for t in out["tools"]} >= MIRRORED | DOMAIN
    assert all(t.input_schema.get("type") == "object" for t in out["tools"])
    history = json.loads(out["get_run_history_tool"].structured_content["result"])
    assert [r["loss"] for r in history["rows"]] == [m["loss"] for m in TRAIN_STEPS]
    snapshot = out["get_eval_snapshot_tool"].structured_content
    assert snapshot["champion_metrics"]["vector_mae"] == pytest.approx(runs.report.vector_mae)
    assert {d: snapshot["base_metrics"]["per_dim_mae"][d] for d in DIMS} == pytest.approx(
        runs.report.per_dim_mae
    )
    counts = json.loads(out["count_weave_traces_tool"].structured_content["result"])
    assert counts["total_count"] == runs.report.n_rows + runs.baseline_report.n_rows
    summary = json.loads(out["summarize_evaluation_tool"].structured_content["result"])
    assert summary["evaluations"][0]["scores"]["mae"]["mean"] == pytest.approx(runs.report.vector_mae)


def test_streamable_http_on_loopback_serves_the_same_tools(logged):
    import socket

    from mcp.client.streamable_http import streamable_http_client

    artifacts, runs = logged
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), **tracking_env(artifacts)}
    server = subprocess.Popen(
        [sys.executable, "-m", "tools.server", "--http", f"127.0.0.1:{port}"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)

        async def go() -> Any:
            async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp")) as client:
                return await client.call_tool(
                    "get_run_history_tool", {**ENTITY, "run_id": runs.train_run_id, "keys": ["loss"]}
                )

        result = anyio.run(go)
        history = json.loads(result.structured_content["result"])
        assert [r["loss"] for r in history["rows"]] == [m["loss"] for m in TRAIN_STEPS]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_http_refuses_non_loopback_hosts():
    result = subprocess.run(
        [sys.executable, "-m", "tools.server", "--http", "0.0.0.0:8000"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert result.returncode != 0 and "loopback" in result.stderr
