"""Metric definitions (the original project's, so figures compare) and the `EvalReport` every evaluation produces.

Per row: parse -> json_valid; absolute error per dim.  A score counts only rows that parsed AND were
served by the predictor under test: rows answered by a fallback are counted, never scored.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tools.core.schema import DIMS, Prediction, ServedBy, TrainingRow, rounded_scores
from tools.evaluation.latency import LatencyProbe

SCALE = 10.0


class RowResult(BaseModel):
    """One evaluated row: everything needed to re-score it or to show it as a failure."""

    model_config = ConfigDict(extra="forbid")

    index: int
    request_text: str
    source_type: str
    target: list[int]
    prediction: list[float] | None
    json_valid: bool
    served_by: ServedBy
    latency_ms: float
    raw_output: str = ""
    parse_error: str | None = None
    abs_error: list[float] | None = None
    abs_error_rounded: list[float] | None = None

    @property
    def scored(self) -> bool:
        return self.json_valid and self.abs_error is not None

    @property
    def mae(self) -> float | None:
        return None if self.abs_error is None else float(np.mean(self.abs_error))

    @property
    def mae_rounded(self) -> float | None:
        return None if self.abs_error_rounded is None else float(np.mean(self.abs_error_rounded))


class SliceMetrics(BaseModel):
    n_scored: int
    vector_mae: float | None
    vector_mae_rounded: float | None
    per_dim_mae: dict[str, float]


class EvalReport(BaseModel):
    """The result of one predictor on one dataset. Raw and rounded-to-integer figures side by side."""

    model_config = ConfigDict(extra="forbid")

    predictor: str = Field(description="model id / adapter path / baseline name")
    decoder: str
    dataset: str
    data_hash: str
    n_rows: int
    n_scored: int
    json_valid_rate: float
    served_by: dict[str, int]
    fallback_rate: float
    vector_mae: float | None
    vector_mae_rounded: float | None
    mse_norm: float | None
    r2: float | None
    per_dim_mae: dict[str, float]
    per_dim_mae_rounded: dict[str, float]
    by_source_type: dict[str, SliceMetrics]
    p50_latency_ms: float
    p95_latency_ms: float
    latency: LatencyProbe | None = Field(
        None, description="single-request timing (the p50/p95 above come from it when set), with the load"
    )
    top_failures: list[RowResult]
    rows: list[RowResult]

    def headline(self) -> str:
        def fmt(x: float | None) -> str:
            return "  n/a" if x is None else f"{x:.3f}"

        return (
            f"{self.predictor:<32} {self.decoder:<11} mae {fmt(self.vector_mae)}  rounded "
            f"{fmt(self.vector_mae_rounded)}  valid {self.json_valid_rate:.2f}  "
            f"p95 {self.p95_latency_ms:.0f} ms"
        )


def score_row(index: int, row: TrainingRow, prediction: Prediction, subject: ServedBy) -> RowResult:
    """Turn one prediction into a RowResult; errors only for parsed rows served by the subject."""
    target = row.target.as_list()
    abs_error = abs_error_rounded = None
    if prediction.json_valid and prediction.values is not None and prediction.served_by == subject:
        values = np.asarray(prediction.values, dtype=float)
        abs_error = np.abs(values - target).round(6).tolist()
        abs_error_rounded = np.abs(rounded_scores(values) - target).tolist()
    return RowResult(
        index=index,
        request_text=row.request_text,
        source_type=row.source_type.value,
        target=target,
        prediction=prediction.values,
        json_valid=prediction.json_valid,
        served_by=prediction.served_by,
        latency_ms=prediction.latency_ms,
        raw_output=prediction.raw_output,
        parse_error=prediction.parse_error,
        abs_error=abs_error,
        abs_error_rounded=abs_error_rounded,
    )


def _slice(rows: list[RowResult]) -> SliceMetrics:
    scored = [r for r in rows if r.scored]
    if not scored:
        return SliceMetrics(n_scored=0, vector_mae=None, vector_mae_rounded=None, per_dim_mae={})
    err = np.array([r.abs_error for r in scored])
    err_r = np.array([r.abs_error_rounded for r in scored])
    return SliceMetrics(
        n_scored=len(scored),
        vector_mae=float(err.mean()),
        vector_mae_rounded=float(err_r.mean()),
        per_dim_mae={d: float(err[:, i].mean()) for i, d in enumerate(DIMS)},
    )


def build_report(
    rows: list[RowResult],
    *,
    predictor: str,
    decoder: str,
    dataset: str,
    data_hash: str,
    top_k: int = 10,
) -> EvalReport:
    """Aggregate row results: json_valid_rate over all rows; MAE, mse_norm (MSE / 100), r2 and per-dim MAE
    over the scored rows (parsed and served by the subject), raw and rounded to integers."""
    n = len(rows)
    scored = [r for r in rows if r.scored]
    served = Counter(r.served_by for r in rows)
    fallback = served.get("fallback", 0)
    latencies = np.array([r.latency_ms for r in rows]) if rows else np.zeros(1)
    overall = _slice(rows)
    mse_norm = r2 = None
    per_dim_r: dict[str, float] = {}
    if scored:
        pred = np.array([r.prediction for r in scored], dtype=float)
        tgt = np.array([r.target for r in scored], dtype=float)
        mse_norm = float(((pred - tgt) ** 2).mean() / SCALE**2)
        # r2 over every (row, dim) pair, against each dim's own mean (sum over dims of SSE / SST).
        sst = float(((tgt - tgt.mean(axis=0)) ** 2).sum())
        r2 = float(1.0 - ((pred - tgt) ** 2).sum() / sst) if sst > 0 else None
        err_r = np.array([r.abs_error_rounded for r in scored])
        per_dim_r = {d: float(err_r[:, i].mean()) for i, d in enumerate(DIMS)}
    failures = sorted(scored, key=lambda r: r.mae or 0.0, reverse=True)[:top_k]
    invalid = [r for r in rows if not r.scored][: max(0, top_k - len(failures))]
    by_source = {
        st: _slice([r for r in rows if r.source_type == st]) for st in sorted({r.source_type for r in rows})
    }
    return EvalReport(
        predictor=predictor,
        decoder=decoder,
        dataset=dataset,
        data_hash=data_hash,
        n_rows=n,
        n_scored=len(scored),
        json_valid_rate=(sum(r.json_valid for r in rows) / n) if n else 0.0,
        served_by=dict(served),
        fallback_rate=fallback / n if n else 0.0,
        vector_mae=overall.vector_mae,
        vector_mae_rounded=overall.vector_mae_rounded,
        mse_norm=mse_norm,
        r2=r2,
        per_dim_mae=overall.per_dim_mae,
        per_dim_mae_rounded=per_dim_r,
        by_source_type=by_source,
        p50_latency_ms=float(np.percentile(latencies, 50)),
        p95_latency_ms=float(np.percentile(latencies, 95)),
        top_failures=invalid + failures,
        rows=rows,
    )
