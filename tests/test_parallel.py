"""Candidates as Ray tasks: on a Ray cluster the test starts itself on 127.0.0.1 (`ray start --head`), in
parallel, with a killed worker costing only its own task."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from loop.parallel import TaskFailure, run_tasks

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ProbeCluster:
    address: str
    head_pid: int

    def worker_pids(self, task: str) -> list[int]:
        """Workers running `task` in THIS cluster only (descendants of its head): a user's own loop on the
        same machine runs tasks of the same names, and a test never signals what it did not start."""
        pids = []
        for process in psutil.Process(self.head_pid).children(recursive=True):
            try:
                if f"ray::kotone-{task}" in " ".join(process.cmdline()):
                    pids.append(process.pid)
            except psutil.NoSuchProcess:
                continue
        return pids


# The test's cluster runs without Ray's token authentication (a cluster with it needs RAY_AUTH_MODE=token and
# its token on the loop's machine, see README).
CLUSTER_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[ProbeCluster]:
    """A one-node Ray cluster with 2 CPUs on loopback, stopped with everything it started."""
    port = _free_port()
    env = {**os.environ, **CLUSTER_ENV}
    saved = {k: os.environ.get(k) for k in CLUSTER_ENV}
    os.environ.update(CLUSTER_ENV)
    head = subprocess.Popen(
        [
            str(RAY),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [str(RAY), "status", f"--address={address}"], env=env, capture_output=True, text=True
        )
        if probe.returncode == 0:
            break
        time.sleep(1)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("the test's Ray cluster did not come up")
    yield ProbeCluster(address, head.pid)
    os.killpg(head.pid, signal.SIGKILL)  # the whole cluster: head, raylet, workers (one process group)
    head.wait(timeout=60)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def sleep_then_report(seconds: float, fail: bool) -> dict:
    import torch

    start = time.time()
    time.sleep(seconds)
    if fail:
        raise RuntimeError("this task fails on purpose")
    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "start": start, "end": time.time()}


@pytest.fixture(autouse=True)
def _pickle_this_module_by_value() -> None:
    """Workers cannot import the test module; its functions travel by value."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_tasks_run_in_parallel_each_with_its_cpus_and_a_failure_stays_its_own(cluster):
    results = run_tasks(
        sleep_then_report,
        {"a": (3.0, False), "b": (3.0, False), "c": (0.0, True)},
        cpus_per_task=1,
        address=cluster.address,
    )
    a, b = results["a"], results["b"]
    assert a["pid"] != b["pid"] and a["threads"] == b["threads"] == 1
    assert a["start"] < b["end"] and b["start"] < a["end"]  # they ran at the same time, on the two CPUs
    assert isinstance(results["c"], TaskFailure) and "on purpose" in results["c"].message


def test_a_worker_killed_mid_task_fails_that_task_only(cluster):
    finished: list[str] = []

    def kill_a_when_it_runs() -> None:
        deadline = time.monotonic() + 60
        while not cluster.worker_pids("a") and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in cluster.worker_pids("a"):
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_a_when_it_runs)
    killer.start()
    results = run_tasks(
        sleep_then_report,
        {"a": (20.0, False), "b": (4.0, False)},
        cpus_per_task=1,
        address=cluster.address,
        on_done=lambda key, _: finished.append(key),
    )
    killer.join()
    assert isinstance(results["a"], TaskFailure), results["a"]
    assert results["b"]["pid"] > 0
    assert sorted(finished) == ["a", "b"]


@pytest.mark.slow
def test_a_cycle_on_the_cluster_survives_a_killed_candidate_worker(cluster, tmp_path, tiny_base_model):
    """K=2 on the test's cluster: the LM candidate's worker is killed mid-training; it is recorded as crashed,
    the other candidate is trained, evaluated and gated, and the cycle completes."""
    from loop_runs import history_lines, loop_env, read_json, start_loop

    artifacts = tmp_path / "artifacts"
    env = loop_env(
        artifacts, tiny_base_model, KOTONE_CANDIDATES="2", RAY_ADDRESS=cluster.address, **CLUSTER_ENV
    )
    process = start_loop(env, "--cycles", "1")
    deadline = time.monotonic() + 600
    while not cluster.worker_pids("stack") and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    lm = artifacts / "loop" / "cycle_1" / "candidates" / "stack" / "student" / "components" / "lm"
    while (
        not any(lm.glob("member_*/checkpoint.pt")) and time.monotonic() < deadline and process.poll() is None
    ):
        time.sleep(0.1)
    for pid in cluster.worker_pids("stack"):
        os.kill(pid, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stdout + stderr
    cycle1 = artifacts / "loop" / "cycle_1" / "candidates"
    assert read_json(cycle1 / "stack" / "training.json")["status"] == "crashed"
    assert read_json(cycle1 / "stack-cheap" / "training.json")["status"] == "trained"
    assert (cycle1 / "stack-cheap" / "eval_valid.json").is_file()
    outcome = {c["name"]: c["status"] for c in history_lines(artifacts)[-1]["candidates"]}
    assert outcome["stack"] == "crashed" and outcome["stack-cheap"] in ("promoted", "rejected")
    assert json.loads((artifacts / "loop" / "cycle_1" / "state.json").read_text())["finished_at"]


def report_steps(folder: str, steps: int, every_s: float) -> int:
    """A worker that trains for a while: one progress record per step, as a member's training writes."""
    from loop.heartbeat import ProgressWriter

    writer = ProgressWriter(Path(folder), member=0, every_s=0.0)
    for step in range(1, steps + 1):
        writer({"step": step, "loss": 1.0 / step, "member": 0})
        time.sleep(every_s)
    return steps


def test_the_driver_log_shows_a_heartbeat_of_each_running_task_when_output_is_a_file(
    cluster, tmp_path, capfd
):
    from loop.heartbeat import progress_line

    folders = {key: tmp_path / key for key in ("stack/member_0", "lm-only/member_0")}
    results = run_tasks(
        report_steps,
        {key: (str(folder), 12, 0.25) for key, folder in folders.items()},
        cpus_per_task=1,
        address=cluster.address,
        heartbeat=lambda running: [progress_line(key, folders[key], member=0) for key in running],
        heartbeat_s=0.5,
    )
    assert results == {"stack/member_0": 12, "lm-only/member_0": 12}
    beats = [line for line in capfd.readouterr().err.splitlines() if "heartbeat" in line]
    assert len(beats) >= 4, beats
    assert any(
        line.startswith("  heartbeat stack/member_0: member 0 step ") and " loss " in line for line in beats
    )
    assert "\r" not in "".join(beats)


def test_tasks_named_by_on_done_are_cancelled_and_the_rest_finish(cluster):
    began = time.monotonic()
    results = run_tasks(
        sleep_then_report,
        {"fast": (1.0, False), "slow": (60.0, False)},
        cpus_per_task=1,
        address=cluster.address,
        on_done=lambda key, _: ["slow"] if key == "fast" else [],
    )
    assert results["fast"]["pid"] > 0
    assert isinstance(results["slow"], TaskFailure) and results["slow"].kind == "Cancelled"
    assert time.monotonic() - began < 45


FAKE_SECRETS = {
    "MISTRAL_API_KEY": "fake-mistral-key-5e1d9c",
    "WANDB_API_KEY": "fake-wandb-key-77a0b3",
    "KOTONE_MCP_HTTP_TOKEN": "fake-mcp-token-c4f210",
}


def environment_and_gcs() -> dict:
    import ray

    return {"environ": dict(os.environ), "gcs": ray.get_runtime_context().gcs_address}


def _files_containing(folder: Path, needles: list[str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_socket():
            text = path.read_bytes()
            found += [f"{path}: {n}" for n in needles if n.encode() in text]
    return found


def _connect_without_token(gcs: str, home: Path) -> subprocess.CompletedProcess:
    """Another user's process on this network: no token, asks for a cluster without authentication."""
    code = f"import ray; ray.init(address={gcs!r}, log_to_driver=False); print('connected')"
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_the_local_instance_holds_no_secret_refuses_strangers_and_leaves_nothing(tmp_path, monkeypatch):
    """The loop's private Ray instance: no API key reaches its processes, its tasks or its session logs
    (Ray logs a task's runtime env in clear); its files are this user's only; a client without its token
    is refused (Ray listens on every interface); nothing of it is left after the stage."""
    import tempfile

    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a user's shell set up for some other cluster
    sessions = Path(tempfile.mkdtemp(prefix="kt-", dir="/tmp"))  # Ray's socket paths must stay short
    monkeypatch.setattr(tempfile, "tempdir", str(sessions))
    seen: dict = {}

    def while_running(key: str, result: object) -> None:
        (session,) = sessions.iterdir()
        seen["mode"] = session.stat().st_mode & 0o777
        seen["leaks"] = _files_containing(session, list(FAKE_SECRETS.values()))
        seen["stranger"] = _connect_without_token(result["gcs"], tmp_path / "stranger")

    results = run_tasks(
        environment_and_gcs, {"probe": ()}, cpus_per_task=1, num_cpus=1, on_done=while_running
    )

    assert not set(FAKE_SECRETS) & set(results["probe"]["environ"])
    assert seen["leaks"] == []
    assert seen["mode"] == 0o700
    home_ray = tmp_path / "artifacts" / "ray" / "home" / ".ray"
    assert home_ray.stat().st_mode & 0o777 == 0o700
    assert seen["stranger"].returncode != 0 and "connected" not in seen["stranger"].stdout
    assert list(sessions.iterdir()) == []
    sessions.rmdir()
    assert os.environ["MISTRAL_API_KEY"] == FAKE_SECRETS["MISTRAL_API_KEY"]  # the driver keeps its own
    assert os.environ["RAY_AUTH_MODE"] == "disabled"
