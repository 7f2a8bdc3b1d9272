"""The promotion gate: arithmetic on reports of the same rows. It rejects noise, compares rows in pairs, fails
exactly where its thresholds say, corrects for the K candidates of a cycle and picks the best that passes."""

from __future__ import annotations

import numpy as np
import pytest

from loop.gate import CycleGate, GateConfig, compare_rows, gate_candidates, run_gate
from tools.core.contracts import ModelRecord
from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.evaluation.metrics import EvalReport, build_report, score_row

N_ROWS = 120
ALL_CHECKS = {
    "same_rows",
    "mae_margin",
    "mse_margin",
    "bootstrap",
    "json_valid",
    "fallback",
    "latency",
    "focus_dims",
}


def _rows(n: int = N_ROWS, seed: int = 0) -> list[TrainingRow]:
    rng = np.random.default_rng(seed)
    return [
        TrainingRow(
            request_text=f"request {i}",
            source_type=SourceType.request_text,
            target=ParamVector.from_list(rng.integers(2, 9, size=6).tolist()),
        )
        for i in range(n)
    ]


ROWS = _rows()


def noisy(error_scale: float, seed: int, *, latency=100.0, valid_rate=1.0, served_by="model") -> EvalReport:
    """Predictions = targets + gaussian noise of `error_scale` (a model of that quality)."""
    rng = np.random.default_rng(seed)
    results = []
    for i, row in enumerate(ROWS):
        valid = i < round(valid_rate * len(ROWS))
        values = np.clip(np.array(row.target.as_list()) + rng.normal(0, error_scale, 6), 0, 10).tolist()
        prediction = Prediction(
            values=values if valid else None, json_valid=valid, served_by=served_by, latency_ms=latency
        )
        results.append(score_row(i, row, prediction, "model"))
    return build_report(results, predictor="p", decoder="d", dataset="x", data_hash="h")


def exact(offsets, *, data_hash: str = "h", latency: float = 100.0) -> EvalReport:
    """Predictions = targets + `offsets[i]` (one number for every dim of row i, or six numbers)."""
    results = []
    for i, (row, offset) in enumerate(zip(ROWS, offsets, strict=True)):
        values = (np.array(row.target.as_list(), dtype=float) + np.asarray(offset, dtype=float)).tolist()
        prediction = Prediction(values=values, json_valid=True, latency_ms=latency)
        results.append(score_row(i, row, prediction, "model"))
    return build_report(results, predictor="p", decoder="d", dataset="x", data_hash=data_hash)


def uniform(offset, **kwargs) -> EvalReport:
    return exact([offset] * N_ROWS, **kwargs)


def wrong_on(rows: range) -> EvalReport:
    """Off by exactly 1 on every dim of `rows`, exact elsewhere."""
    return exact([1.0 if i in rows else 0.0 for i in range(N_ROWS)])


CHAMPION_RECORD = ModelRecord.model_validate(
    {
        "cycle": 0,
        "candidate": "base-skeleton",
        "student_path": None,
        "decoder": "skeleton_ev",
        "base_model": "bundled",
        "metrics": {
            "vector_mae": 1.0,
            "vector_mae_rounded": 1.0,
            "mse_norm": 0.01,
            "r2": None,
            "json_valid_rate": 1.0,
            "fallback_rate": 0.0,
            "p50_latency_ms": 1.0,
            "p95_latency_ms": 1.0,
            "per_dim_mae": {},
            "n_rows": N_ROWS,
        },
    }
)


def cycle(champion: EvalReport, candidates: dict[str, EvalReport], config=None, baselines=None) -> CycleGate:
    return gate_candidates(
        CHAMPION_RECORD,
        champion,
        candidates,
        dict.fromkeys(candidates, ["energy"]),
        config or GateConfig(),
        baselines or {},
    )


# --- one candidate ------------------------------------------------------------------------------------


def test_a_clearly_better_candidate_passes_every_check():
    result = run_gate(noisy(2.0, 1), noisy(0.5, 2), ["energy"], GateConfig())
    assert result.promoted, result.failed
    assert {c.name for c in result.checks} == ALL_CHECKS
    with_baselines = run_gate(
        noisy(2.0, 1), noisy(0.5, 2), ["energy"], GateConfig(), baselines={"train-median": noisy(1.5, 3)}
    )
    assert with_baselines.promoted and {c.name for c in with_baselines.checks} == ALL_CHECKS | {
        "beats_baselines"
    }


def test_each_check_records_its_value_and_threshold():
    champion, candidate = uniform(1.0), uniform(0.5)
    result = run_gate(champion, candidate, ["energy"], GateConfig(), baselines={"train-median": uniform(0.8)})
    recorded = {c.name: (c.value, c.threshold) for c in result.checks}
    assert recorded == {
        "same_rows": (N_ROWS, N_ROWS),
        "mae_margin": (0.5, 0.01),
        "mse_margin": (pytest.approx(0.0075), 0.0),
        "bootstrap": (1.0, 0.95),
        "json_valid": (1.0, 0.98),
        "fallback": (0.0, 0.05),
        "latency": (100.0, 150.0),
        "focus_dims": (0.0, 0.0),
        "beats_baselines": (1.0, 0.95),
    }
    assert result.check("same_rows").detail == "data hash h vs champion h"
    assert result.check("mae_margin").detail == "vector_mae: champion 1.0000 -> candidate 0.5000"
    assert result.check("mse_margin").detail == "mse_norm: champion 0.0100 -> candidate 0.0025"
    assert result.check("bootstrap").detail == (
        f"paired over {N_ROWS} rows, mean per-row gain +0.5000 (95% CI +0.5000 .. +0.5000)"
    )
    assert (
        result.check("beats_baselines").detail == f"vs train-median: gain +0.3000 over {N_ROWS} rows, P 1.000"
    )


def test_the_gate_is_deterministic_and_uses_its_seed_for_every_bootstrap():
    champion, candidate, baseline = noisy(1.0, 1), noisy(0.95, 2), noisy(1.0, 3)
    config = GateConfig(min_mae_improvement=0.0, seed=7)
    first = run_gate(champion, candidate, ["energy"], config, baselines={"train-median": baseline})
    assert first == run_gate(champion, candidate, ["energy"], config, baselines={"train-median": baseline})
    for check, reference in (("bootstrap", champion), ("beats_baselines", baseline)):
        expected = compare_rows(reference, candidate, rounded=False, samples=2000, seed=7).probability
        assert 0.05 < expected < 0.95  # a borderline comparison: another seed would give another figure
        assert first.check(check).value == expected


def test_noise_is_rejected_by_the_bootstrap_even_when_the_mean_looks_better():
    champion = noisy(1.0, 1)
    # Same error distribution, different draw: any MAE gain is luck.
    candidates = [noisy(1.0, seed) for seed in range(2, 22)]
    promoted = [
        run_gate(champion, c, ["energy"], GateConfig(min_mae_improvement=0.0)).promoted for c in candidates
    ]
    assert sum(promoted) <= 2  # at 95% confidence, about 1 in 20 noise draws may slip through a zero margin
    assert not any(run_gate(champion, c, ["energy"], GateConfig()).promoted for c in candidates)


def test_the_bootstrap_is_paired_every_row_better_by_005_is_certain():
    """Rows differ wildly in difficulty, but the candidate beats the champion by 0.05 on every one of them.
    Paired, that is certain (P = 1); resampling the two error lists independently would make it a coin toss."""
    difficulty = [0.5 + 1.5 * (i % 7) / 6 for i in range(N_ROWS)]
    champion = exact(difficulty)
    candidate = exact([d - 0.05 for d in difficulty])
    result = run_gate(champion, candidate, ["energy"], GateConfig())
    assert result.check("bootstrap").value == 1.0
    assert result.promoted, result.failed
    versus = compare_rows(champion, candidate, rounded=False, samples=2000, seed=0)
    assert versus.n_rows == N_ROWS
    assert versus.mean_gain == pytest.approx(0.05)
    assert versus.ci_low == pytest.approx(0.05) and versus.ci_high == pytest.approx(0.05)


def _unscored(report: EvalReport, rows: set[int], how: str = "fallback") -> EvalReport:
    """`report` with `rows` served by a fallback (or unparsed): counted, never scored."""
    changed = [
        r.model_copy(
            update={"abs_error": None, "abs_error_rounded": None}
            | ({"served_by": "fallback"} if how == "fallback" else {"json_valid": False})
        )
        if r.index in rows
        else r
        for r in report.rows
    ]
    served = (
        {"model": report.n_rows - len(rows), "fallback": len(rows)}
        if how == "fallback"
        else {"model": report.n_rows}
    )
    return report.model_copy(
        update={
            "rows": changed,
            "n_scored": report.n_rows - len(rows),
            "served_by": served,
            "fallback_rate": len(rows) / report.n_rows if how == "fallback" else 0.0,
            "json_valid_rate": 1.0 if how == "fallback" else 1 - len(rows) / report.n_rows,
        }
    )


def test_the_bootstrap_charges_an_unscored_row_at_the_constants_error_on_it():
    constant = uniform(2.0)
    half_scored = _unscored(uniform(1.0), {i for i in range(N_ROWS) if i % 2 == 0}, how="unparsed")
    charges = {r.index: 2.0 for r in constant.rows}
    versus = compare_rows(half_scored, uniform(0.5), rounded=False, samples=500, seed=0, charges=charges)
    assert versus.n_rows == N_ROWS and versus.mean_gain == pytest.approx((1.5 + 0.5) / 2)


def test_without_the_constant_an_unscored_row_costs_the_worst_error_the_scale_allows():
    unscored = _unscored(uniform(0.0), {0})
    target = unscored.rows[0].target
    worst = sum(max(t, 10 - t) for t in target) / 6
    versus = compare_rows(unscored, uniform(0.0), rounded=False, samples=200, seed=0)
    assert versus.n_rows == N_ROWS and versus.mean_gain == pytest.approx(worst / N_ROWS)


HARD_ROWS = set(range(6))  # 5% of the rows: the most a candidate may hand to a fallback


def test_a_candidate_cannot_gain_by_handing_its_hardest_rows_to_a_fallback():
    """The champion errs by 3 on six hard rows and 0.2 elsewhere; the candidate is 0.01 better elsewhere and
    leaves the hard rows to a fallback. Scored on its own rows it gains 0.15; charged at the constant's error
    on the rows it did not score it gains less than the margin."""
    champion = exact([3.0 if i in HARD_ROWS else 0.2 for i in range(N_ROWS)])
    candidate = _unscored(uniform(0.19), HARD_ROWS)
    constant = exact([3.0 if i in HARD_ROWS else 1.5 for i in range(N_ROWS)])
    assert champion.vector_mae - candidate.vector_mae > 0.1  # what the old gate compared
    result = run_gate(champion, candidate, ["energy"], GateConfig(), {"train-median": constant})
    assert result.check("fallback").passed
    margin = result.check("mae_margin")
    assert not margin.passed and margin.value == pytest.approx(0.34 - (0.19 * 114 + 3.0 * 6) / 120)
    assert "6 unscored rows charged" in margin.detail
    assert not result.promoted
    gain = 0.34 - (0.19 * 114 + 3.0 * 6) / 120
    assert f"over 120 rows, mean per-row gain {gain:+.4f}" in result.check("bootstrap").detail
    # Against the constant too: its six hard rows cost the candidate what they cost the constant.
    assert (
        f"vs train-median: gain {1.5 * 114 / 120 - 0.19 * 114 / 120:+.4f}"
        in result.check("beats_baselines").detail
    )
    # In a cycle the winner's gain is the charged one.
    margin_off = GateConfig(min_mae_improvement=0.0)
    gated = gate_candidates(
        CHAMPION_RECORD, champion, {"a": candidate}, {"a": ["energy"]}, margin_off, {"train-median": constant}
    )
    assert gated.winner == "a" and gated.winner_gain == pytest.approx(gain)


def test_the_rounded_metric_charges_the_constants_rounded_error():
    """Rounded, the constant's error on a hard row is what its rounded prediction misses by."""
    champion = exact([3.0 if i in HARD_ROWS else 0.2 for i in range(N_ROWS)])
    candidate = _unscored(uniform(0.19), HARD_ROWS)
    constant = exact([2.6 if i in HARD_ROWS else 1.5 for i in range(N_ROWS)])  # rounds to 3 off
    config = GateConfig(metric="vector_mae_rounded", min_mae_improvement=0.0)
    result = run_gate(champion, candidate, ["energy"], config, {"train-median": constant})
    # rounded: champion 3 on the hard rows, 0 elsewhere; the candidate 0 elsewhere and charged 3 on the hard rows
    assert result.check("mae_margin").value == pytest.approx(0.0)
    assert "mean per-row gain +0.0000" in result.check("bootstrap").detail


def test_invalid_json_fails_the_validity_check():
    result = run_gate(noisy(2.0, 1), noisy(0.5, 2, valid_rate=0.9), ["energy"], GateConfig())
    assert not result.promoted
    assert result.failed == ["json_valid"]
    check = result.check("json_valid")
    assert (check.value, check.threshold) == (0.9, 0.98)
    at_threshold = run_gate(
        noisy(2.0, 1), noisy(0.5, 2, valid_rate=0.9), ["energy"], GateConfig(min_json_valid_rate=0.9)
    )
    assert at_threshold.promoted


def test_fallback_served_rows_fail_the_gate_and_are_never_scored():
    candidate = noisy(0.5, 2, served_by="fallback")
    assert candidate.n_scored == 0 and candidate.vector_mae is None
    result = run_gate(noisy(2.0, 1), candidate, ["energy"], GateConfig())
    assert {"fallback", "mae_margin", "mse_margin", "bootstrap"} <= set(result.failed)
    assert "(120 unscored rows charged at the constant's error)" in result.check("mae_margin").detail
    assert result.check("mae_margin").value < 0 and result.check("bootstrap").value == 0.0
    assert (
        run_gate(noisy(2.0, 1), candidate, ["energy"], GateConfig(max_fallback_rate=1.0))
        .check("fallback")
        .passed
    )


def test_slow_candidate_fails_the_latency_budget():
    config = GateConfig(max_p95_latency_ms=500)
    assert run_gate(noisy(2.0, 1), noisy(0.5, 2, latency=900), ["energy"], config).failed == ["latency"]
    assert run_gate(noisy(2.0, 1), noisy(0.5, 2, latency=500), ["energy"], config).promoted


def test_a_report_of_other_rows_fails_the_same_rows_check():
    champion = noisy(2.0, 1)
    other_hash = noisy(0.5, 2).model_copy(update={"data_hash": "other"})
    assert run_gate(champion, other_hash, ["energy"], GateConfig()).failed == ["same_rows"]
    other_count = noisy(0.5, 2).model_copy(update={"n_rows": N_ROWS + 1})
    assert run_gate(champion, other_count, ["energy"], GateConfig()).failed == ["same_rows"]


def test_a_gain_exactly_at_the_margin_passes_and_just_under_it_fails():
    champion, candidate = uniform(1.0), uniform(0.75)
    mse_gain = champion.mse_norm - candidate.mse_norm
    at = GateConfig(min_mae_improvement=0.25, min_mse_improvement=mse_gain)
    assert run_gate(champion, candidate, ["energy"], at).promoted
    assert run_gate(
        champion, candidate, ["energy"], at.model_copy(update={"min_mae_improvement": 0.2500001})
    ).failed == ["mae_margin"]
    assert run_gate(
        champion, candidate, ["energy"], at.model_copy(update={"min_mse_improvement": mse_gain * 1.0001})
    ).failed == ["mse_margin"]


def test_a_candidate_worse_in_mse_fails_even_with_a_better_mae():
    champion = uniform(0.5)  # 0.5 everywhere: MAE 0.5, mse 0.25
    candidate = exact([1.8 if i % 5 == 0 else 0.0 for i in range(N_ROWS)])  # MAE 0.36, mse 0.648
    assert run_gate(champion, candidate, ["energy"], GateConfig()).failed == ["mse_margin"]


def _with_dim(report: EvalReport, dim: str, value: float) -> EvalReport:
    return report.model_copy(update={"per_dim_mae": report.per_dim_mae | {dim: value}})


def test_a_focus_dim_exactly_at_its_tolerance_passes_and_just_over_it_fails():
    champion, candidate = uniform(1.0), uniform(0.5)
    config = GateConfig(focus_dim_tolerance=0.25)
    warmth = champion.per_dim_mae["warmth"]
    at = run_gate(champion, _with_dim(candidate, "warmth", warmth + 0.25), ["warmth"], config)
    assert at.promoted and at.check("focus_dims").value == 0.0
    over = run_gate(
        champion, _with_dim(candidate, "warmth", warmth + 0.2500001), ["energy", "warmth"], config
    )
    assert over.failed == ["focus_dims"]
    check = over.check("focus_dims")
    assert check.value == pytest.approx(0.2500001) and check.threshold == 0.25
    assert check.detail == "worse on warmth (+0.250)"


def test_every_worse_focus_dim_is_named():
    champion, candidate = uniform(1.0), uniform(0.5)
    worse = _with_dim(_with_dim(candidate, "energy", 1.5), "warmth", 1.25)
    check = run_gate(champion, worse, ["energy", "warmth"], GateConfig()).check("focus_dims")
    assert check.detail == "worse on energy (+0.500), warmth (+0.250)" and check.value == 0.5


def test_a_focus_dim_the_candidate_never_scored_counts_as_worse_one_the_champion_never_scored_does_not():
    unscored = noisy(1.0, 3, served_by="fallback")
    assert unscored.per_dim_mae == {}
    against_scored = run_gate(uniform(1.0), unscored, ["energy"], GateConfig()).check("focus_dims")
    assert not against_scored.passed and against_scored.value == float("inf")
    assert run_gate(unscored, uniform(0.5), ["energy"], GateConfig()).check("focus_dims").passed


def test_only_focus_dims_are_held_to_the_tolerance():
    champion, candidate = uniform(1.0), uniform(0.5)
    worse_warmth = _with_dim(candidate, "warmth", 3.0)
    result = run_gate(champion, worse_warmth, ["energy", "nostalgia"], GateConfig())
    assert result.promoted
    assert result.check("focus_dims").detail == "no focus dim worse (energy, nostalgia)"
    assert run_gate(champion, worse_warmth, ["warmth"], GateConfig()).failed == ["focus_dims"]


# --- raw vs rounded ------------------------------------------------------------------------------------

# The champion is 0.45 off on every dim: raw MAE 0.45, but it rounds to the exact answer (rounded MAE 0).
# The candidate is exact on five dims and 0.6 off on the sixth: raw MAE 0.1, rounded MAE 1/6.
ROUNDS_WELL = uniform(0.45)
RAW_WELL = uniform([0, 0, 0, 0, 0, 0.6])


def test_raw_and_rounded_mae_can_disagree_and_the_gate_uses_the_configured_one():
    raw = run_gate(ROUNDS_WELL, RAW_WELL, ["energy"], GateConfig(metric="vector_mae"))
    assert raw.promoted and raw.check("bootstrap").value == 1.0
    rounded = run_gate(ROUNDS_WELL, RAW_WELL, ["energy"], GateConfig(metric="vector_mae_rounded"))
    assert set(rounded.failed) == {"mae_margin", "bootstrap"}
    assert rounded.check("mae_margin").value == pytest.approx(-1 / 6)
    assert rounded.check("bootstrap").value == 0.0
    assert "vector_mae_rounded: champion 0.0000 -> candidate 0.1667" in rounded.check("mae_margin").detail


def test_focus_dims_are_judged_in_the_configured_metric():
    champion = uniform([0.1, 1, 1, 1, 1, 1])  # energy raw 0.1, rounded 0
    candidate = uniform([0.3, 0, 0, 0, 0, 0])  # energy raw 0.3 (worse), rounded 0 (no worse)
    assert run_gate(champion, candidate, ["energy"], GateConfig()).failed == ["focus_dims"]
    assert run_gate(champion, candidate, ["energy"], GateConfig(metric="vector_mae_rounded")).promoted
    champion = uniform([0.6, 1, 1, 1, 1, 1])  # energy raw 0.6, rounded 1
    candidate = uniform([0.8, 0, 0, 0, 0, 0])  # energy raw 0.8 (worse), rounded 1 (no worse)
    assert run_gate(champion, candidate, ["energy"], GateConfig()).failed == ["focus_dims"]
    assert run_gate(champion, candidate, ["energy"], GateConfig(metric="vector_mae_rounded")).promoted


def test_the_baselines_are_compared_in_the_configured_metric():
    candidate = uniform(0.45)
    baseline = {"tfidf-ridge": uniform([0, 0, 0, 0, 0, 0.6])}
    champion = uniform(2.0)
    raw = run_gate(champion, candidate, ["energy"], GateConfig(), baselines=baseline)
    assert raw.failed == ["beats_baselines"]
    rounded = run_gate(
        champion, candidate, ["energy"], GateConfig(metric="vector_mae_rounded"), baselines=baseline
    )
    assert rounded.promoted


def test_the_winner_is_chosen_on_the_configured_metric():
    champion = uniform(1.0)
    candidates = {"raw_best": RAW_WELL, "rounded_best": uniform(0.3)}  # raw 0.1 / 0.3; rounded 1/6 / 0
    assert cycle(champion, candidates, GateConfig()).winner == "raw_best"
    rounded = cycle(champion, candidates, GateConfig(metric="vector_mae_rounded"))
    assert rounded.winner == "rounded_best" and rounded.winner_gain == pytest.approx(1.0)


# --- the reference baselines ---------------------------------------------------------------------------


def test_a_candidate_no_better_than_a_baseline_is_rejected_even_against_a_weak_champion():
    weak_champion = noisy(3.0, 1)
    baselines = {"train-median": noisy(1.0, 3), "tfidf-ridge": noisy(2.0, 5)}
    constant_like = run_gate(weak_champion, noisy(1.0, 2), ["energy"], GateConfig(), baselines=baselines)
    assert constant_like.failed == ["beats_baselines"]
    check = constant_like.check("beats_baselines")
    assert check.threshold == 0.95 and check.value < 0.95  # the weakest comparison is the value
    assert "vs train-median: gain" in check.detail and "vs tfidf-ridge: gain" in check.detail
    better = run_gate(weak_champion, noisy(0.4, 4), ["energy"], GateConfig(), baselines=baselines)
    assert better.promoted and better.check("beats_baselines").value == 1.0


def test_a_baseline_scored_on_another_dataset_fails_the_check():
    candidate, champion = uniform(0.2), uniform(2.0)
    same = run_gate(champion, candidate, ["energy"], GateConfig(), baselines={"train-median": uniform(1.0)})
    assert same.promoted and "scored on other rows" not in same.check("beats_baselines").detail
    foreign = {
        "train-median": uniform(1.0, data_hash="another-dataset"),
        "tfidf-ridge": uniform(0.8, data_hash="another-dataset"),
    }
    result = run_gate(champion, candidate, ["energy"], GateConfig(), baselines=foreign)
    assert result.failed == ["beats_baselines"]
    assert result.check("beats_baselines").detail == (
        f"vs train-median: gain +0.8000 over {N_ROWS} rows, P 1.000; "
        f"vs tfidf-ridge: gain +0.6000 over {N_ROWS} rows, P 1.000; "
        "scored on other rows: tfidf-ridge, train-median"
    )


def test_a_baseline_with_no_scored_rows_is_charged_like_any_report():
    """Its rows cost the worst error (there is no constant's error to charge): beaten by a good candidate,
    and by nothing that is itself charged the worst error everywhere."""
    fallback_only = noisy(1.0, 3, served_by="fallback")
    good = run_gate(
        uniform(2.0), uniform(0.2), ["energy"], GateConfig(), baselines={"train-median": fallback_only}
    )
    assert good.promoted and good.check("beats_baselines").value == 1.0
    also_fallback = run_gate(
        uniform(2.0),
        noisy(0.5, 4, served_by="fallback"),
        ["energy"],
        GateConfig(),
        baselines={"train-median": fallback_only},
    )
    assert also_fallback.check("beats_baselines").value == 0.0


# --- K candidates: Holm, the winner, the confirmation ----------------------------------------------------

# The champion is off by 1 on rows 0..19; candidate a on rows 20..29 (gain +1 on 20 rows, -1 on 10), candidate b
# on rows 19..29. Their one-sided p-values sit between alpha/2 and alpha (checked below).
HOLM_CHAMPION = wrong_on(range(0, 20))
HOLM_A = wrong_on(range(20, 30))
HOLM_B = wrong_on(range(19, 30))


def test_holm_is_step_down_a_weaker_candidate_fails_once_a_stronger_one_failed():
    config = GateConfig()
    alpha = 1 - config.confidence
    p_a, p_b = (
        compare_rows(
            HOLM_CHAMPION, c, rounded=False, samples=config.bootstrap_samples, seed=config.seed
        ).p_value
        for c in (HOLM_A, HOLM_B)
    )
    assert alpha / 2 < p_a < p_b <= alpha  # the construction
    alone = run_gate(HOLM_CHAMPION, HOLM_B, ["energy"], config, bootstrap_alpha=alpha)
    assert alone.promoted  # b would pass at its own Holm threshold (alpha / 1) ...

    result = cycle(HOLM_CHAMPION, {"a": HOLM_A, "b": HOLM_B}, config)
    assert result.p_values == {"a": pytest.approx(p_a), "b": pytest.approx(p_b)}
    assert result.holm_thresholds == {"a": pytest.approx(alpha / 2), "b": pytest.approx(alpha)}
    assert result.candidates["a"].failed == ["bootstrap"]
    assert result.candidates["a"].check("bootstrap").threshold == pytest.approx(1 - alpha / 2)
    assert result.candidates["b"].failed == ["bootstrap"]  # ... but not once a failed at alpha / 2
    check = result.candidates["b"].check("bootstrap")
    assert check.threshold == pytest.approx(1 - alpha) and check.passed is False
    holm_note = " (Holm: a candidate with stronger evidence already failed)"
    assert check.detail == alone.check("bootstrap").detail + holm_note
    assert result.candidates["b"].promoted is False
    assert result.winner is None and result.winner_gain is None and not result.promoted
    # What the log stage reads back is the same decision.
    assert CycleGate.model_validate_json(result.model_dump_json()) == result


def test_a_candidate_is_tested_at_the_bootstrap_alpha_it_is_given():
    alpha = 1 - GateConfig().confidence
    assert run_gate(HOLM_CHAMPION, HOLM_A, ["energy"], GateConfig(), bootstrap_alpha=alpha).promoted
    at_half = run_gate(HOLM_CHAMPION, HOLM_A, ["energy"], GateConfig(), bootstrap_alpha=alpha / 2)
    assert at_half.failed == ["bootstrap"]
    assert at_half.check("bootstrap").threshold == pytest.approx(1 - alpha / 2)


def test_a_probability_exactly_at_the_confidence_passes():
    """With 100 resamples and seed 4, candidate a beats the champion in exactly 95 of them."""
    config = GateConfig(bootstrap_samples=100, seed=4)
    result = run_gate(HOLM_CHAMPION, HOLM_A, ["energy"], config)
    assert result.check("bootstrap").value == 0.95 and result.promoted
    assert cycle(HOLM_CHAMPION, {"a": HOLM_A}, config.model_copy(update={"holm": False})).promoted
    assert cycle(HOLM_CHAMPION, {"a": HOLM_A}, config).promoted
    as_baseline = run_gate(
        uniform(2.0), HOLM_A, ["energy"], config, baselines={"train-median": HOLM_CHAMPION}
    )
    assert as_baseline.check("beats_baselines").value == 0.95 and as_baseline.promoted


def test_without_holm_every_candidate_is_tested_at_the_full_alpha():
    config = GateConfig(holm=False)
    result = cycle(HOLM_CHAMPION, {"a": HOLM_A, "b": HOLM_B}, config)
    alpha = 1 - config.confidence
    assert result.holm_thresholds == {"a": pytest.approx(alpha), "b": pytest.approx(alpha)}
    assert not result.candidates["a"].failed and not result.candidates["b"].failed
    assert result.winner == "a" and result.promoted  # the larger mean gain (20 - 10 rows vs 19 - 11)


def test_with_one_candidate_holm_is_the_uncorrected_test():
    config = GateConfig()
    result = cycle(HOLM_CHAMPION, {"a": HOLM_A}, config)
    assert result.holm_thresholds == {"a": pytest.approx(1 - config.confidence)}
    assert result.candidates["a"] == run_gate(HOLM_CHAMPION, HOLM_A, ["energy"], config)
    assert result.winner == "a" and result.promoted


def test_the_winner_is_the_passing_candidate_with_the_largest_mean_gain():
    champion = uniform(1.0)
    candidates = {
        "a": uniform(0.5),  # gain 0.5
        "b": uniform(0.7),  # gain 0.3
        "c": uniform(0.3, latency=5000.0),  # gain 0.7, but too slow
    }
    result = cycle(champion, candidates, GateConfig())
    assert result.candidates["c"].failed == ["latency"]
    assert result.winner == "a" and result.winner_gain == pytest.approx(0.5)
    assert result.promoted


def test_among_candidates_within_the_margin_of_the_best_gain_the_fastest_wins():
    champion = uniform(1.0)
    candidates = {
        "with_lm": uniform(0.495, latency=120.0),  # gain 0.505
        "cheap": uniform(0.5, latency=2.0),  # gain 0.5: within min_mae_improvement (0.01) of the best
        "far": uniform(0.7, latency=1.0),  # gain 0.3: fastest, but not close to the best
    }
    result = cycle(champion, candidates, GateConfig())
    assert all(not r.failed for r in result.candidates.values())
    assert result.winner == "cheap" and result.winner_gain == pytest.approx(0.5)
    wider = cycle(champion, candidates, GateConfig(min_mae_improvement=0.25))
    assert wider.winner == "far"  # now within the margin of the best, and faster still


def test_every_candidate_must_beat_the_baselines():
    champion = uniform(1.0)
    baselines = {"tfidf-ridge": uniform(0.6)}
    result = cycle(champion, {"a": uniform(0.7), "b": uniform(0.4)}, GateConfig(), baselines)
    assert result.candidates["a"].failed == ["beats_baselines"]
    assert not result.candidates["b"].failed and result.winner == "b"


def test_each_candidate_is_held_to_its_own_focus_dims():
    champion, candidate = uniform(1.0), _with_dim(uniform(0.5), "warmth", 2.0)
    result = gate_candidates(
        CHAMPION_RECORD,
        champion,
        {"a": candidate, "b": candidate},
        {"a": ["energy"], "b": ["warmth"]},
        GateConfig(),
        {},
    )
    assert result.candidates["a"].promoted and result.candidates["b"].failed == ["focus_dims"]


def test_a_winner_that_fails_its_confirmation_is_not_promoted():
    champion = uniform(1.0)
    result = cycle(champion, {"a": uniform(0.5)}, GateConfig())
    assert result.winner == "a" and result.promoted  # no confirmation needed (a recipe without an LM)
    result.confirm = run_gate(champion, uniform(0.5), ["energy"], GateConfig())
    assert result.promoted
    result.confirm = run_gate(champion, uniform(1.0), ["energy"], GateConfig())
    assert not result.promoted
    assert not CycleGate.model_validate_json(result.model_dump_json()).promoted


def test_holm_thresholds_follow_each_candidates_own_p_value_whatever_the_names():
    """Names in the opposite order of the evidence: the stronger candidate is called b. Its threshold is
    alpha / 2, the weaker's alpha (thresholds attached by p-value, not by name order)."""
    config = GateConfig(holm=True)
    alpha = 1 - config.confidence
    result = cycle(HOLM_CHAMPION, {"b": HOLM_A, "a": HOLM_B}, config)
    assert result.p_values["b"] < result.p_values["a"]
    assert result.holm_thresholds == {"b": pytest.approx(alpha / 2), "a": pytest.approx(alpha)}


def test_at_equal_latency_the_larger_gain_wins_even_within_the_margin():
    champion = uniform(1.0)
    result = cycle(champion, {"a": uniform(0.5), "b": uniform(0.495)}, GateConfig())
    assert result.winner == "b" and result.winner_gain == pytest.approx(0.505)


def test_a_faster_candidate_just_outside_the_margin_of_the_best_does_not_win():
    """Gains 0.515 and 0.500: 0.015 apart, more than the margin (0.01) and less than twice it."""
    champion = uniform(1.0)
    candidates = {"best": uniform(0.485, latency=100.0), "fast": uniform(0.5, latency=2.0)}
    result = cycle(champion, candidates, GateConfig())
    assert all(not r.failed for r in result.candidates.values())
    assert result.winner == "best"
