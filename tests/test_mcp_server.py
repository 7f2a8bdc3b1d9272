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
from tracking_support import TRAIN_STEPS, LoggedRuns, log_runs, make_report, offline_tracking, tracking_env

from loop.registry import metric_summary
from loop.server.assemble import build_server
from tools.core.contracts import CycleHistoryEntry, ModelRecord
from tools.core.schema import DIMS
from tools.mcp.weave_tools import DEFAULT_TRACES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENTITY = {"entity_name": "offline", "project_name": "kotone-loop"}
SECRET = "mistral-secret-value-1234567890"
MIRRORED = {
    "get_run_history_tool",
    "compare_runs_tool",
    "summarize_evaluation_tool",
    "query_weave_traces_tool",
    "count_weave_traces_tool",
}
DOMAIN = {
    "get_eval_snapshot_tool",
    "get_cycle_history_tool",
    "get_champion_tool",
    "read_loop_artifact_tool",
    "list_runs_tool",
    "predict_tool",
}


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LoggedRuns]]:
    artifacts = tmp_path_factory.mktemp("artifacts")
    with offline_tracking(artifacts):
        runs = log_runs()
    champion = ModelRecord(
        cycle=0,
        candidate="base-skeleton",
        decoder="skeleton",
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
    assert set(tools) >= MIRRORED | DOMAIN | {"query_wandb_tool"}
    for name in MIRRORED:
        props = tools[name].input_schema["properties"]
        assert {"entity_name", "project_name"} <= set(props), name
        assert tools[name].annotations.read_only_hint
    assert {"run_id_a", "run_id_b"} <= set(tools["compare_runs_tool"].input_schema["properties"])
    snapshot_schema = tools["get_eval_snapshot_tool"].output_schema
    assert {"champion", "base_metrics", "top_failures"} <= set(snapshot_schema["properties"])
    assert tools["get_run_history_tool"].description.startswith("Step-indexed rows")


def test_run_history_returns_the_logged_training_steps(env):
    keys = ["train/loss", "train/learning_rate"]
    history = ok("get_run_history_tool", {**ENTITY, "run_id": env.train_run_id, "keys": keys})
    assert history["rows"] == [
        {"_step": m["step"], "train/loss": m["loss"], "train/learning_rate": m["lr"]} for m in TRAIN_STEPS
    ]
    assert history["keys_returned"] == ["train/learning_rate", "train/loss"]
    assert (history["run_name"], history["total_steps"], history["sampled_points"]) == ("cycle1-train", 7, 8)
    sampled = ok("get_run_history_tool", {**ENTITY, "run_id": env.train_run_id, "samples": 4, "min_step": 2})
    assert [r["_step"] for r in sampled["rows"]] == [2, 3, 5, 6]


def test_list_runs_lists_eval_runs_with_their_summary_metrics(env):
    listing = ok(
        "list_runs_tool", {**ENTITY, "filters": {"jobType": "eval"}, "include": ["summary", "config"]}
    )
    by_id = {item["id"]: item for item in listing["items"]}
    assert set(by_id) == {env.eval_run_id, env.baseline_run_id}, "the test-split record must stay hidden"
    assert by_id[env.eval_run_id]["summary"]["eval/vector_mae"] == pytest.approx(env.report.vector_mae)
    assert by_id[env.baseline_run_id]["config"]["role"] == "baseline"
    assert listing["total_count"] == 2 and listing["has_more"] is False
    one = ok("list_runs_tool", {**ENTITY, "resource": "run", "run_id": env.eval_run_id})
    assert one["item"]["summary"]["eval/per_dim_mae/energy"] == pytest.approx(
        env.report.per_dim_mae["energy"]
    )


def test_list_runs_reads_the_same_run_filter_as_query_wandb(env):
    """One run-filter language: list_runs_tool takes W&B's filter, operators included, as runs(filters:) does."""
    worse = max(
        (env.report, env.eval_run_id),
        (env.baseline_report, env.baseline_run_id),
        key=lambda p: p[0].vector_mae,
    )
    better_than_worst = {"jobType": "eval", "summary_metrics.eval/vector_mae": {"$lt": worse[0].vector_mae}}
    listed = ok("list_runs_tool", {**ENTITY, "filters": better_than_worst})
    query = ok(
        "query_wandb_tool",
        {
            "query": 'query($f: JSONString) { project(name: "kotone-loop") { runs(filters: $f) '
            "{ edges { node { name } } } } }",
            "variables": {"f": json.dumps(better_than_worst)},
        },
    )
    from_query = [e["node"]["name"] for e in query["data"]["project"]["runs"]["edges"]]
    assert [item["id"] for item in listed["items"]] == from_query and len(from_query) == 1
    assert from_query[0] != worse[1]
    either = {"$or": [{"config.role": "base"}, {"displayName": {"$regex": "baseline"}}]}
    assert {i["id"] for i in ok("list_runs_tool", {**ENTITY, "filters": either})["items"]} == {
        env.eval_run_id,
        env.baseline_run_id,
    }


def test_compare_runs_reports_metric_deltas(env):
    diff = ok("compare_runs_tool", {**ENTITY, "run_id_a": env.eval_run_id, "run_id_b": env.baseline_run_id})
    mae = diff["summary_diff"]["changed"]["eval/vector_mae"]
    assert mae["run_a"] == pytest.approx(env.report.vector_mae)
    assert mae["delta"] == pytest.approx(env.baseline_report.vector_mae - env.report.vector_mae, abs=1e-6)
    assert diff["config_diff"]["changed"]["role"] == {"run_a": "base", "run_b": "baseline"}


def test_eval_snapshot_gives_champion_base_baselines_and_failures_with_trace_ids(
    env, logged, tmp_path, monkeypatch
):
    """Validation figures are shown for the record; the failures are the champion's worst out-of-fold
    TRAINING rows from its CV run (role "cv"), never a validation row."""
    import shutil

    from loop.stages.scoring import log_cv

    snapshot = ok("get_eval_snapshot_tool", {"top_k": 5})
    assert snapshot["champion"]["eval_run_id"] == env.eval_run_id
    for key in ("champion_metrics", "base_metrics"):
        assert snapshot[key]["vector_mae"] == pytest.approx(env.report.vector_mae)
        assert snapshot[key]["per_dim_mae"] == pytest.approx(env.report.per_dim_mae)
    assert snapshot["baselines"]["tfidf_ridge"]["vector_mae"] == pytest.approx(env.baseline_report.vector_mae)
    # The zero-shot base model has no CV run: nothing to list, and its validation rows are not listed.
    assert snapshot["top_failures"] == [] and snapshot["champion_cv"] is None

    artifacts = tmp_path / "artifacts"
    shutil.copytree(logged[0], artifacts)
    champion_cv = make_report(30, seed=5, predictor="cycle1-stack", dataset="shipped")
    constant_cv = make_report(30, seed=6, predictor="train-median", dataset="shipped")
    with offline_tracking(artifacts):
        log_cv(
            constant_cv, cycle=0, name="train-median", role="baseline", extra={"predictor": "train-median"}
        )
        log_cv(champion_cv, cycle=1, name="stack", role="candidate")
        log_cv(make_report(30, seed=7, dataset="shipped"), cycle=1, name="stack-cheap", role="candidate")
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(artifacts))
    champion_path = artifacts / "registry" / "champion.json"
    champion = ModelRecord.model_validate_json(champion_path.read_text())
    champion_path.write_text(champion.model_copy(update={"cycle": 1, "candidate": "stack"}).model_dump_json())

    snapshot = ok("get_eval_snapshot_tool", {"top_k": 5})
    assert snapshot["champion_cv"]["vector_mae"] == pytest.approx(champion_cv.vector_mae)
    assert set(snapshot["baselines_cv"]) == {"train-median"}
    assert snapshot["baselines_cv"]["train-median"]["vector_mae"] == pytest.approx(constant_cv.vector_mae)
    failures = snapshot["top_failures"]
    expected = champion_cv.top_failures[:5]
    assert [f["request_text"] for f in failures] == [r.request_text for r in expected]
    assert [f["row_mae"] for f in failures] == pytest.approx([r.mae for r in expected])
    traces = ok("query_weave_traces_tool", {**ENTITY, "filters": {"call_ids": [failures[-1]["trace_id"]]}})
    (trace,) = traces["traces"]
    assert trace["inputs"]["example"]["request_text"] == failures[-1]["request_text"]
    assert trace["output"]["scores"]["mae"] == pytest.approx(failures[-1]["row_mae"])


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
        {**ENTITY, "filters": {"op_name_contains": "predict_and_score"}, "limit": 3, "columns": ["output"]},
    )
    assert len(page["traces"]) == 3 and page["metadata"]["has_more"]
    assert set(page["traces"][0]) == {"id", "trace_id", "op_name", "output"}


def test_cycle_history_and_champion_come_back_as_contract_models(env):
    entries = ok("get_cycle_history_tool", {})["result"]
    assert [e["status"] for e in entries] == ["baseline", "rejected"]
    assert entries[1]["candidate_mae"] == 0.91
    champion = ok("get_champion_tool", {})
    assert ModelRecord.model_validate(champion["result"]).eval_run_id == env.eval_run_id


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
        ("get_run_history_tool", {**ENTITY, "run_id": "../../x"}, "run_id"),
        ("get_run_history_tool", {**ENTITY}, "run_id"),
        ("query_weave_traces_tool", {**ENTITY, "filters": {"bogus": 1}}, "bogus"),
        ("query_weave_traces_tool", {**ENTITY, "limit": 0}, "limit"),
        ("query_weave_traces_tool", {**ENTITY, "detail_level": "everything"}, "detail_level"),
        ("query_wandb_tool", {"variables": {}}, "query"),
        ("get_eval_snapshot_tool", {"top_k": "many"}, "top_k"),
    ],
)
def test_arguments_the_schema_refuses_come_back_as_clear_mcp_errors(env, name, arguments, expected):
    is_error, message = call(name, arguments)
    assert is_error
    assert expected in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("get_run_history_tool", {**ENTITY, "run_id": "nosuchrun"}, "not found"),
        ("compare_runs_tool", {**ENTITY, "run_id_a": "nosuchrun", "run_id_b": "other"}, "not found"),
        ("query_weave_traces_tool", {**ENTITY, "sort_by": "costs"}, "not sortable"),
        ("query_weave_traces_tool", {**ENTITY, "limit": 501}, "query_too_large: limit 501 is over 500"),
        ("query_weave_traces_tool", {**ENTITY, "filters": {"inputs": {"x": {"$regex": "a"}}}}, "$regex"),
        ("list_runs_tool", {**ENTITY, "filters": {"summary.x": {"$gt": 1}}}, "unknown run field 'summary.x'"),
        ("list_runs_tool", {**ENTITY, "filters": {"group": {"$near": "a"}}}, "unsupported operator '$near'"),
        ("list_runs_tool", {**ENTITY, "resource": "run"}, "needs run_id"),
    ],
)
def test_tool_failures_come_back_as_json_errors_like_the_official_tools(env, name, arguments, expected):
    is_error, value = call(name, arguments)
    assert not is_error and set(value) == {"error"}, value
    assert expected in value["error"] and "Traceback" not in value["error"]


def test_the_agents_client_reads_a_json_error_as_a_failed_call(env):
    from agent.mcp_client import open_session

    async def go() -> Any:
        async with open_session(build_server()) as session:
            return await session.call_tool("get_run_history_tool", {**ENTITY, "run_id": "nosuchrun"})

    record = anyio.run(go)
    assert record.is_error and "not found" in record.error


def test_held_out_runs_cannot_be_read_by_id(env):
    is_error, value = call(
        "get_run_table_tool", {**ENTITY, "run_id": env.test_run_id, "table_key": "eval/rows"}
    )
    assert not is_error and "not found" in value["error"]


def test_traces_default_to_a_page_an_agent_can_hold(env):
    reply = ok("query_weave_traces_tool", {**ENTITY, "limit": 3})
    assert len(reply["traces"]) == 3 and reply["metadata"]["has_more"] is True
    tool = _listed_tools()["query_weave_traces_tool"]
    assert tool.input_schema["properties"]["limit"]["default"] == DEFAULT_TRACES == 100


def test_a_reply_over_the_character_budget_drops_its_last_traces_and_says_so(env, monkeypatch):
    import tools.mcp.weave_tools as weave_tools

    arguments = {**ENTITY, "detail_level": "full", "limit": 8}
    everything = ok("query_weave_traces_tool", arguments)
    assert everything["metadata"]["truncation_applied"] is False
    budget = len(json.dumps(everything)) // 3
    monkeypatch.setattr(weave_tools, "REPLY_CHAR_BUDGET", budget)

    async def go() -> Any:
        async with Client(build_server()) as client:
            return await client.call_tool("query_weave_traces_tool", arguments)

    text = anyio.run(go).structured_content["result"]
    trimmed = json.loads(text)
    assert len(text) <= budget
    kept = len(trimmed["traces"])
    assert 0 < kept < len(everything["traces"])
    assert trimmed["traces"] == everything["traces"][:kept], "the first traces of the order are kept"
    metadata = trimmed["metadata"]
    assert metadata["truncation_applied"] is True and metadata["returned_count"] == kept
    assert metadata["truncation_dropped_count"] == len(everything["traces"]) - kept
    assert f"trimmed to {budget} characters" in metadata["truncation_note"]


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
                ("get_run_history_tool", {**ENTITY, "run_id": runs.train_run_id, "keys": ["train/loss"]}),
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
    assert [r["train/loss"] for r in history["rows"]] == [m["loss"] for m in TRAIN_STEPS]
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

    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    artifacts, runs = logged
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "test-http-token-1234"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(PROJECT_ROOT),
        "KOTONE_MCP_HTTP_TOKEN": token,
        **tracking_env(artifacts),
    }
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
            async with (
                create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
                Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client,
            ):
                return await client.call_tool(
                    "get_run_history_tool", {**ENTITY, "run_id": runs.train_run_id, "keys": ["train/loss"]}
                )

        result = anyio.run(go)
        history = json.loads(result.structured_content["result"])
        assert [r["train/loss"] for r in history["rows"]] == [m["loss"] for m in TRAIN_STEPS]
        # Without the token (or with another one) nothing reaches a tool.
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = httpx.post(
                f"http://127.0.0.1:{port}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Accept": "application/json, text/event-stream", **headers},
            )
            assert refused.status_code == 401
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


RUNS_QUERY = """
query Runs($entity: String, $project: String!, $filters: JSONString, $order: String, $after: String) {
  project(name: $project, entityName: $entity) {
    name
    runCount(filters: $filters)
    runs(first: 1, filters: $filters, order: $order, after: $after) {
      edges { node { name displayName jobType tags config summaryMetrics } cursor }
      pageInfo { endCursor hasNextPage }
    }
  }
}
"""


RUN_FIELDS_QUERY = """
query Run($project: String!, $run: String!) {
  project(name: $project) {
    run(name: $run) {
      name createdAt heartbeatAt
      user { username }
      history(samples: 2)
      files { edges { node { name sizeBytes digest url } } pageInfo { endCursor hasNextPage } }
      artifacts { edges { node { name } } pageInfo { endCursor hasNextPage } }
    }
  }
}
"""


def test_the_run_fields_the_official_examples_use_are_served_from_the_store(env):
    train = ok(
        "query_wandb_tool",
        {"query": RUN_FIELDS_QUERY, "variables": {"project": "kotone-loop", "run": env.train_run_id}},
    )
    run = train["data"]["project"]["run"]
    assert "errors" not in train, train
    assert run["createdAt"] <= run["heartbeatAt"] and run["heartbeatAt"].endswith("Z")
    assert run["user"] == {"username": "offline"}
    rows = [json.loads(row) for row in run["history"]]
    assert len(rows) == 2 and rows[0]["train/loss"] == TRAIN_STEPS[0]["loss"]
    assert run["artifacts"] == {"edges": [], "pageInfo": {"endCursor": None, "hasNextPage": False}}
    evaluation = ok(
        "query_wandb_tool",
        {"query": RUN_FIELDS_QUERY, "variables": {"project": "kotone-loop", "run": env.eval_run_id}},
    )
    files = {
        edge["node"]["name"]: edge["node"] for edge in evaluation["data"]["project"]["run"]["files"]["edges"]
    }
    assert any(name.startswith("media/table/eval/rows") for name in files), files
    assert all(node["sizeBytes"] > 0 and node["digest"] and node["url"] is None for node in files.values())


def test_what_the_store_lacks_is_said_in_the_schema(env):
    query = '{ __type(name: "Run") { fields { name description } } }'
    fields = {
        f["name"]: f["description"]
        for f in ok("query_wandb_tool", {"query": query})["data"]["__type"]["fields"]
    }
    assert "no user" in fields["user"] and "empty" in fields["artifacts"] and "url is null" in fields["files"]


def test_query_wandb_answers_graphql_run_queries_as_wandb_does(env):
    variables = {
        "project": "kotone-loop",
        "filters": json.dumps({"jobType": "eval", "config.role": {"$in": ["base", "baseline"]}}),
        "order": "+summary_metrics.eval/vector_mae",
    }
    first = ok("query_wandb_tool", {"query": RUNS_QUERY, "variables": variables})
    project = first["data"]["project"]
    assert project["runCount"] == 2, "the test-split record must stay hidden"
    (edge,) = project["runs"]["edges"]
    best = min(
        (env.report, env.eval_run_id),
        (env.baseline_report, env.baseline_run_id),
        key=lambda p: p[0].vector_mae,
    )
    assert edge["node"]["name"] == best[1]
    assert json.loads(edge["node"]["summaryMetrics"])["eval/vector_mae"] == pytest.approx(best[0].vector_mae)
    assert json.loads(edge["node"]["config"])["split"] == {"value": "valid", "desc": None}
    assert project["runs"]["pageInfo"]["hasNextPage"] is True
    after = project["runs"]["pageInfo"]["endCursor"]
    second = ok("query_wandb_tool", {"query": RUNS_QUERY, "variables": {**variables, "after": after}})
    page = second["data"]["project"]["runs"]
    assert [e["node"]["name"] for e in page["edges"]] == list(
        {env.eval_run_id, env.baseline_run_id} - {best[1]}
    )
    assert page["pageInfo"]["hasNextPage"] is False


def test_query_wandb_reads_one_run_by_id_with_its_history(env):
    query = """query Run($project: String!, $runId: String!, $specs: [JSONString!]!) {
      project(name: $project) { run(name: $runId) {
        name displayName jobType tags historyKeys historyLineCount sampledHistory(specs: $specs) } } }"""
    variables = {
        "project": "kotone-loop",
        "runId": env.train_run_id,
        "specs": [json.dumps({"keys": ["train/loss"], "samples": 100})],
    }
    run = ok("query_wandb_tool", {"query": query, "variables": variables})["data"]["project"]["run"]
    assert (run["name"], run["displayName"], run["jobType"]) == (env.train_run_id, "cycle1-train", "train")
    assert {"train/loss", "train/learning_rate", "train/epoch"} <= set(run["historyKeys"])
    assert run["historyLineCount"] == len(TRAIN_STEPS)
    assert [row["train/loss"] for row in run["sampledHistory"][0]] == [m["loss"] for m in TRAIN_STEPS]
    assert {"cycle_1", "train"} <= set(run["tags"])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('mutation { deleteRun(id: "x") { ok } }', "mutation"),
        (
            '{ project(name: "kotone-loop") { runs(filters: "{\\"bogus\\": 1}") { edges { node { name } } } } }',
            "bogus",
        ),
        ('{ project(name: "kotone-loop") { summary } }', "Cannot query field 'summary'"),
    ],
)
def test_query_wandb_reports_graphql_errors_in_the_result(env, query, expected):
    result = ok("query_wandb_tool", {"query": query})
    assert any(expected in error["message"] for error in result["errors"])


def test_query_wandb_hides_held_out_runs_and_unknown_projects(env):
    query = (
        '{ a: project(name: "kotone-loop") { run(name: "%s") { name } } b: project(name: "nope") { name } }'
    )
    data = ok("query_wandb_tool", {"query": query % env.test_run_id})["data"]
    assert data == {"a": {"run": None}, "b": None}


def test_trace_filters_read_time_range_inputs_output_and_the_linked_run(env):
    rows = {"op_name_contains": "predict_and_score"}
    everything = ok("count_weave_traces_tool", {**ENTITY, "filters": rows})["total_count"]
    assert everything == env.report.n_rows + env.baseline_report.n_rows
    future = {**rows, "time_range": {"start": "2100-01-01T00:00:00Z"}}
    assert ok("count_weave_traces_tool", {**ENTITY, "filters": future})["total_count"] == 0
    past = {**rows, "time_range": {"start": "2000-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"}}
    assert ok("count_weave_traces_tool", {**ENTITY, "filters": past})["total_count"] == everything
    text = env.report.rows[3].request_text
    by_input = {**rows, "inputs": {"example.request_text": text}}
    (trace,) = ok("query_weave_traces_tool", {**ENTITY, "filters": by_input})["traces"]
    assert trace["inputs"]["example"]["request_text"] == text
    invalid = {**rows, "output": {"scores.json_valid": False}}
    n_invalid = sum(not r.json_valid for r in env.report.rows + env.baseline_report.rows)
    assert ok("count_weave_traces_tool", {**ENTITY, "filters": invalid})["total_count"] == n_invalid
    linked = {**rows, "wb_run_id": env.eval_run_id}
    assert ok("count_weave_traces_tool", {**ENTITY, "filters": linked})["total_count"] == env.report.n_rows
    contains = {"trace_roots_only": True, "attributes": {"kotone.run_name": {"$contains": "BASELINE"}}}
    assert ok("count_weave_traces_tool", {**ENTITY, "filters": contains})["total_count"] == 1


def test_detail_level_chooses_the_fields_and_truncation(env):
    arguments = {**ENTITY, "filters": {"op_name_contains": "predict_and_score"}, "limit": 2}
    schema = ok("query_weave_traces_tool", {**arguments, "detail_level": "schema"})
    assert set(schema["traces"][0]) <= {
        "id",
        "trace_id",
        "op_name",
        "started_at",
        "ended_at",
        "status",
        "parent_id",
        "display_name",
    }
    assert "inputs" not in schema["traces"][0]
    short = ok("query_weave_traces_tool", {**arguments, "truncate_length": 5})
    assert short["traces"][0]["inputs"]["example"]["request_text"].endswith("...")
    full = ok("query_weave_traces_tool", {**arguments, "truncate_length": 5, "detail_level": "full"})
    assert full["traces"][0]["inputs"]["example"]["request_text"].startswith("request ")
    assert full["metadata"]["total_matching_count"] == env.report.n_rows + env.baseline_report.n_rows


def test_every_evaluation_is_linked_to_its_wandb_run(env):
    summary = ok("summarize_evaluation_tool", {**ENTITY, "max_evals": 5})
    linked = {e["display_name"]: e["wb_run_id"] for e in summary["evaluations"]}
    assert linked["cycle0-base"].endswith(f"/{env.eval_run_id}")
    assert linked["baseline-tfidf_ridge"].endswith(f"/{env.baseline_run_id}")
    assert summary["items"] == summary["evaluations"]


def test_the_server_reports_the_project_version():
    from importlib.metadata import version

    async def go() -> Any:
        async with Client(build_server()) as client:
            return client.server_info

    info = anyio.run(go)
    assert (info.name, info.version) == ("kotone-loop", version("kotone-loop"))


OFFICIAL = json.loads((PROJECT_ROOT / "tests" / "fixtures" / "wandb_mcp_v0.3.3_tools.json").read_text())


# Where our default differs on purpose: the official default of 1000 traces is over its own hosted cap of
# 500 and gives a reply of megabytes; ours is one page an agent can hold (a call without limit works on both).
DELIBERATE_DEFAULTS = {("query_weave_traces_tool", "limit"): DEFAULT_TRACES}


def _types(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    """The JSON types a (sub)schema accepts, through $ref and anyOf."""
    if "$ref" in schema:
        return _types(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return set().union(*(_types(s, defs) for s in schema["anyOf"]))
    kind = schema.get("type")
    return (
        set(kind) if isinstance(kind, list) else {kind} if kind else {"string"} if "enum" in schema else set()
    )


def _object_properties(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return _object_properties(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    return set(schema.get("properties", {})).union(
        *(_object_properties(s, defs) for s in schema.get("anyOf", []))
    )


def _listed_tools() -> dict[str, Any]:
    async def go() -> Any:
        async with Client(build_server()) as client:
            return (await client.list_tools()).tools

    return {t.name: t for t in anyio.run(go)}


@pytest.mark.parametrize("name", sorted(OFFICIAL["tools"]))
def test_mirrored_tools_accept_every_call_the_official_schema_allows(env, name):
    official = OFFICIAL["tools"][name]
    tool = _listed_tools()[name]
    ours = tool.input_schema
    defs = ours.get("$defs", {})
    assert set(ours.get("required", [])) <= set(official["required"]), "we must not require more"
    for prop, spec in official["properties"].items():
        assert prop in ours["properties"], f"{name} lacks the official argument {prop!r}"
        mine = ours["properties"][prop]
        assert spec["type"] in _types(mine, defs), f"{name}.{prop}: {spec['type']} vs {mine}"
        if "default" in spec and (name, prop) not in DELIBERATE_DEFAULTS:
            assert mine.get("default") == spec["default"], f"{name}.{prop} default"
        if "enum" in spec:
            assert set(spec["enum"]) <= set(mine.get("enum", spec["enum"])), f"{name}.{prop} values"
    if "filter_keys" in official:
        accepted = _object_properties(ours["properties"]["filters"], defs)
        assert set(official["filter_keys"]) <= accepted, set(official["filter_keys"]) - accepted
    assert tool.annotations.read_only_hint


def test_mirrored_tools_return_the_official_result_keys(env):
    arguments = {
        "query_wandb_tool": {"query": '{ project(name: "kotone-loop") { name runCount } }'},
        "query_weave_traces_tool": ENTITY,
        "count_weave_traces_tool": ENTITY,
        "get_run_history_tool": {**ENTITY, "run_id": env.train_run_id},
        "compare_runs_tool": {**ENTITY, "run_id_a": env.eval_run_id, "run_id_b": env.baseline_run_id},
        "summarize_evaluation_tool": ENTITY,
    }
    assert set(arguments) == set(OFFICIAL["tools"])
    for name, args in arguments.items():
        result = ok(name, args)
        missing = set(OFFICIAL["tools"][name]["result_keys"]) - set(result)
        assert not missing, f"{name} result lacks {missing}"


def test_the_snapshot_stage_reads_the_champions_runs_through_graphql(env, logged, tmp_path, monkeypatch):
    """The loop's snapshot stage asks query_wandb_tool in GraphQL, then reads the training curve."""
    import shutil

    from agent.mcp_client import open_session
    from loop.driver.snapshot import read_snapshot

    artifacts = tmp_path / "artifacts"
    shutil.copytree(logged[0], artifacts)
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(artifacts))
    champion_path = artifacts / "registry" / "champion.json"
    champion = ModelRecord.model_validate_json(champion_path.read_text())
    champion_path.write_text(champion.model_copy(update={"cycle": 1}).model_dump_json())

    async def go() -> Any:
        async with open_session(build_server()) as session:
            await read_snapshot(session)
            return session.transcript.tool_calls

    calls = {call.name: call for call in anyio.run(go)}
    runs = calls["query_wandb_tool"].result["data"]["project"]["runs"]["edges"]
    assert [edge["node"]["name"] for edge in runs] == [env.train_run_id]
    curve = calls["get_run_history_tool"].result
    assert [row["train/loss"] for row in curve["rows"]] == [m["loss"] for m in TRAIN_STEPS]
    assert "evaluations" in calls["summarize_evaluation_tool"].result


def _label_keys(value: Any, path: str = "") -> list[str]:
    """Every place in a reply that holds a row's target or a row's error."""
    from tools.tracking.agent_view import ROW_LABEL_KEYS

    if isinstance(value, str) and value[:1] in "[{":
        try:
            return _label_keys(json.loads(value), path)
        except json.JSONDecodeError:
            return []
    if isinstance(value, dict):
        found = [f"{path}.{k}" for k in value if k in ROW_LABEL_KEYS]
        return found + [p for k, v in value.items() for p in _label_keys(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _label_keys(v, f"{path}[{i}]")]
    return []


def _without_aggregates(reply: Any) -> Any:
    """What may name a scorer without being a row's figure: op-name counts, and an evaluation's own summary
    (the root call's output: means over all rows), an evaluation summary's scores."""
    if isinstance(reply, dict) and "evaluations" in reply:
        return [e.get("per_task") for e in reply["evaluations"]]
    if not isinstance(reply, dict) or "traces" not in reply:
        return reply
    traces = [{**t, "output": None} if t.get("parent_id") is None else t for t in reply["traces"]]
    return {**reply, "metadata": {}, "traces": traces}


def test_no_tool_in_the_agents_view_hands_out_a_validation_label(env: LoggedRuns, logged):
    """The agent may see aggregate validation figures, never a validation row's target or error: every
    read tool is walked with the arguments that would reach the validation rows, and none answers one."""
    from agent.planner import READ_ONLY_TOOLS
    from tools.core.atomic import atomic_write_json

    artifacts = logged[0]
    atomic_write_json(artifacts / "loop" / "cycle_1" / "candidates" / "a" / "eval_valid.json", env.report)
    valid_run = {**ENTITY, "run_id": env.eval_run_id}
    (eval_trace,) = ok(
        "query_weave_traces_tool",
        {**ENTITY, "filters": {"op_name_contains": "Evaluation.evaluate", "wb_run_id": env.eval_run_id}},
    )["traces"]
    target = env.report.rows[0].target
    walks = {
        "get_run_table_tool": [{**valid_run, "table_key": "eval/rows"}, {**valid_run}],
        "query_weave_traces_tool": [
            {**ENTITY, "detail_level": "full", "limit": 500},
            {**ENTITY, "filters": {"trace_ids": [eval_trace["trace_id"]]}, "detail_level": "full"},
        ],
        "summarize_evaluation_tool": [{**ENTITY, "include_per_task": True}],
        "get_run_history_tool": [valid_run],
        "compare_runs_tool": [{**ENTITY, "run_ids": [env.eval_run_id, env.baseline_run_id]}],
        "count_weave_traces_tool": [ENTITY],
        "query_wandb_tool": [
            {
                "query": "query($p: String!, $e: String) { project(name: $p, entityName: $e) { runs { edges "
                "{ node { name config summaryMetrics } } } } }",
                "variables": {"p": ENTITY["project_name"], "e": ENTITY["entity_name"]},
            }
        ],
        "get_eval_snapshot_tool": [{}],
        "get_cycle_history_tool": [{}],
        "get_champion_tool": [{}],
        "get_augmentation_capacity_tool": [{}],
        "get_learnability_tool": [{}],
    }
    assert set(walks) == READ_ONLY_TOOLS
    for name, calls in walks.items():
        for arguments in calls:
            is_error, reply = call(name, arguments)
            assert not _label_keys(_without_aggregates(reply)), (name, arguments, _label_keys(reply)[:5])
    refused, why = call("read_loop_artifact_tool", {"path": "cycle_1/candidates/a/eval_valid.json"})
    assert refused and "gate's" in why
    by_target = {"inputs": {"example.target.energy": target[0]}}
    assert ok("query_weave_traces_tool", {**ENTITY, "filters": by_target})["traces"] == []
