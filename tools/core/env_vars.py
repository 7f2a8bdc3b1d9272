"""The `KOTONE_*` variables that are not loop settings: where things live, tracking, the MCP endpoint, setup.

Loop settings (`KOTONE_<FIELD>`, `KOTONE_GATE__<FIELD>`) are generated from `loop.config.LoopConfig`; any
other `KOTONE_*` name must be listed here (or name a secret) or `loop.run` refuses it as a likely typo.
Every command's `--help` and the README table are built from / checked against this list.
"""

from __future__ import annotations

from collections.abc import Iterable

from tools.core.redaction import is_secret_name

PROCESS_ENV_VARS: dict[str, str] = {
    "KOTONE_ARTIFACTS": "folder every run writes to (default ./artifacts)",
    "KOTONE_CACHE": "converted base models, shared by every artifacts folder (default ~/.cache/kotone-loop)",
    "KOTONE_TRACKING": "offline (default) or online (needs WANDB_API_KEY)",
    "KOTONE_WANDB_ENTITY": "W&B entity (else WANDB_ENTITY)",
    "KOTONE_WANDB_PROJECT": "W&B project (else WANDB_PROJECT; default kotone-loop)",
    "KOTONE_MCP": "agent endpoint: stdio (default), wandb (hosted W&B MCP) or an http URL on 127.0.0.1",
    "KOTONE_MCP_HTTP_TOKEN": "bearer token of `python -m tools.server --http` (generated and printed when unset)",
    "KOTONE_PROGRESS_EVERY": "training / evaluation steps between progress lines when output is not a terminal",
    "KOTONE_HEARTBEAT_S": "seconds between heartbeat lines while candidates train (each member's step and loss; default 30)",
    "KOTONE_TORCH_INDEX": "scripts/setup.sh: pip index for torch (default PyTorch's CPU wheels)",
}


def is_process_env_var(name: str) -> bool:
    """A `KOTONE_*` name that is not a loop setting: listed above, or one that holds a secret."""
    return name in PROCESS_ENV_VARS or is_secret_name(name)


def describe(names: Iterable[str] | None = None, extra: dict[str, str] | None = None) -> str:
    """`NAME  description` lines for a `--help` epilog: the process variables `names` (all by default),
    then `extra` ones (e.g. secrets) in the same columns."""
    rows = {name: PROCESS_ENV_VARS[name] for name in (PROCESS_ENV_VARS if names is None else names)}
    rows |= extra or {}
    width = max(len(name) for name in rows)
    return "\n".join(f"  {name:<{width}}  {text}" for name, text in rows.items())
