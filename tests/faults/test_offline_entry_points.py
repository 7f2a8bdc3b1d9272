"""Issues 12.6 and 12.10: every entry point stays offline (no connect() outside this machine, traced with
strace in a namespace without network), and a tracking folder that cannot be written is an error naming
it, not a run id whose record never lands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel
from tracking_support import log_runs, offline_tracking

from tools.core.paths import PROJECT_ROOT, cache_dir
from tools.data.dataset import SHIPPED_DATA_DIR

SERVER_CLIENT = """
import asyncio, json, sys
from pathlib import Path
from mcp import Client, StdioServerParameters
from loop.state import RunLock

env, calls, root, lock_path = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
params = StdioServerParameters(command=sys.executable, args=["-m", "tools.server"], env=env, cwd=root)

async def go(token):
    async with Client(params, read_timeout_seconds=600) as client:
        listed = await client.list_tools()
        print("TOOLS", len(listed.tools))
        for name, arguments in calls:
            arguments = {k: token if v == "LOCK_TOKEN" else v for k, v in arguments.items()}
            result = await client.call_tool(name, arguments)
            print("CALLED", name, "error" if result.is_error else "ok", flush=True)

with RunLock(lock_path) as lock:
    asyncio.run(go(lock.token))
print("SERVED")
"""


def _traced() -> list[str] | None:
    """strace in a new network namespace: only its loopback (brought up: Ray talks to itself over TCP)."""
    strace, unshare, ip = shutil.which("strace"), shutil.which("unshare"), shutil.which("ip")
    if (
        None in (strace, unshare, ip)
        or subprocess.run([unshare, "-n", ip, "link", "set", "lo", "up"]).returncode
    ):
        return None
    trace = f"{ip} link set lo up && exec {strace} -f -qq --seccomp-bpf -e trace=connect"
    return [unshare, "-n", "sh", "-c", f'{trace} "$@"', "traced"]


needs_strace = pytest.mark.skipif(_traced() is None, reason="needs strace, ip and unshare -n (root)")


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


def _small_dataset(folder: Path) -> Path:
    """30 training and 8 validation rows of the shipped data: cycle 0's baselines in seconds."""
    folder.mkdir(parents=True)
    for split, n in (("train", 30), ("valid", 8)):
        lines = (SHIPPED_DATA_DIR / f"{split}.jsonl").read_text().splitlines()[:n]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _remote_connects(stderr: str) -> list[str]:
    connects = [line for line in stderr.splitlines() if "connect(" in line]
    return [
        line for line in connects if "AF_UNIX" not in line and "127.0.0.1" not in line and "::1" not in line
    ]


def _run_traced(command: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_traced(), *command], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=timeout
    )


def _run_offline(command: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    result = _run_traced(command, env, timeout)
    assert _remote_connects(result.stderr) == [], _remote_connects(result.stderr)[:5]
    return result


ENV_AFTER_HELP = """
import importlib, os, runpy, sys
how, target = sys.argv[1], sys.argv[2]
sys.argv = [target, "--help"]
try:
    if how == "-m":  # python -m MODULE
        runpy.run_module(target, run_name="__main__")
    else:  # a console script: import MODULE, call FUNCTION
        module, function = target.split(":")
        getattr(importlib.import_module(module), function)()
except SystemExit:
    pass
print("ERROR_REPORTING", os.environ.get("WANDB_ERROR_REPORTING"), os.environ.get("WANDB_MODE"))
"""
TRACKING_COMMANDS = ("tools.server", "loop.run", "tools.evaluate")
SCRIPTS = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize(
    ("how", "target"),
    [("-m", module) for module in TRACKING_COMMANDS]
    + [("script", SCRIPTS[name]) for name in ("kotone-serve", "kotone-run", "kotone-evaluate")],
)
def test_every_entry_point_sets_the_offline_environment_first(tmp_path, how, target):
    """Even `--help` leaves the process offline: wandb and weave read these settings when imported
    (weave's error reporting, for one, calls home from any process that imports it without them)."""
    env = _bare_env(tmp_path, tmp_path / "artifacts")
    result = subprocess.run(
        [sys.executable, "-c", ENV_AFTER_HELP, how, target],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )
    assert "ERROR_REPORTING false offline" in result.stdout, result.stdout + result.stderr[-2000:]


@needs_strace
@pytest.mark.slow
def test_the_standalone_server_makes_no_network_attempt(tmp_path):
    artifacts = tmp_path / "artifacts"
    with offline_tracking(artifacts):
        runs = log_runs()
        from tools.tracking import tracking_settings

        where = {"entity_name": tracking_settings().entity, "project_name": tracking_settings().project}
    # A tool that fails after weave was imported: weave's error reporting (Sentry) would call home here.
    data = _small_dataset(tmp_path / "data")
    (artifacts / "loop").mkdir(parents=True, exist_ok=True)
    (artifacts / "loop" / "config.json").write_text(
        json.dumps({"data": str(data), "base_model": str(tmp_path / "no-such-model"), "max_eval_rows": 8})
    )
    calls = [
        ["bootstrap_champion_tool", {"lock_token": "LOCK_TOKEN"}],
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
        [
            sys.executable,
            "-c",
            SERVER_CLIENT,
            json.dumps(env),
            json.dumps(calls),
            str(PROJECT_ROOT),
            str(artifacts / "loop" / ".lock"),
        ],
        env,
    )
    assert "SERVED" in result.stdout, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("CALLED") == len(calls)
    assert "CALLED bootstrap_champion_tool error" in result.stdout, result.stdout
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


class TracedLoop(BaseModel):
    artifacts: Path
    env: dict[str, str]
    returncode: int
    output: str
    remote_connects: list[str]


# Every component a cycle can reach (base model, LM members, baselines, MCP, W&B, Weave), each exercised once:
# one zero-shot decoder, one candidate (the stack, LM included), two folds, no second-seed confirmation.
SMALL_CYCLE = {
    "KOTONE_BOOTSTRAP_DECODERS": '["skeleton"]',
    "KOTONE_CANDIDATES": "1",
    "KOTONE_CV_FOLDS": "2",
    "KOTONE_LATENCY_REQUESTS": "4",
    "KOTONE_GATE__CONFIRM": "false",
}


@pytest.fixture(scope="module")
def traced_loop(tmp_path_factory, tiny_base_model) -> TracedLoop:
    """One cycle of the loop (cycle 0 first) on the tiny model, every connect() it makes traced."""
    root = tmp_path_factory.mktemp("traced_loop")
    env = _bare_env(
        root,
        root / "artifacts",
        KOTONE_BASE_MODEL=str(tiny_base_model),
        KOTONE_PLANNER="offline",
        KOTONE_TEACHER="offline",
        KOTONE_MAX_EVAL_ROWS="16",
        KOTONE_MAX_TRAIN_ROWS="64",
        KOTONE_STUDENT_OPTIONS='{"layers_kept": 2, "lora_layers": 1, "epochs": 1}',
        **SMALL_CYCLE,
    )
    result = _run_traced([sys.executable, "-m", "loop.run", "--cycles", "1"], env, timeout=1800)
    return TracedLoop(
        artifacts=root / "artifacts",
        env=env,
        returncode=result.returncode,
        output=result.stdout + result.stderr[-3000:],
        remote_connects=_remote_connects(result.stderr),
    )


@needs_strace
@pytest.mark.slow
def test_a_loop_cycle_makes_no_network_attempt(traced_loop):
    assert traced_loop.returncode == 0, traced_loop.output
    assert traced_loop.remote_connects == [], traced_loop.remote_connects[:5]


@needs_strace
@pytest.mark.slow
def test_the_report_makes_no_network_attempt(traced_loop):
    assert traced_loop.returncode == 0, traced_loop.output
    assert (traced_loop.artifacts / "loop" / "cycle_1" / "decision.json").is_file()
    report = _run_offline([sys.executable, "-m", "loop.report"], traced_loop.env)
    assert report.returncode == 0, report.stdout + report.stderr[-3000:]
    assert (traced_loop.artifacts / "loop" / "report.html").is_file()


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
