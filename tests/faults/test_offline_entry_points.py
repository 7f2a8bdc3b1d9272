"""Issues 12.6 and 12.10: every entry point stays offline (no connect() outside this machine, traced with
strace in a namespace without network), and a tracking folder that cannot be written is an error naming
it, not a run id whose record never lands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tracking_support import log_runs, offline_tracking

from tools.core.paths import PROJECT_ROOT, cache_dir

SERVER_CLIENT = """
import asyncio, json, sys
from mcp import Client, StdioServerParameters

env, calls = json.loads(sys.argv[1]), json.loads(sys.argv[2])
params = StdioServerParameters(command=sys.executable, args=["-m", "tools.server"], env=env, cwd=sys.argv[3])

async def go():
    async with Client(params) as client:
        listed = await client.list_tools()
        print("TOOLS", len(listed.tools))
        for name, arguments in calls:
            result = await client.call_tool(name, arguments)
            print("CALLED", name, "error" if result.is_error else "ok", flush=True)

asyncio.run(go())
print("SERVED")
"""


def _traced() -> list[str] | None:
    strace, unshare = shutil.which("strace"), shutil.which("unshare")
    if strace is None or unshare is None or subprocess.run([unshare, "-n", "true"]).returncode != 0:
        return None
    return [unshare, "-n", strace, "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect"]


needs_strace = pytest.mark.skipif(_traced() is None, reason="needs strace and unshare -n")


def _bare_env(tmp_path: Path, artifacts: Path, **extra: str) -> dict[str, str]:
    """What a desktop MCP client or a fresh shell hands us: no WANDB_* / WEAVE_* settings at all."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'tests'}",
        "KOTONE_ARTIFACTS": str(artifacts),
        "KOTONE_CACHE": str(cache_dir()),
        **extra,
    }


def _run_offline(command: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*_traced(), *command], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=timeout
    )
    connects = [line for line in result.stderr.splitlines() if "connect(" in line]
    remote = [
        line for line in connects if "AF_UNIX" not in line and "127.0.0.1" not in line and "::1" not in line
    ]
    assert remote == [], remote[:5]
    return result


@needs_strace
def test_the_standalone_server_makes_no_network_attempt(tmp_path):
    artifacts = tmp_path / "artifacts"
    with offline_tracking(artifacts):
        runs = log_runs()
        from tools.tracking import tracking_settings

        where = {"entity_name": tracking_settings().entity, "project_name": tracking_settings().project}
    calls = [
        ["get_eval_snapshot_tool", {}],
        ["get_cycle_history_tool", {}],
        ["count_weave_traces_tool", where],
        ["query_weave_traces_tool", {**where, "limit": 3}],
        ["summarize_evaluation_tool", where],
        ["get_run_history_tool", {**where, "run_id": runs.train_run_id}],
        ["compare_runs_tool", {**where, "run_ids": [runs.eval_run_id, runs.baseline_run_id]}],
    ]
    env = _bare_env(tmp_path, artifacts)
    result = _run_offline(
        [sys.executable, "-c", SERVER_CLIENT, json.dumps(env), json.dumps(calls), str(PROJECT_ROOT)], env
    )
    assert "SERVED" in result.stdout, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("CALLED") == len(calls)
    assert not (tmp_path / "home").exists(), "the server wrote to the home directory"


@needs_strace
def test_evaluate_makes_no_network_attempt(tmp_path, tiny_base_model):
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "tools.evaluate", "--base-model", str(tiny_base_model)]
    command += ["--limit", "4", "--decoder", "skeleton", "--out", str(out)]
    result = _run_offline(command, _bare_env(tmp_path, tmp_path / "artifacts"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 3 and not any(":" in name or "/" in name for name in written), written


@needs_strace
@pytest.mark.slow
def test_a_loop_cycle_and_the_report_make_no_network_attempt(tmp_path, tiny_base_model):
    artifacts = tmp_path / "artifacts"
    env = _bare_env(
        tmp_path,
        artifacts,
        KOTONE_BASE_MODEL=str(tiny_base_model),
        KOTONE_PLANNER="offline",
        KOTONE_TEACHER="offline",
        KOTONE_MAX_EVAL_ROWS="16",
        KOTONE_REPLAY_SAMPLE_ROWS="16",
        KOTONE_MAX_TRAIN_ROWS="64",
        KOTONE_STUDENT_OPTIONS='{"layers_kept": 2, "lora_layers": 1}',
    )
    loop = _run_offline([sys.executable, "-m", "loop.run", "--cycles", "1"], env, timeout=1800)
    assert loop.returncode == 0, loop.stdout + loop.stderr[-3000:]
    assert (artifacts / "loop" / "cycle_1" / "decision.json").is_file()
    report = _run_offline([sys.executable, "-m", "loop.report"], env)
    assert report.returncode == 0, report.stdout + report.stderr[-3000:]


def test_a_tracking_folder_that_cannot_be_written_is_an_error_naming_it(tmp_path, monkeypatch):
    from tools.tracking.env import TrackingWriteError, configure_tracking

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "wandb").write_text("a file where the wandb folder should be")
    with (
        offline_tracking(artifacts),
        pytest.raises(TrackingWriteError, match=f"cannot write to {artifacts / 'wandb'}"),
    ):
        configure_tracking()


def _can_mount_read_only() -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind -o ro / /mnt"], capture_output=True)
    return shutil.which("unshare") is not None and probe.returncode == 0


TRAIN_RUN = """
from tools.tracking import start_training_run
run = start_training_run("probe", "cycle_1", {"cycle": 1})
run.log_step({"step": 1, "loss": 1.0})
print("RUN", run.finish())
"""


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs unshare -m and mount (root)")
def test_a_read_only_wandb_folder_stops_the_training_run_with_its_name(tmp_path):
    """As the train stage does it: a read-only W&B folder (mounted read-only, so it holds even for root)."""
    artifacts = tmp_path / "artifacts"
    wandb_dir = artifacts / "wandb"
    wandb_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KOTONE_", "WANDB_"))}
    script = f"mount --bind -o ro {wandb_dir} {wandb_dir} && exec {sys.executable} -c '{TRAIN_RUN}'"
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**env, "KOTONE_ARTIFACTS": str(artifacts), "KOTONE_TRACKING": "offline"},
        timeout=120,
    )
    assert result.returncode != 0 and "RUN" not in result.stdout, result.stdout
    assert f"TrackingWriteError: tracking cannot write to {wandb_dir}: Read-only file system" in result.stderr
