"""Candidates run in parallel as Ray tasks: a local Ray instance sized to the machine by default, an existing
cluster by address (`--ray-address` / `RAY_ADDRESS`, e.g. a KubeRay head service).

Each task gets `cpus_per_task` CPUs and sets torch to that many threads. Tasks are never retried: a worker
that dies mid-candidate is reported as that candidate's crash, the other tasks finish. Workers read and
write the artifacts folder, so on a cluster it must be a volume every node mounts at the same path.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tools.core.atomic import atomic_write_text
from tools.core.paths import PROJECT_ROOT, artifacts_dir, cache_dir

# Passed to every worker: the project's code, where artifacts live, and the process settings (tracking,
# caches); never secrets beyond what the task needs.
FORWARDED_PREFIXES = ("KOTONE_", "WANDB_", "WEAVE_", "HF_", "TRANSFORMERS_", "MISTRAL_")


class TaskFailure(BaseModel):
    """A task that did not return: its exception type and message (a killed worker is one of these)."""

    kind: str
    message: str


def worker_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}
    python_path = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(python_path))
    env["TQDM_DISABLE"] = "1"
    return env


def ensure_ray(address: str | None, num_cpus: int | None) -> None:
    """Connect to `address` (or RAY_ADDRESS), else start a local instance: no dashboard, no usage stats."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    target = address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": worker_environment()}
    if target:
        ray.init(address=target, runtime_env=runtime_env, log_to_driver=False, logging_level=logging.ERROR)
        return
    real_home = os.environ.get("HOME", str(Path.home()))
    # Workers share the head's home (Ray's auth token lives there); the model cache is named explicitly.
    runtime_env["env_vars"]["KOTONE_CACHE"] = str(cache_dir())
    os.environ["HOME"] = str(_head_home())
    try:
        ray.init(
            address="local",  # a fresh instance of our own, never a cluster some other run left on the machine
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,  # the loop's own lines, not Ray's start-up notices
            runtime_env=runtime_env,
        )
    finally:
        os.environ["HOME"] = real_home


def _head_home() -> Path:
    """A home for the local instance's head processes. Ray's API server looks for a cluster config in
    $HOME/ray_bootstrap_config.yaml and, without one, asks cloud metadata services (169.254.169.254,
    metadata.google.internal) which cloud it runs on, usage stats or not. Offline means no such attempt:
    this home holds a config that says the cluster is local."""
    home = artifacts_dir() / "ray" / "home"
    home.mkdir(parents=True, exist_ok=True)
    atomic_write_text(home / "ray_bootstrap_config.yaml", "provider:\n  type: local\n")
    return home


def _with_threads(function: Callable[..., Any], threads: int) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        import torch

        torch.set_num_threads(threads)
        return function(*args)

    return run


def heartbeat_seconds(default: float = 30.0) -> float:
    """Seconds between heartbeat lines while tasks run: `KOTONE_HEARTBEAT_S` when set, else `default`."""
    raw = os.environ.get("KOTONE_HEARTBEAT_S", "")
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def run_tasks(
    function: Callable[..., Any],
    arguments: dict[str, tuple],
    *,
    cpus_per_task: int,
    address: str | None = None,
    num_cpus: int | None = None,
    on_done: Callable[[str, Any | TaskFailure], Iterable[str] | None] | None = None,
    heartbeat: Callable[[list[str]], list[str]] | None = None,
    heartbeat_s: float | None = None,
) -> dict[str, Any | TaskFailure]:
    """Run `function(*arguments[key])` for every key as a Ray task (each with `cpus_per_task` CPUs, capped by
    the cluster); results (or failures) by key, each passed to `on_done` as soon as it is in, so a killed
    driver loses no finished task. `on_done` may name keys whose tasks are no longer needed: they are
    cancelled (their worker killed) and recorded as `Cancelled`. Every `heartbeat_s` seconds (default
    `KOTONE_HEARTBEAT_S`, 30) while tasks run, the lines `heartbeat(running keys)` returns go to stderr, so
    a log shows the workers are alive, terminal or not."""
    import ray

    started_here = not ray.is_initialized()
    ensure_ray(address, num_cpus)
    every = heartbeat_s if heartbeat_s is not None else heartbeat_seconds()
    try:
        cpus = min(cpus_per_task, max(1, int(ray.cluster_resources().get("CPU", 1))))
        remote = ray.remote(num_cpus=cpus, max_retries=0)(_with_threads(function, cpus))
        # Named tasks: a worker shows up as `ray::kotone-<key>` in ps (and in Ray's own tools).
        pending = {remote.options(name=f"kotone-{key}").remote(*args): key for key, args in arguments.items()}
        results: dict[str, Any | TaskFailure] = {}
        next_beat = time.monotonic() + every
        while pending:
            timeout = max(next_beat - time.monotonic(), 0.0) if heartbeat is not None else None
            done, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if heartbeat is not None and time.monotonic() >= next_beat:
                for line in heartbeat(sorted(pending.values())):
                    print(line, file=sys.stderr, flush=True)
                next_beat = time.monotonic() + every
            if not done:
                continue
            key = pending.pop(done[0])
            try:
                results[key] = ray.get(done[0])
            except Exception as error:  # a task's exception or a dead worker: recorded, the others go on
                results[key] = TaskFailure(kind=type(error).__name__, message=_first_line(error))
            if on_done is not None:
                for unneeded in on_done(key, results[key]) or ():
                    _cancel(pending, unneeded, results, reason=f"not needed after {key}")
        return results
    finally:
        if started_here:
            # A local instance lives for one stage: nothing of Ray outlives the tasks it ran.
            ray.shutdown()


def _cancel(pending: dict[Any, str], key: str, results: dict[str, Any], *, reason: str) -> None:
    import ray

    for ref, name in list(pending.items()):
        if name == key:
            ray.cancel(ref, force=True)
            del pending[ref]
            results[key] = TaskFailure(kind="Cancelled", message=reason)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    cause = getattr(error, "cause", None)
    if cause is not None:
        text = f"{type(cause).__name__}: {cause}"
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:500]
