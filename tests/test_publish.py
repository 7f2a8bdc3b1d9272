"""`loop.publish`: the plan it prints, and what it sends, recorded without a network.

The real code paths run: model artifacts are logged by wandb in offline mode (read back from the run log),
the runs' upload is the exact `wandb sync` command run with wandb's own `--dry-run`, and the Weave
re-logging goes through Weave's real client into a separate local trace server standing for the
user's project.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tracking_support import LoggedRuns, log_runs, offline_tracking

from agent.transcript import ToolCallRecord, Transcript, utc_now
from loop.publish import (
    KINDS,
    MODEL_ARTIFACT,
    REGISTRY_COLLECTION,
    Item,
    Target,
    build_plan,
    champion_source,
    main,
    publish,
    sync_command,
)
from loop.registry import CandidateRecord, metric_summary, promote
from tools.core.contracts import CycleHistoryEntry, ModelRecord
from tools.evaluation.baselines import TextBaseline
from tools.tracking.call_filters import CallFilters
from tools.tracking.env import TrackingSettings
from tools.tracking.local_store import LocalTrackingStore
from tools.tracking.wandb_records import find_run_logs, iter_record_bytes

TARGET = Target(entity="team", project="kotone-published")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def register(artifacts: Path, runs: LoggedRuns, cycle: int, report_rows: Any) -> ModelRecord:
    """A cycle's winner in the registry, promoted as the loop promotes (`loop.registry.promote`)."""
    entry = artifacts / "registry" / f"cycle_{cycle}" / "ridge"
    TextBaseline("train-median").fit(report_rows).save(entry / "student")
    record = ModelRecord(
        cycle=cycle,
        candidate="ridge",
        student_path=f"registry/cycle_{cycle}/ridge/student",
        decoder="baseline",
        base_model="bundled",
        eval_run_id=runs.eval_run_id,
        metrics=metric_summary(runs.report),
    )
    (entry / "record.json").write_text(CandidateRecord(record=record, promoted=False).model_dump_json())
    (entry / "eval_valid.json").write_text(runs.report.model_dump_json())
    return promote(cycle, "ridge")


def rollback_with_the_command(artifacts: Path, cycle: int) -> None:
    """`loop.run --rollback CYCLE`, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "loop.run", "--rollback", str(cycle)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "KOTONE_ARTIFACTS": str(artifacts)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"champion restored: cycle {cycle}" in result.stdout


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LoggedRuns]]:
    """A night offline: runs and evaluations logged; cycle 0's champion (history status `baseline`), cycles
    1 and 2 promoted, then `loop.run --rollback 1`; and cycle 1's agent transcript."""
    from tools.core.schema import ParamVector, SourceType, TrainingRow

    artifacts = tmp_path_factory.mktemp("artifacts")
    with offline_tracking(artifacts):
        runs = log_runs()
        rows = [
            TrainingRow(
                request_text=f"song {i}",
                source_type=SourceType.request_text,
                target=ParamVector.from_list([i % 11] * 6),
            )
            for i in range(4)
        ]
        for cycle, fitted_on in ((0, rows), (1, rows[:2]), (2, rows[:3])):  # three different students
            register(artifacts, runs, cycle, fitted_on)
        loop = artifacts / "loop"
        (loop / "cycle_1").mkdir(parents=True)
        history = [
            CycleHistoryEntry(cycle=c, status=status, description="", started_at="2026-11-29T22:00:00Z")
            for c, status in ((0, "baseline"), (1, "promoted"), (2, "promoted"))
        ]
        (loop / "history.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in history))
        (loop / "cycle_1" / "eval_candidate.json").write_text(
            runs.report.model_dump_json()
        )  # = registry copy
        transcript = Transcript()
        transcript.record_tool_call(
            ToolCallRecord(
                name="get_eval_snapshot_tool",
                arguments={},
                result={"champion": None},
                is_error=False,
                latency_ms=3.0,
                started_at=utc_now(),
                endpoint="kotone-stdio",
            )
        )
        transcript.record_model_message("assistant", "focus on warmth")
        transcript.write(loop / "cycle_1")
    rollback_with_the_command(artifacts, 1)
    yield artifacts, runs


@pytest.fixture
def artifacts(night: tuple[Path, LoggedRuns], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(night[0]))
    monkeypatch.setenv("KOTONE_TRACKING", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    return night[0]


def test_dry_run_prints_one_line_per_item_and_sends_nothing(artifacts, night, capsys):
    runs = night[1]
    before = sorted(p.name for p in find_run_logs(artifacts / "wandb"))
    assert main(["--dry-run", "--entity", "team", "--project", "kotone-published"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "publish to team/kotone-published: 11 item(s)"
    lines = out[1:]
    kinds = [line.split()[0] for line in lines]
    # one evaluation: the report's four copies (cycle folder, three registry entries) are one
    assert kinds == ["model"] * 4 + ["run"] * 4 + ["registry"] + ["evaluation"] + ["trace"]
    # in the order each became champion; the rollback (and only it) logs cycle 1 again
    assert "from cycle 0 (ridge, first champion) aliases cycle-0, champion" in lines[0]
    assert "from cycle 1 (ridge, promoted) aliases cycle-1, champion" in lines[1]
    assert "from cycle 2 (ridge, promoted) aliases cycle-2, champion" in lines[2]
    assert "from cycle 1 (ridge, rollback: champion again) aliases champion" in lines[3]
    assert (
        "kotone-student:champion (cycle 1, ridge) linked to wandb-registry-model/kotone-student" in lines[8]
    )
    assert any("cycle1-train (train, cycle_1)" in line for line in lines)
    assert any(
        f"(linked to run {runs.eval_run_id})" in line for line in lines if line.startswith("evaluation")
    )
    assert f"cycle 1 agent: 2 events  (linked to run {runs.train_run_id})" in lines[-1]
    assert all("to send" in line for line in lines)
    assert sorted(p.name for p in find_run_logs(artifacts / "wandb")) == before
    assert not (artifacts / "publish").exists()


def test_publishing_needs_a_key(artifacts, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(artifacts / "nohome"))
    assert main(["--project", "kotone-published"]) == 2
    assert "WANDB_API_KEY" in capsys.readouterr().err


def artifact_records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    records = []
    for raw in iter_record_bytes(path):
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "artifact":
            records.append(record.artifact)
    return records


def test_publish_sends_models_runs_evaluations_and_traces(artifacts, night, tmp_path):
    from weave.trace.weave_client import WeaveClient

    from tools.tracking.weave_sqlite import SqliteTraceServer

    runs = night[1]
    remote_db = tmp_path / "remote.sqlite"
    synced: list[str] = []

    def dry_run_sync(items: list[Item], target: Target) -> None:
        """The exact sync command, run by wandb itself with --dry-run (it lists what it would upload)."""
        result = subprocess.run(
            [*sync_command([i.payload["dir"] for i in items], target), "--dry-run"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        synced.extend(re.findall(r"run-(\w+)\.wandb", result.stdout + result.stderr))

    def remote_client() -> Any:
        return WeaveClient(
            "team", "kotone-published", SqliteTraceServer(remote_db), ensure_project_exists=False
        )

    linked: list[tuple[str, str]] = []

    def recorded_link(item: Item, target: Target) -> None:
        """What `link_in_registry` asks W&B's public API, checked with wandb's own path validator (linking
        needs a W&B server: an offline run cannot link)."""
        from wandb.sdk.artifacts._validators import ArtifactPath

        assert ArtifactPath.from_str(REGISTRY_COLLECTION).is_registry_path()
        linked.append((champion_source(target, "unused-default"), REGISTRY_COLLECTION))

    plan = build_plan(KINDS)
    sent = publish(
        TARGET, plan, weave_client=remote_client, sync=dry_run_sync, link=recorded_link, say=lambda _: None
    )
    assert sent == len(plan) + 1  # and the run that carries the model artifacts

    (models_log,) = [
        p
        for p in find_run_logs(artifacts / "wandb")
        if p.parent.name not in {i.payload.get("dir", "").rsplit("/", 1)[-1] for i in plan}
    ]
    logged = artifact_records(models_log)
    # wandb itself adds "latest" to every logged version
    assert [(a.name, a.type, set(a.aliases) - {"latest"}) for a in logged] == [
        (MODEL_ARTIFACT, "model", {"cycle-0", "champion"}),
        (MODEL_ARTIFACT, "model", {"cycle-1", "champion"}),
        (MODEL_ARTIFACT, "model", {"cycle-2", "champion"}),
        (MODEL_ARTIFACT, "model", {"champion"}),
    ]
    assert [json.loads(a.metadata)["cycle"] for a in logged] == [0, 1, 2, 1]
    digests = [a.digest for a in logged]
    assert len(set(digests[:3])) == 3 and digests[3] == digests[1], "the rollback re-points the alias"
    # W&B numbers versions by first upload of each content: v0 = cycle 0, v1 = cycle 1, v2 = cycle 2, and
    # the last `champion` alias lands on v1, the current champion.
    assert ModelRecord.model_validate_json((artifacts / "registry" / "champion.json").read_text()).cycle == 1
    assert linked == [
        ("team/kotone-published/kotone-student:champion", "wandb-registry-model/kotone-student")
    ]
    assert set(synced) == {p.stem.removeprefix("run-") for p in find_run_logs(artifacts / "wandb")}

    remote = LocalTrackingStore(
        TrackingSettings(
            mode="offline",
            entity="team",
            wandb_entity="team",
            project="kotone-published",
            wandb_dir=tmp_path / "none",
            weave_db=remote_db,
        )
    )
    evaluations = remote.query_calls(
        CallFilters(op_name_contains="Evaluation.evaluate", trace_roots_only=True)
    )
    assert [e.display_name for e in evaluations] == ["cycle0-base"]
    rows = remote.query_calls(
        CallFilters(
            op_name_contains="predict_and_score", wb_run_id=f"team/kotone-published/{runs.eval_run_id}"
        )
    )
    assert len(rows) == runs.report.n_rows
    (agent,) = remote.query_calls(CallFilters(op_name="agent_cycle"))
    assert agent.wb_run_id == f"team/kotone-published/{runs.train_run_id}"
    assert agent.attributes["kotone"]["cycle"] == 1

    again = publish(
        TARGET,
        build_plan(KINDS),
        weave_client=remote_client,
        sync=dry_run_sync,
        link=recorded_link,
        say=lambda _: None,
    )
    assert again == 0, "the ledger remembers what was sent"
