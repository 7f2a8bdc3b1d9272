"""Evaluation rows traced to Weave: the local SQLite trace server offline, W&B Weave when online.

Rows are logged with `weave.EvaluationLogger` (Weave's own imperative evaluation API for
predictions that were already computed), so the traces have the standard shape
`Evaluation.evaluate` -> `Evaluation.predict_and_score` -> `Model.predict`. A row's scores are in its
`predict_and_score` output (`trace_scores=False`: no call per scorer, which made tracing 5x slower).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

from tools.core.schema import DIMS
from tools.evaluation.metrics import EvalReport, RowResult
from tools.tracking.env import TrackingSettings, configure_tracking

_client_lock = threading.Lock()
_clients: dict[tuple[str, str], Any] = {}


class EvaluationTraces(BaseModel):
    """Ids of one traced evaluation: the root call and, per row index, its predict_and_score call."""

    evaluation_call_id: str
    row_call_ids: dict[int, str]


def weave_client(settings: TrackingSettings | None = None) -> Any:
    """The process-wide Weave client for the configured project (created once, set as Weave's global)."""
    settings = settings or configure_tracking()
    key = (settings.mode, str(settings.weave_db) if settings.mode == "offline" else settings.project_id)
    with _client_lock:
        if key not in _clients:
            _clients[key] = _make_client(settings)
        client = _clients[key]
    from weave.trace.context import weave_client_context

    if weave_client_context.get_weave_client() is not client:
        # set_weave_client_global only fills an empty slot: clear it to switch clients.
        weave_client_context.set_weave_client_global(None)
        weave_client_context.set_weave_client_global(client)
    return client


def _make_client(settings: TrackingSettings) -> Any:
    if settings.mode == "online":
        import weave

        return weave.init(
            f"{settings.wandb_entity}/{settings.project}" if settings.wandb_entity else settings.project
        )
    from weave.trace.weave_client import WeaveClient

    from tools.tracking.weave_sqlite import SqliteTraceServer

    server = SqliteTraceServer(settings.weave_db)
    return WeaveClient(settings.entity, settings.project, server, ensure_project_exists=False)


def _row_inputs(row: RowResult) -> dict[str, Any]:
    return {
        "index": row.index,
        "request_text": row.request_text,
        "source_type": row.source_type,
        "target": dict(zip(DIMS, row.target, strict=True)),
    }


def _row_output(row: RowResult) -> dict[str, Any]:
    return {
        "prediction": None if row.prediction is None else dict(zip(DIMS, row.prediction, strict=True)),
        "json_valid": row.json_valid,
        "served_by": row.served_by,
        "latency_ms": row.latency_ms,
        "abs_error": None if row.abs_error is None else dict(zip(DIMS, row.abs_error, strict=True)),
        "raw_output": row.raw_output,
        "parse_error": row.parse_error,
    }


@contextmanager
def linked_to_wandb_run(client: Any, wb_run_id: str | None) -> Iterator[None]:
    """Calls made inside carry `wb_run_id` (Weave's link from a call to its W&B run)."""
    if wb_run_id is None:
        yield
        return
    client.set_wandb_run_context(run_id=wb_run_id)
    try:
        yield
    finally:
        client.clear_wandb_run_context()


def trace_evaluation(
    report: EvalReport,
    *,
    name: str,
    attributes: dict[str, Any] | None = None,
    wb_run_id: str | None = None,
    client: Any | None = None,
) -> EvaluationTraces:
    """Trace every row of `report` as one Weave evaluation; scorers: mae, mae_rounded, json_valid.

    Rows that are not scored (unparsed or served by a fallback) carry json_valid only: they are
    traced, never scored. Every call is linked to the W&B run `wb_run_id` when given. `client`: another
    Weave project than the configured one (publishing), used as Weave's global client meanwhile.
    """
    if not report.rows:
        raise ValueError(f"evaluation {name!r} has no rows to trace")
    client = client or weave_client()
    with as_global_client(client), linked_to_wandb_run(client, wb_run_id):
        traces = _log_evaluation_rows(report, name, attributes)
    client.flush()
    return traces


@contextmanager
def as_global_client(client: Any) -> Iterator[None]:
    """Weave's own loggers (EvaluationLogger) write through the global client: make it `client` meanwhile."""
    from weave.trace.context import weave_client_context

    previous = weave_client_context.get_weave_client()
    if previous is client:
        yield
        return
    weave_client_context.set_weave_client_global(None)
    weave_client_context.set_weave_client_global(client)
    try:
        yield
    finally:
        weave_client_context.set_weave_client_global(None)
        if previous is not None:
            weave_client_context.set_weave_client_global(previous)


def _log_evaluation_rows(
    report: EvalReport, name: str, attributes: dict[str, Any] | None
) -> EvaluationTraces:
    import weave

    model_name = report.predictor.replace("/", "_").replace(":", "_")[:120] or "predictor"
    logger = weave.EvaluationLogger(
        name=name,
        model={"name": model_name, "predictor": report.predictor, "decoder": report.decoder},
        dataset=f"{report.dataset}-{report.data_hash[:12]}",
        eval_attributes={"kotone": {"run_name": name, **(attributes or {})}},
        scorers=["mae", "mae_rounded", "json_valid"],
        trace_scores=False,
    )
    row_call_ids: dict[int, str] = {}
    evaluation_call_id = ""
    for row in report.rows:
        prediction = logger.log_prediction(inputs=_row_inputs(row), output=_row_output(row))
        prediction.log_score("json_valid", row.json_valid)
        if row.scored:
            prediction.log_score("mae", row.mae)
            prediction.log_score("mae_rounded", row.mae_rounded)
        prediction.finish()
        row_call_ids[row.index] = prediction.predict_and_score_call.id
        evaluation_call_id = prediction.evaluate_call.id
    logger.log_summary(
        {
            "vector_mae": report.vector_mae,
            "vector_mae_rounded": report.vector_mae_rounded,
            "json_valid_rate": report.json_valid_rate,
            "fallback_rate": report.fallback_rate,
            "n_rows": report.n_rows,
            "n_scored": report.n_scored,
        }
    )
    return EvaluationTraces(evaluation_call_id=evaluation_call_id, row_call_ids=row_call_ids)
