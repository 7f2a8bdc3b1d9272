"""One call logs an evaluation everywhere: Weave traces first (so the W&B tables carry trace ids)."""

from __future__ import annotations

from typing import Any

from tools.evaluation.metrics import EvalReport
from tools.tracking.wandb_logger import log_eval_run, new_run_id
from tools.tracking.weave_logger import trace_evaluation


def log_evaluation(report: EvalReport, *, name: str, group: str, config: dict[str, Any]) -> str:
    """Trace the rows to Weave, then log a wandb eval run whose tables point at the traces; returns the run id.

    The run id is chosen first, so every Weave call of the evaluation carries it as `wb_run_id`.

    `config` should carry what identifies the run for the loop (cycle, role: "base" / "baseline" /
    "candidate" / "test_record", split, ...); it is stored as the wandb run config, and its scalar
    values as the Weave evaluation's `kotone` attributes. Runs of a held-out split (`split: "test"`
    or `role: "test_record"`) are hidden from the agent's MCP tools.
    """
    scalars = {k: v for k, v in config.items() if isinstance(v, str | int | float | bool) or v is None}
    run_id = new_run_id()
    traces = trace_evaluation(report, name=name, attributes={"group": group, **scalars}, wb_run_id=run_id)
    return log_eval_run(
        report,
        name=name,
        group=group,
        config=config,
        trace_ids=traces.row_call_ids,
        evaluation_call_id=traces.evaluation_call_id,
        run_id=run_id,
    )
