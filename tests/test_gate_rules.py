"""The gate's rules at their edges: the champion's own unscored rows are charged like the candidate's, a
rounded-metric cycle charges rounded errors, a report over other rows or no rows fails the gate instead
of crashing it, and each check says what it measured (the latency probe, a figure that does not exist)."""

from __future__ import annotations

import pytest
from test_gate import CHAMPION_RECORD, HARD_ROWS, N_ROWS, ROWS, _unscored, exact, noisy, uniform

from loop.gate import GateConfig, gate_candidates, run_gate
from tools.evaluation.latency import LatencyProbe
from tools.evaluation.metrics import build_report


def test_the_champions_unscored_rows_are_charged_at_the_constants_error_in_the_margin():
    """A champion that left its six hard rows to a fallback is not a champion that was exact on them: its
    MAE in the margin carries the constant's error there, as the candidate's would."""
    champion = _unscored(uniform(0.2), HARD_ROWS)
    constant = exact([3.0 if i in HARD_ROWS else 1.5 for i in range(N_ROWS)])
    candidate = uniform(0.1)
    result = run_gate(champion, candidate, ["energy"], GateConfig(), {"train-median": constant})
    charged = (0.2 * (N_ROWS - 6) + 3.0 * 6) / N_ROWS
    assert result.check("mae_margin").value == pytest.approx(charged - 0.1)
    assert f"champion {charged:.4f} -> candidate 0.1000" in result.check("mae_margin").detail


def test_a_rounded_metric_cycle_charges_the_constants_rounded_error_in_the_winners_gain():
    """Rounded, the constant misses a hard row by 3 (2.6 rounds to 3); raw it misses by 2.6."""
    champion = exact([3.0 if i in HARD_ROWS else 0.2 for i in range(N_ROWS)])
    candidate = _unscored(uniform(0.0), HARD_ROWS)
    constant = exact([2.6 if i in HARD_ROWS else 1.5 for i in range(N_ROWS)])
    config = GateConfig(metric="vector_mae_rounded", min_mae_improvement=0.0, confidence=0.51)
    rounded = gate_candidates(
        CHAMPION_RECORD, champion, {"a": candidate}, {"a": ["energy"]}, config, {"train-median": constant}
    )
    # rounded: champion 3 on the hard rows and 0 elsewhere; candidate charged 3 on them, 0 elsewhere
    assert rounded.winner is None
    assert rounded.p_values["a"] == 1.0  # no row where the candidate is better: P(better) = 0


def test_a_candidate_scored_on_fewer_rows_fails_the_same_rows_check_and_is_compared_on_the_rows_both_have():
    champion = uniform(1.0)
    rows = [r for r in uniform(0.5).rows if r.index != 0]
    shorter = build_report(rows, predictor="p", decoder="d", dataset="x", data_hash="h")
    result = run_gate(champion, shorter, ["energy"], GateConfig())
    assert result.failed == ["same_rows"]
    assert f"paired over {N_ROWS - 1} rows" in result.check("bootstrap").detail


def test_a_report_with_no_rows_has_no_gain_and_fails_without_crashing_the_gate():
    empty = build_report([], predictor="p", decoder="d", dataset="x", data_hash="h")
    against_empty = run_gate(uniform(1.0), empty, ["energy"], GateConfig())
    assert against_empty.check("mae_margin").value is None
    assert {"same_rows", "mae_margin", "bootstrap"} <= set(against_empty.failed)
    empty_champion = run_gate(empty, uniform(1.0), ["energy"], GateConfig())
    assert empty_champion.check("mae_margin").value is None and not empty_champion.promoted
    assert "champion n/a -> candidate 1.0000" in empty_champion.check("mae_margin").detail


def test_a_figure_a_report_does_not_have_reads_n_a():
    candidate = noisy(0.5, 2, served_by="fallback")
    assert candidate.mse_norm is None
    detail = run_gate(uniform(1.0), candidate, ["energy"], GateConfig()).check("mse_margin").detail
    assert detail.endswith("-> candidate n/a")


def test_the_latency_check_describes_the_interleaved_probe_when_there_was_one():
    probe = LatencyProbe(
        requests=len(ROWS),
        repeats=3,
        cpu_p50_ms=4.0,
        cpu_p95_ms=6.0,
        wall_p50_ms=5.0,
        wall_p95_ms=9.0,
        load_before=1.0,
        load_after=1.5,
    )
    probed = uniform(0.5).model_copy(update={"latency": probe})
    assert (
        run_gate(uniform(1.0), probed, ["energy"], GateConfig()).check("latency").detail == probe.describe()
    )
    unprobed = run_gate(uniform(1.0), uniform(0.5), ["energy"], GateConfig()).check("latency").detail
    assert unprobed == "single requests: p50 100 ms, p95 100 ms"
