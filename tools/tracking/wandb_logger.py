"""W&B runs for training and evaluation (offline record logs by default, W&B cloud when online)."""

from __future__ import annotations

import json
import secrets
import string
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.core.schema import DIMS
from tools.evaluation.metrics import EvalReport, RowResult
from tools.tracking.env import TrackingSettings, configure_tracking
from tools.tracking.wandb_records import has_exit_record

if TYPE_CHECKING:
    import wandb.sdk.wandb_run

FAILURES_TABLE_KEY = "eval/top_failures"
ROWS_TABLE_KEY = "eval/rows"
ROW_TABLE_COLUMNS = [
    "index",
    "request_text",
    "source_type",
    "target",
    "prediction",
    "row_mae",
    "row_mae_rounded",
    "json_valid",
    "served_by",
    "latency_ms",
    "trace_id",
]


# What each optimizer step may report (the trainers' `on_step` dict) -> its W&B history key.
TRAIN_STEP_KEYS = {"loss": "train/loss", "lr": "train/learning_rate", "epoch": "train/epoch"}
TRAIN_STEP_METRIC = "train/step"
_TAGGED_CONFIG = ("role", "split", "student", "verdict")


def new_run_id() -> str:
    """A W&B run id (8 base-36 characters, as wandb makes them) chosen before the run starts, so the Weave
    calls logged first can point at it."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def run_tags(job_type: str, config: dict[str, Any]) -> list[str]:
    """Tags a W&B user filters by: the cycle, the job, and the role / split / student / verdict when known."""
    tags = [job_type]
    if config.get("cycle") is not None:
        tags.append(f"cycle_{config['cycle']}")
    tags += [f"{key}:{config[key]}" for key in _TAGGED_CONFIG if config.get(key) not in (None, "")]
    return [tag[:64] for tag in tags]


def _init_run(
    settings: TrackingSettings,
    *,
    name: str,
    group: str,
    job_type: str,
    config: dict,
    run_id: str | None = None,
) -> Any:
    import wandb

    return wandb.init(
        entity=settings.wandb_entity,
        project=settings.project,
        id=run_id,
        name=name,
        group=group,
        job_type=job_type,
        config=config,
        tags=run_tags(job_type, config),
        mode=settings.mode,
        dir=str(settings.wandb_dir),
        reinit="create_new",
        settings=wandb.Settings(console="off", save_code=False, x_disable_stats=True, x_disable_meta=True),
    )


def finish_run(run: Any, settings: TrackingSettings, timeout_s: float = 60.0) -> str:
    """Finish the run; offline, also wait until its record log is complete on disk.

    wandb 0.31 can return from `finish()` before wandb-core has written the log (seen on the first
    run of a process), and the readers (tracking store, MCP server) read that file right after.
    """
    run.finish()
    if settings.mode == "offline":
        log_path = Path(run.settings.sync_file)
        deadline = time.monotonic() + timeout_s
        while not (log_path.is_file() and has_exit_record(log_path)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"wandb did not finish writing {log_path} within {timeout_s:.0f} s")
            time.sleep(0.02)
    return run.id


class TrainingRunLogger:
    """One training run: `log_step` per optimizer step, `finish` once with the final summary."""

    def __init__(self, run: wandb.sdk.wandb_run.Run, settings: TrackingSettings):
        self._run = run
        self._settings = settings
        run.define_metric(TRAIN_STEP_METRIC)
        run.define_metric("train/*", step_metric=TRAIN_STEP_METRIC)
        run.define_metric(TRAIN_STEP_KEYS["loss"], summary="min")

    @property
    def run_id(self) -> str:
        return self._run.id

    def log_step(self, metrics: dict[str, Any]) -> None:
        """Log one optimizer step: the trainers' {"step", "loss", "lr", "epoch"} (any subset) become
        `train/step`, `train/loss`, `train/learning_rate`, `train/epoch`; other keys keep a `train/` prefix."""
        values = dict(metrics)
        step = values.pop("step", None)
        logged = {
            TRAIN_STEP_KEYS.get(key, key if key.startswith("train/") else f"train/{key}"): value
            for key, value in values.items()
        }
        if step is not None:
            logged[TRAIN_STEP_METRIC] = int(step)
        self._run.log(logged, step=None if step is None else int(step))

    def finish(self, summary: dict[str, Any] | None = None) -> str:
        if summary:
            self._run.summary.update(summary)
        return finish_run(self._run, self._settings)


def start_training_run(name: str, group: str, config: dict[str, Any]) -> TrainingRunLogger:
    settings = configure_tracking()
    run = _init_run(settings, name=name, group=group, job_type="train", config=config)
    return TrainingRunLogger(run, settings)


def eval_summary(report: EvalReport) -> dict[str, Any]:
    """The `eval/` summary keys of one report (same names as the original project)."""
    summary: dict[str, Any] = {
        f"eval/{key}": getattr(report, key)
        for key in (
            "vector_mae",
            "vector_mae_rounded",
            "mse_norm",
            "r2",
            "json_valid_rate",
            "fallback_rate",
            "p50_latency_ms",
            "p95_latency_ms",
            "n_rows",
            "n_scored",
        )
    }
    summary.update({f"eval/per_dim_mae/{d}": report.per_dim_mae.get(d) for d in DIMS})
    summary.update({f"eval/per_dim_mae_rounded/{d}": report.per_dim_mae_rounded.get(d) for d in DIMS})
    summary.update({f"eval/served_by/{k}": v for k, v in report.served_by.items()})
    for source_type, metrics in report.by_source_type.items():
        summary[f"eval/by_source_type/{source_type}/vector_mae"] = metrics.vector_mae
        summary[f"eval/by_source_type/{source_type}/n_scored"] = metrics.n_scored
    return {k: v for k, v in summary.items() if v is not None}


def _table_row(row: RowResult, trace_id: str | None) -> list[Any]:
    return [
        row.index,
        row.request_text,
        row.source_type,
        json.dumps(row.target),
        None if row.prediction is None else json.dumps(row.prediction),
        row.mae,
        row.mae_rounded,
        row.json_valid,
        row.served_by,
        row.latency_ms,
        trace_id,
    ]


def log_eval_run(
    report: EvalReport,
    *,
    name: str,
    group: str,
    config: dict[str, Any],
    trace_ids: dict[int, str],
    evaluation_call_id: str | None,
    run_id: str | None = None,
) -> str:
    """A wandb run (job_type "eval"): config, `eval/` summary, tables of the top failures and all rows.

    `run_id` fixes the run's id in advance (the Weave evaluation logged before it carries that id)."""
    import wandb

    settings = configure_tracking()
    run_config = {
        "predictor": report.predictor,
        "decoder": report.decoder,
        "dataset": report.dataset,
        "data_hash": report.data_hash,
        **config,
    }
    run = _init_run(settings, name=name, group=group, job_type="eval", config=run_config, run_id=run_id)
    failures = wandb.Table(
        columns=ROW_TABLE_COLUMNS, data=[_table_row(r, trace_ids.get(r.index)) for r in report.top_failures]
    )
    rows = wandb.Table(
        columns=ROW_TABLE_COLUMNS, data=[_table_row(r, trace_ids.get(r.index)) for r in report.rows]
    )
    run.log({FAILURES_TABLE_KEY: failures, ROWS_TABLE_KEY: rows}, step=0)
    summary = eval_summary(report)
    if evaluation_call_id is not None:
        summary["weave/evaluation_call_id"] = evaluation_call_id
    run.summary.update(summary)
    return finish_run(run, settings)
