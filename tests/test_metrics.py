"""Metric definitions (DESIGN §2) on cases computed by hand."""

import pytest

from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.evaluation.metrics import build_report, score_row


def _row(values, source=SourceType.rule_prompt):
    return TrainingRow(request_text="r", source_type=source, target=ParamVector.from_list(values))


def _pred(values, **kw):
    return Prediction(values=values, json_valid=values is not None, **kw)


def test_hand_computed_mae_mse_r2_and_rounding():
    rows = [_row([5, 5, 5, 5, 5, 5]), _row([7, 7, 7, 7, 7, 7])]
    preds = [_pred([5.4] * 6, latency_ms=10), _pred([6.0] * 6, latency_ms=30)]
    report = build_report(
        [score_row(i, r, p, "model") for i, (r, p) in enumerate(zip(rows, preds, strict=True))],
        predictor="m",
        decoder="d",
        dataset="x",
        data_hash="h",
    )
    assert report.vector_mae == pytest.approx((0.4 + 1.0) / 2)
    assert report.vector_mae_rounded == pytest.approx((0 + 1) / 2)  # 5.4 rounds to 5 (exact), 6 stays 6
    assert report.mse_norm == pytest.approx((0.16 + 1.0) / 2 / 100)
    # per dim: targets 5,7 (mean 6, SST 2), SSE 0.16 + 1 = 1.16 -> r2 = 1 - 1.16/2
    assert report.r2 == pytest.approx(1 - 1.16 / 2)
    assert report.per_dim_mae["energy"] == pytest.approx(0.7)
    assert report.json_valid_rate == 1.0
    assert report.p50_latency_ms == pytest.approx(20)


def test_invalid_rows_count_against_validity_but_not_into_mae():
    rows = [_row([5] * 6), _row([5] * 6)]
    results = [
        score_row(0, rows[0], _pred([6.0] * 6), "model"),
        score_row(1, rows[1], Prediction(values=None, json_valid=False, parse_error="no JSON"), "model"),
    ]
    report = build_report(results, predictor="m", decoder="d", dataset="x", data_hash="h")
    assert report.json_valid_rate == 0.5
    assert report.n_scored == 1
    assert report.vector_mae == pytest.approx(1.0)
    assert report.top_failures[0].parse_error == "no JSON"


def test_rows_served_by_a_fallback_are_counted_never_scored():
    rows = [_row([5] * 6), _row([5] * 6)]
    results = [
        score_row(0, rows[0], _pred([9.0] * 6), "model"),
        score_row(1, rows[1], _pred([5.0] * 6, served_by="fallback"), "model"),
    ]
    report = build_report(results, predictor="m", decoder="d", dataset="x", data_hash="h")
    assert report.vector_mae == pytest.approx(4.0)
    assert report.fallback_rate == 0.5
    assert report.served_by == {"model": 1, "fallback": 1}


def test_slices_by_source_type():
    rows = [_row([5] * 6, SourceType.rule_prompt), _row([5] * 6, SourceType.request_text)]
    results = [
        score_row(0, rows[0], _pred([5.0] * 6), "model"),
        score_row(1, rows[1], _pred([7.0] * 6), "model"),
    ]
    report = build_report(results, predictor="m", decoder="d", dataset="x", data_hash="h")
    assert report.by_source_type["rule_prompt"].vector_mae == 0.0
    assert report.by_source_type["request_text"].vector_mae == 2.0
