"""Candidates run in parallel as Ray tasks: a local Ray instance sized to the machine by default, an existing
cluster by address (`--ray-address` / `RAY_ADDRESS`, e.g. a KubeRay head service).

Each task gets `cpus_per_task` CPUs and sets torch to that many threads. Tasks are never retried: a worker
that dies mid-candidate is reported as that candidate's crash, the other tasks finish. Workers read and
write the artifacts folder, so on a cluster it must be a volume every node mounts at the same path.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tools.core.atomic import atomic_write_text
from tools.core.paths import PROJECT_ROOT, artifacts_dir, cache_dir
from tools.core.redaction import SECRET_NAME_MARKERS

# Passed to every worker: the project's code, where artifacts live, and the process settings (tracking,
# caches). Never a secret: training needs no API key, and Ray writes a task's environment in clear to its
# session logs (runtime_env_agent.log, world-readable) and ships it to every node of a cluster.
FORWARDED_PREFIXES = ("KOTONE_", "WANDB_", "WEAVE_", "HF_", "TRANSFORMERS_")


class TaskFailure(BaseModel):
    """A task that did not return: its exception type and message (a killed worker is one of these)."""

    kind: str
    message: str


def _is_secret(name: str) -> bool:
    return any(marker in name for marker in SECRET_NAME_MARKERS)


def worker_environment() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(FORWARDED_PREFIXES) and not _is_secret(name)
    }
    python_path = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(python_path))
    env["TQDM_DISABLE"] = "1"
    return env


def ensure_ray(address: str | None, num_cpus: int | None) -> Path | None:
    """Connect to `address` (or RAY_ADDRESS), else start a local instance: no dashboard, no usage stats, no
    secret in its processes' environment.

    Ray's gcs_server and raylet listen on every interface whatever the node address (Ray 2.60 has no
    loopback-only mode), so the local instance always runs with Ray's token authentication: its token and
    its session files (logs, sockets) live in folders only this user can read. Returns that session folder
    (to remove after `ray.shutdown()`), or None when connected to a cluster."""
    import ray

    if ray.is_initialized():
        return None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    target = address or os.environ.get("RAY_ADDRESS")
    runtime_env = {"env_vars": worker_environment()}
    if target:
        ray.init(address=target, runtime_env=runtime_env, log_to_driver=False, logging_level=logging.ERROR)
        return None
    # Ray's processes inherit the driver's environment: they start without its secrets.
    secrets = [name for name in os.environ if _is_secret(name)]
    saved = {name: os.environ.get(name) for name in ("HOME", "RAY_AUTH_MODE", *secrets)}
    for name in secrets:
        del os.environ[name]
    # Workers share the head's home (Ray's auth token lives there); the model cache is named explicitly.
    runtime_env["env_vars"]["KOTONE_CACHE"] = str(cache_dir())
    os.environ["HOME"] = str(_head_home())
    # Unset is Ray's default for a new local instance: token authentication (even where the user's shell
    # says "disabled" for some other cluster). Setting "token" after `import ray` stalls its GCS start.
    os.environ.pop("RAY_AUTH_MODE", None)
    # Ray makes its temp dir world-writable (777): it goes inside a folder of mode 700 of ours. Short paths:
    # Ray's unix sockets live there.
    session_root = Path(tempfile.mkdtemp(prefix="kotone-ray-"))
    try:
        ray.init(
            address="local",  # a fresh instance of our own, never a cluster some other run left on the machine
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,  # the loop's own lines, not Ray's start-up notices
            runtime_env=runtime_env,
            _temp_dir=str(session_root / "r"),
        )
    except BaseException:
        shutil.rmtree(session_root, ignore_errors=True)
        raise
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return session_root


def _head_home() -> Path:
    """A home for the local instance's head processes, readable by this user only (Ray's auth token is
    written to its .ray/). Ray's API server looks for a cluster config in $HOME/ray_bootstrap_config.yaml
    and, without one, asks cloud metadata services (169.254.169.254, metadata.google.internal) which cloud
    it runs on, usage stats or not. Offline means no such attempt: this home holds a config that says the
    cluster is local."""
    home = artifacts_dir() / "ray" / "home"
    (home / ".ray").mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    (home / ".ray").chmod(0o700)
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
    session_root = ensure_ray(address, num_cpus)
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
            if session_root is not None:
                shutil.rmtree(session_root, ignore_errors=True)


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
