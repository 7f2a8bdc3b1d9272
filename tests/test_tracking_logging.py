"""Offline W&B + Weave logging, read back by the local tracking store: the numbers round-trip."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracking_support import TRAIN_STEPS, LoggedRuns, log_runs, offline_tracking, tracking_env

from tools.core.schema import DIMS
from tools.tracking.call_filters import CallFilters
from tools.tracking.local_store import LocalTrackingStore
from tools.tracking.store import open_store
from tools.tracking.store_models import RunNotFoundError
from tools.tracking.wandb_records import WandbLogError, find_run_logs, iter_record_bytes, read_offline_run

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LoggedRuns]]:
    artifacts = tmp_path_factory.mktemp("artifacts")
    with offline_tracking(artifacts):
        yield artifacts, log_runs()


@pytest.fixture
def store(logged: tuple[Path, LoggedRuns], monkeypatch: pytest.MonkeyPatch) -> LocalTrackingStore:
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(logged[0]))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    opened = open_store()
    assert isinstance(opened, LocalTrackingStore)
    return opened


def test_offline_logging_writes_run_logs_and_traces_under_the_artifacts_dir(logged):
    artifacts, _ = logged
    assert len(find_run_logs(artifacts / "wandb")) == 4
    assert (artifacts / "weave" / "traces.sqlite").is_file()
    # wandb's data / cache / config folders (table staging, ...) are redirected there too, not to ~.
    assert (artifacts / "wandb" / "data" / "artifacts" / "staging").is_dir()


def test_training_history_round_trips_step_by_step(logged, store):
    _, runs = logged
    history = store.get_history(runs.train_run_id, ["train/loss", "train/learning_rate", "train/epoch"])
    expected = [
        {
            "_step": m["step"],
            "train/loss": m["loss"],
            "train/learning_rate": m["lr"],
            "train/epoch": m["epoch"],
        }
        for m in TRAIN_STEPS
    ]
    assert history.rows == expected
    assert history.total_steps == TRAIN_STEPS[-1]["step"]
    run = store.get_run(runs.train_run_id)
    assert (run.job_type, run.group, run.state) == ("train", "cycle_1", "finished")
    assert run.config == {"cycle": 1, "learning_rate": 1e-3, "lora_r": 16}
    assert run.summary["train/final_loss"] == TRAIN_STEPS[-1]["loss"]


def test_eval_summary_carries_every_report_metric_under_eval_keys(logged, store):
    _, runs = logged
    report = runs.report
    summary = store.get_run(runs.eval_run_id).summary
    for key in ("vector_mae", "vector_mae_rounded", "mse_norm", "r2", "json_valid_rate", "fallback_rate"):
        assert summary[f"eval/{key}"] == pytest.approx(getattr(report, key))
    assert summary["eval/p95_latency_ms"] == pytest.approx(report.p95_latency_ms)
    for dim in DIMS:
        assert summary[f"eval/per_dim_mae/{dim}"] == pytest.approx(report.per_dim_mae[dim])
    assert summary["eval/served_by/fallback"] == report.served_by["fallback"] > 0
    assert summary["eval/n_scored"] == report.n_scored < report.n_rows


def test_failures_table_lists_the_worst_rows_with_their_weave_trace_ids(logged, store):
    _, runs = logged
    table = store.get_table(runs.eval_run_id, "eval/top_failures")
    assert [r["index"] for r in table.rows] == [r.index for r in runs.report.top_failures]
    assert [r["row_mae"] for r in table.rows] == pytest.approx([r.mae for r in runs.report.top_failures])
    trace_ids = [r["trace_id"] for r in table.rows]
    calls = store.query_calls(CallFilters(call_ids=trace_ids))
    assert {c.id for c in calls} == set(trace_ids)
    by_id = {c.id: c for c in calls}
    for row in table.rows:
        call = by_id[row["trace_id"]]
        assert call.inputs["example"]["index"] == row["index"]
        assert call.output["scores"]["mae"] == pytest.approx(row["row_mae"])
    assert len(store.get_table(runs.eval_run_id, "eval/rows").rows) == runs.report.n_rows


def test_weave_evaluation_has_one_call_per_row_and_scores_only_scored_rows(logged, store):
    _, runs = logged
    report = runs.report
    roots = [
        c
        for c in store.query_calls(CallFilters(op_name_contains="Evaluation.evaluate", trace_roots_only=True))
        if c.display_name == "cycle0-base"
    ]
    assert len(roots) == 1
    assert roots[0].attributes["kotone"]["role"] == "base"
    rows = store.query_calls(CallFilters(parent_ids=[roots[0].id], op_name_contains="predict_and_score"))
    assert len(rows) == report.n_rows
    maes = [c.output["scores"]["mae"] for c in rows if "mae" in c.output["scores"]]
    assert len(maes) == report.n_scored
    assert sum(maes) / len(maes) == pytest.approx(report.vector_mae)
    valid = [c.output["scores"]["json_valid"] for c in rows]
    assert sum(valid) / len(valid) == pytest.approx(report.json_valid_rate)
    fallback = [c for c in rows if c.output["output"]["served_by"] == "fallback"]
    assert fallback and all("mae" not in c.output["scores"] for c in fallback)
    # Scores live on their row's call (Weave's `trace_scores=False`): no call per scorer, none lost.
    all_scored = sum(r.n_scored for r in (runs.report, runs.baseline_report, runs.test_report))
    every_row = store.query_calls(CallFilters(op_name_contains="predict_and_score"))
    assert sum("mae" in c.output["scores"] for c in every_row) == all_scored
    assert store.count_calls(CallFilters(op_name="mae")) == 0


def test_weave_client_reads_the_same_calls_back(logged, monkeypatch):
    artifacts, runs = logged
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(artifacts))
    from tools.tracking.weave_logger import weave_client

    client = weave_client()
    calls = list(client.get_calls(filter={"trace_roots_only": True}))
    names = sorted(c.display_name for c in calls if "Evaluation.evaluate" in c.op_name)
    assert names == ["baseline-tfidf_ridge", "cycle0-base", "cycle0-test-record"]


def test_eval_logging_of_120_rows_takes_a_few_seconds_at_most(logged):
    _, runs = logged
    print(f"log_evaluation, 120 rows: {runs.eval_log_s:.2f} s")
    assert runs.eval_log_s < 10


def test_list_runs_filters_by_job_type_group_and_config(logged, store):
    _, runs = logged
    evals = store.list_runs({"jobType": "eval"})
    assert {r.id for r in evals} == {runs.eval_run_id, runs.baseline_run_id, runs.test_run_id}
    base = store.list_runs({"jobType": "eval", "config.role": "base"})
    assert [r.id for r in base] == [runs.eval_run_id]
    assert [r.id for r in store.list_runs({"group": "cycle_1"})] == [runs.train_run_id]
    with pytest.raises(RunNotFoundError):
        store.get_run("doesnotexist")


def test_agent_view_hides_the_held_out_test_split(logged, monkeypatch):
    artifacts, runs = logged
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(artifacts))
    agent = open_store(agent_view=True)
    assert runs.test_run_id not in {r.id for r in agent.list_runs()}
    with pytest.raises(RunNotFoundError):
        agent.get_table(runs.test_run_id, "eval/rows")
    texts = {
        json.dumps(c.inputs) for c in agent.query_calls(CallFilters(op_name_contains="predict_and_score"))
    }
    assert not any("request 3-" in t for t in texts)
    assert open_store().count_calls() > agent.count_calls()


@pytest.mark.skipif(
    shutil.which("wandb") is None and not (Path(sys.executable).parent / "wandb").exists(),
    reason="no wandb CLI",
)
def test_record_reader_agrees_with_wandb_leet_inspect(logged):
    artifacts, runs = logged
    cli = str(Path(sys.executable).parent / "wandb")
    for path in find_run_logs(artifacts / "wandb"):
        ours = read_offline_run(path)
        result = subprocess.run(
            [cli, "leet", "inspect", "--summary", "--json", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        theirs = json.loads(result.stdout)
        assert (theirs["run_id"], theirs["name"], theirs["state"]) == (ours.run_id, ours.name, ours.state)
        assert theirs["config"] == ours.config
        expected = {k: v for k, v in ours.summary.items() if not k.startswith("_")}
        assert {k: v for k, v in theirs["summary"].items() if not k.startswith("_")} == expected
        records = subprocess.run(
            [cli, "leet", "inspect", "--json", str(path)], capture_output=True, text=True, timeout=60
        ).stdout.splitlines()
        history = [json.loads(line)["history"] for line in records if '"type":"history"' in line]
        assert len(history) == len(ours.history)
    assert runs.train_run_id


def _metric_definitions(path: Path) -> dict[str, str]:
    """name -> step metric of every `define_metric` record in a run log."""
    from wandb.proto import wandb_internal_pb2 as pb

    definitions = {}
    for raw in iter_record_bytes(path):
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "metric":
            metric = record.metric
            definitions[metric.name or metric.glob_name] = metric.step_metric
    return definitions


def test_runs_follow_wandb_conventions(logged, store):
    """train/* history on a train/step axis, tags a W&B user filters by, and no made-up entity."""
    artifacts, runs = logged
    train = store.get_run(runs.train_run_id)
    assert {"train", "cycle_1"} <= set(train.tags)
    assert {"eval", "cycle_0", "role:base", "split:valid"} <= set(store.get_run(runs.eval_run_id).tags)
    (train_log,) = [p for p in find_run_logs(artifacts / "wandb") if runs.train_run_id in p.name]
    assert _metric_definitions(train_log)["train/*"] == "train/step"
    for path in find_run_logs(artifacts / "wandb"):
        assert read_offline_run(path).entity == "", (
            "offline runs carry no entity (wandb sync picks the user's)"
        )
    assert store.entity == "offline" and train.entity == "offline"


def test_records_spanning_several_blocks_are_reassembled(tmp_path, monkeypatch):
    """A config far larger than one 32 KiB block is split into FIRST/MIDDLE/LAST chunks."""
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    from tools.tracking import start_training_run

    big = {f"key_{i}": "x" * 100 for i in range(1000)}
    run = start_training_run("big", "cycle_9", big)
    run.log_step({"step": 0, "loss": 1.5})
    run_id = run.finish()
    (path,) = find_run_logs(tmp_path / "wandb")
    assert path.stat().st_size > 3 * 32 * 1024
    parsed = read_offline_run(path)
    assert parsed.run_id == run_id and parsed.config == big
    assert parsed.history[0]["train/loss"] == 1.5


def test_a_file_that_is_not_a_record_log_is_rejected_clearly(tmp_path):
    bogus = tmp_path / "run-x.wandb"
    bogus.write_bytes(b"not a wandb file")
    with pytest.raises(WandbLogError, match="bad header"):
        list(iter_record_bytes(bogus))


OFFLINE_SCRIPT = """
import sys
from tracking_support import log_runs
runs = log_runs()
print("LOGGED", runs.eval_run_id)
"""


def _no_network_command() -> list[str] | None:
    strace = shutil.which("strace")
    unshare = shutil.which("unshare")
    if strace is None or unshare is None:
        return None
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True)
    return [unshare, "-n", strace, "-f", "-qq", "-e", "trace=connect"] if probe.returncode == 0 else None


@pytest.mark.skipif(_no_network_command() is None, reason="needs strace and unshare -n")
def test_offline_logging_makes_no_network_attempts(tmp_path):
    """Run the whole logging path in a namespace with no network and trace every connect() it makes."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'tests'}",
        **tracking_env(tmp_path / "artifacts"),
    }
    result = subprocess.run(
        [*_no_network_command(), sys.executable, "-c", OFFLINE_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert "LOGGED" in result.stdout, result.stderr[-3000:]
    connects = [line for line in result.stderr.splitlines() if "connect(" in line]
    assert any("AF_UNIX" in line for line in connects), "strace saw no connect at all (wandb-core socket)"
    remote = [
        line for line in connects if "AF_UNIX" not in line and "127.0.0.1" not in line and "::1" not in line
    ]
    assert remote == [], remote[:5]
    assert not (tmp_path / "home").exists(), "offline logging wrote to the home directory"


def test_every_weave_call_of_an_evaluation_names_its_wandb_run(logged, store):
    _, runs = logged
    (root,) = [
        c
        for c in store.query_calls(CallFilters(trace_roots_only=True))
        if c.attributes["kotone"]["run_name"] == "cycle0-base"
    ]
    calls = store.query_calls(CallFilters(trace_id=root.trace_id))
    assert len(calls) > runs.report.n_rows
    assert {c.wb_run_id for c in calls} == {f"offline/kotone-loop/{runs.eval_run_id}"}


def test_naming_the_offline_label_keeps_wandbs_default_entity(monkeypatch, tmp_path):
    """With no entity configured, the tools' "offline" label never becomes a W&B entity."""
    from tools.tracking.store import store_settings

    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path))
    for name in ("KOTONE_WANDB_ENTITY", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    assert (store_settings("offline").entity, store_settings("offline").wandb_entity) == ("offline", None)
    assert store_settings("my-team").wandb_entity == "my-team"
    monkeypatch.setenv("KOTONE_WANDB_ENTITY", "my-team")
    assert store_settings("my-team").wandb_entity == "my-team"
