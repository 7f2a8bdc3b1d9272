"""Metric definitions (the original project's, so figures compare: tools/evaluation/metrics.py) on cases computed by hand."""

import pytest

from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow, round_scores
from tools.evaluation.metrics import build_report, score_row
from tools.student.folds import OutOfFold


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


def _report(rows, preds, **kw):
    results = [score_row(i, r, p, "model") for i, (r, p) in enumerate(zip(rows, preds, strict=True))]
    return build_report(results, predictor="m", decoder="d", dataset="x", data_hash="h", **kw)


def test_r2_compares_each_dim_with_its_own_mean():
    rows = [_row([1, 9, 5, 5, 5, 5]), _row([3, 7, 5, 5, 5, 6])]
    report = _report(rows, [_pred([2.0, 8.0, 5, 5, 5, 5]), _pred([2.0, 8.0, 5, 5, 5, 5])])
    # SST: energy (1-2)^2+(3-2)^2 = 2, warmth 2, nostalgia 0.5 -> 4.5; SSE: 1+1+1+1+0+1 = 5
    assert report.r2 == pytest.approx(1 - 5 / 4.5)


def test_r2_is_undefined_only_when_every_target_is_the_same():
    same = [_row([5] * 6), _row([5] * 6)]
    assert _report(same, [_pred([5.0] * 6), _pred([6.0] * 6)]).r2 is None
    one_dim_apart = [_row([5] * 6), _row([6, 5, 5, 5, 5, 5])]  # SST 0.5
    assert _report(one_dim_apart, [_pred([5.0] * 6), _pred([6.0, 5, 5, 5, 5, 5])]).r2 == 1.0


def test_row_errors_are_kept_to_six_decimals_and_the_raw_output_is_kept():
    result = score_row(0, _row([5] * 6), _pred([5.1234567] * 6, raw_output='{"energy": 5}'), "model")
    assert result.abs_error == [0.123457] * 6
    assert result.raw_output == '{"energy": 5}' and result.mae == pytest.approx(0.123457)


def test_rounded_predictions_are_clipped_to_the_scale():
    rows = [_row([0, 1, 10, 9, 5, 5])]
    result = score_row(0, rows[0], _pred([-0.7, 0.4, 10.6, 9.6, 5, 5]), "model")
    # rint: -1 -> 0 (clipped), 0, 11 -> 10 (clipped), 10
    assert result.abs_error_rounded == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert result.abs_error == pytest.approx([0.7, 0.6, 0.6, 0.6, 0.0, 0.0])


def test_top_failures_are_the_worst_scored_rows_and_invalid_rows_fill_the_places_left():
    rows = [_row([5] * 6) for _ in range(5)]
    preds = [
        _pred([6.0] * 6),
        Prediction(values=None, json_valid=False, parse_error="first"),
        _pred([9.0] * 6),
        Prediction(values=None, json_valid=False, parse_error="second"),
        _pred([7.0] * 6),
    ]
    top = {k: [r.index for r in _report(rows, preds, top_k=k).top_failures] for k in (2, 3, 4, 5)}
    assert top == {2: [2, 4], 3: [2, 4, 0], 4: [1, 2, 4, 0], 5: [1, 3, 2, 4, 0]}
    exact_and_half_off = _report([_row([5] * 6)] * 2, [_pred([5.0] * 6), _pred([5.5] * 6)], top_k=1)
    assert [r.index for r in exact_and_half_off.top_failures] == [1]
    many = [_row([5] * 6) for _ in range(12)]
    assert len(_report(many, [_pred([6.0] * 6)] * 12).top_failures) == 10


def test_an_empty_evaluation_has_zero_rates_and_no_scores():
    report = build_report([], predictor="m", decoder="d", dataset="x", data_hash="h")
    assert (report.n_rows, report.n_scored, report.json_valid_rate, report.fallback_rate) == (0, 0, 0.0, 0.0)
    assert (report.vector_mae, report.mse_norm, report.r2) == (None, None, None)
    assert (report.p50_latency_ms, report.p95_latency_ms) == (0.0, 0.0)
    assert report.by_source_type == {} and report.top_failures == []


def test_latency_percentiles_interpolate_between_requests():
    rows = [_row([5] * 6) for _ in range(21)]
    report = _report(rows, [_pred([5.0] * 6, latency_ms=5.0 * i) for i in range(21)])
    assert (report.p50_latency_ms, report.p95_latency_ms) == (50.0, 95.0)


def test_a_slice_with_no_scored_rows_has_no_figures():
    rows = [_row([5] * 6, SourceType.rule_prompt), _row([5] * 6, SourceType.request_text)]
    report = _report(rows, [_pred([5.0] * 6), Prediction(values=None, json_valid=False)])
    empty = report.by_source_type["request_text"]
    assert (empty.n_scored, empty.vector_mae, empty.vector_mae_rounded, empty.per_dim_mae) == (
        0,
        None,
        None,
        {},
    )
    assert report.by_source_type["rule_prompt"].n_scored == 1


def test_the_headline_shows_raw_rounded_validity_and_latency():
    rows = [_row([5] * 6), _row([7] * 6)]
    report = _report(rows, [_pred([5.4] * 6, latency_ms=10), _pred([6.0] * 6, latency_ms=30)])
    assert report.headline() == f"{'m':<32} {'d':<11} mae 0.700  rounded 0.500  valid 1.00  p95 29 ms"
    unscored = build_report([], predictor="m", decoder="d", dataset="x", data_hash="h")
    assert "mae   n/a  rounded   n/a  valid 0.00" in unscored.headline()


def test_every_rounded_figure_rounds_half_up_on_the_scale_as_the_served_json_does() -> None:
    assert round_scores([2.5, 3.5, -0.6, 10.4, 3.49, 4.5]) == [3, 4, 0, 10, 3, 5]  # numpy's rint: 2, 4, …, 4
    row = score_row(0, _row([3, 4, 0, 10, 3, 5]), _pred([2.5, 3.5, -0.6, 10.4, 3.49, 4.5]), "model")
    assert row.abs_error_rounded == [0.0] * 6
    oof = OutOfFold(
        n_folds=2,
        keys=["a"],
        source_types=["rule_prompt"],
        targets=[[3, 4, 0, 10, 3, 5]],
        predictions=[[2.5, 3.5, -0.6, 10.4, 3.49, 4.5]],
    )
    assert oof.errors(rounded=True) == {"a": 0.0}
