"""The promotion gate: arithmetic on two reports of the same rows; it must reject noise."""

import numpy as np
import pytest

from loop.gate import GateConfig, paired_bootstrap, run_gate
from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.evaluation.metrics import build_report, score_row


def _rows(n: int, seed: int = 0) -> list[TrainingRow]:
    rng = np.random.default_rng(seed)
    return [
        TrainingRow(
            request_text=f"request {i}",
            source_type=SourceType.request_text,
            target=ParamVector.from_list(rng.integers(2, 9, size=6).tolist()),
        )
        for i in range(n)
    ]


def _report(rows, error_scale: float, seed: int, *, latency=100.0, valid_rate=1.0, served_by="model"):
    rng = np.random.default_rng(seed)
    results = []
    for i, row in enumerate(rows):
        valid = i < round(valid_rate * len(rows))
        values = np.clip(np.array(row.target.as_list()) + rng.normal(0, error_scale, 6), 0, 10).tolist()
        prediction = Prediction(
            values=values if valid else None,
            json_valid=valid,
            served_by=served_by,
            latency_ms=latency,
        )
        results.append(score_row(i, row, prediction, "model"))
    return build_report(results, predictor="p", decoder="d", dataset="x", data_hash="h")


ROWS = _rows(120)


def test_a_clearly_better_candidate_passes_every_check():
    result = run_gate(_report(ROWS, 2.0, 1), _report(ROWS, 0.5, 2), ["energy"], GateConfig())
    assert result.promoted, [c for c in result.checks if not c.passed]
    assert {c.name for c in result.checks} == {
        "same_rows",
        "mae_margin",
        "mse_margin",
        "bootstrap",
        "json_valid",
        "fallback",
        "latency",
        "focus_dims",
    }


def test_noise_is_rejected_by_the_bootstrap_even_when_the_mean_looks_better():
    champion = _report(ROWS, 1.0, 1)
    # Same error distribution, different draw: any MAE gain is luck.
    candidates = [_report(ROWS, 1.0, seed) for seed in range(2, 22)]
    promoted = [
        run_gate(champion, c, ["energy"], GateConfig(min_mae_improvement=0.0)).promoted for c in candidates
    ]
    assert sum(promoted) <= 2  # at 95% confidence, about 1 in 20 noise draws may slip through a zero margin
    assert not any(run_gate(champion, c, ["energy"], GateConfig()).promoted for c in candidates)


def test_invalid_json_fails_the_validity_check():
    result = run_gate(_report(ROWS, 2.0, 1), _report(ROWS, 0.5, 2, valid_rate=0.9), ["energy"], GateConfig())
    assert not result.promoted
    assert result.failed == ["json_valid"]


def test_fallback_served_rows_fail_the_gate_and_are_never_scored():
    candidate = _report(ROWS, 0.5, 2, served_by="fallback")
    assert candidate.n_scored == 0 and candidate.vector_mae is None
    result = run_gate(_report(ROWS, 2.0, 1), candidate, ["energy"], GateConfig())
    assert {"fallback", "mae_margin", "bootstrap"} <= set(result.failed)


def test_slow_candidate_fails_the_latency_budget():
    result = run_gate(
        _report(ROWS, 2.0, 1),
        _report(ROWS, 0.5, 2, latency=900),
        ["energy"],
        GateConfig(max_p95_latency_ms=500),
    )
    assert result.failed == ["latency"]


def test_different_rows_fail_same_rows_check():
    champion = _report(ROWS, 2.0, 1)
    candidate = _report(ROWS, 0.5, 2).model_copy(update={"data_hash": "other"})
    assert "same_rows" in run_gate(champion, candidate, ["energy"], GateConfig()).failed


def test_a_focus_dim_that_gets_worse_blocks_promotion():
    champion = _report(ROWS, 1.5, 1)
    candidate = _report(ROWS, 0.5, 2)
    worse = dict(candidate.per_dim_mae, warmth=champion.per_dim_mae["warmth"] + 0.5)
    candidate = candidate.model_copy(update={"per_dim_mae": worse})
    result = run_gate(champion, candidate, ["warmth", "energy"], GateConfig())
    assert result.failed == ["focus_dims"]
    assert "warmth" in next(c.detail for c in result.checks if c.name == "focus_dims")


def test_paired_bootstrap_is_deterministic_and_paired_by_row():
    champion, candidate = _report(ROWS, 1.5, 1), _report(ROWS, 1.0, 2)
    first = paired_bootstrap(champion, candidate, rounded=False, samples=500, seed=3)
    assert first == paired_bootstrap(champion, candidate, rounded=False, samples=500, seed=3)
    mean_gain, probability, compared = first
    assert compared == len(ROWS)
    assert mean_gain == pytest.approx(champion.vector_mae - candidate.vector_mae)
    assert probability > 0.95


def test_a_candidate_no_better_than_the_constant_is_rejected_even_against_a_weak_champion():
    weak_champion = _report(ROWS, 3.0, 1)
    constant_like = _report(ROWS, 1.0, 2)
    constant = _report(ROWS, 1.0, 3)
    result = run_gate(weak_champion, constant_like, ["energy"], GateConfig(), constant=constant)
    assert result.failed == ["beats_constant"]
    better = run_gate(weak_champion, _report(ROWS, 0.4, 4), ["energy"], GateConfig(), constant=constant)
    assert better.promoted
