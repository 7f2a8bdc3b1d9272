"""The promotion gate: arithmetic on EvalReports of the same frozen rows. The agent cannot override it.

A cycle trains K candidates; each is gated against the champion, and the gate knows it picked the best of K:

1. every candidate gets the checks below, its `bootstrap` threshold corrected for K by Holm's procedure;
2. the winner is, among the candidates that pass every check, the fastest to serve of those whose mean
   per-row gain is within `min_mae_improvement` of the best (all else equal, simpler is better);
3. the winner is re-confirmed: its recipe trained again with other seeds must pass the same checks on its
   own (one pre-specified test, so uncorrected). A recipe without randomness (no LM) needs no second draw.

Unscored rows count: a row a report could not score (unparsed output, or served by a fallback) is charged
at the train-median constant's error on that row (without the constant's report, at the worst error the
scale allows), in the MAE margin, the bootstraps and the winner's gain. A model cannot gain by failing on
its hardest rows.

| check | passes when |
|---|---|
| same_rows | both reports scored the same dataset (same content hash and row count) |
| mae_margin | champion MAE - candidate MAE >= `min_mae_improvement` (unscored rows charged) |
| mse_margin | champion mse_norm - candidate mse_norm >= `min_mse_improvement` |
| bootstrap | in a paired bootstrap over rows, P(candidate MAE < champion MAE) >= 1 - Holm's threshold |
| json_valid | candidate json_valid_rate >= `min_json_valid_rate` |
| fallback | share of candidate rows served by a fallback <= `max_fallback_rate` (never scored anyway) |
| latency | candidate p95 single-request latency <= `max_p95_latency_ms`: per request the minimum thread CPU time
  of its repeats, timed interleaved with the champion; wall clock, the champion's figure and the load average
  recorded beside it |
| focus_dims | on each focus dim, candidate MAE <= champion MAE + `focus_dim_tolerance` |
| beats_baselines | paired bootstrap against each reference baseline (train-median constant, TF-IDF ridge) scored on the
  same rows: P(candidate better) >= `confidence` for every one. A model that does not beat a ten-line
  baseline is no improvement, however bad the champion it replaces |
"""

from __future__ import annotations

from pydantic import BaseModel

from loop.gate_config import GateConfig
from tools.core.contracts import ModelRecord
from tools.core.schema import SCALE_MAX, SCALE_MIN
from tools.evaluation.metrics import EvalReport
from tools.evaluation.stats import BootstrapResult, holm_thresholds, paired_bootstrap


class GateCheck(BaseModel):
    name: str
    value: float | None
    threshold: float | None
    passed: bool
    detail: str


class GateResult(BaseModel):
    promoted: bool
    checks: list[GateCheck]
    config: GateConfig

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def check(self, name: str) -> GateCheck:
        return next(c for c in self.checks if c.name == name)


class CycleGate(BaseModel):
    """The gate's whole decision for one cycle, fixed at gate time (the log stage only reads it)."""

    champion_before: ModelRecord
    candidates: dict[str, GateResult]
    p_values: dict[str, float]
    holm_thresholds: dict[str, float]
    winner: str | None
    winner_gain: float | None
    confirm: GateResult | None = None
    confirm_note: str = ""

    @property
    def promoted(self) -> bool:
        return self.winner is not None and (self.confirm is None or self.confirm.promoted)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


CONSTANT_BASELINE = "train-median"
Charges = dict[int, float]


def unscored_charges(constant: EvalReport | None, rounded: bool) -> Charges:
    """What an unscored row costs, by row index: the constant's error on it (rows it scored)."""
    return {} if constant is None else _row_errors(constant, rounded, {})


def _worst_error(target: list[int]) -> float:
    return sum(max(t - SCALE_MIN, SCALE_MAX - t) for t in target) / len(target)


def _row_errors(report: EvalReport, rounded: bool, charges: Charges | None) -> dict[int, float]:
    """Per-row error; an unscored row is charged (`charges`, else the worst error), or left out when
    `charges` is None."""
    errors = {}
    for row in report.rows:
        value = row.mae_rounded if rounded else row.mae
        if value is None and charges is not None:
            value = charges.get(row.index, _worst_error(row.target))
        if value is not None:
            errors[row.index] = value
    return errors


def charged_mae(report: EvalReport, metric: str, charges: Charges) -> float | None:
    """The report's MAE, its unscored rows charged; the report's own figure when it scored every row."""
    if report.n_scored == report.n_rows:
        return getattr(report, metric)
    errors = _row_errors(report, metric == "vector_mae_rounded", charges)
    return sum(errors.values()) / len(errors) if errors else None


def compare_rows(
    reference: EvalReport,
    candidate: EvalReport,
    *,
    rounded: bool,
    samples: int,
    seed: int,
    charges: Charges | None = None,
) -> BootstrapResult:
    """Paired bootstrap over the rows of both reports (unscored rows charged, see `unscored_charges`):
    gain = reference error - candidate error."""
    charges = {} if charges is None else charges
    ref, cand = _row_errors(reference, rounded, charges), _row_errors(candidate, rounded, charges)
    shared = sorted(ref.keys() & cand.keys())
    return paired_bootstrap([ref[i] - cand[i] for i in shared], samples=samples, seed=seed)


def run_gate(
    champion: EvalReport,
    candidate: EvalReport,
    focus_dims: list[str],
    config: GateConfig,
    baselines: dict[str, EvalReport] | None = None,
    bootstrap_alpha: float | None = None,
) -> GateResult:
    """Every check for one candidate. `bootstrap_alpha` is its (Holm-corrected) share of 1 - confidence."""
    rounded = config.metric == "vector_mae_rounded"
    alpha = 1 - config.confidence if bootstrap_alpha is None else bootstrap_alpha
    charges = unscored_charges((baselines or {}).get(CONSTANT_BASELINE), rounded)
    champ_mae = charged_mae(champion, config.metric, charges)
    cand_mae = charged_mae(candidate, config.metric, charges)
    unscored = candidate.n_rows - candidate.n_scored
    checks: list[GateCheck] = []

    same = champion.data_hash == candidate.data_hash and champion.n_rows == candidate.n_rows
    checks.append(
        GateCheck(
            name="same_rows",
            value=float(candidate.n_rows),
            threshold=float(champion.n_rows),
            passed=same,
            detail=f"data hash {candidate.data_hash} vs champion {champion.data_hash}",
        )
    )

    gain = None if champ_mae is None or cand_mae is None else champ_mae - cand_mae
    checks.append(
        GateCheck(
            name="mae_margin",
            value=gain,
            threshold=config.min_mae_improvement,
            passed=gain is not None and gain >= config.min_mae_improvement,
            detail=f"{config.metric}: champion {_fmt(champ_mae)} -> candidate {_fmt(cand_mae)}"
            + (f" ({unscored} unscored rows charged at the constant's error)" if unscored else ""),
        )
    )

    mse_gain = (
        None
        if champion.mse_norm is None or candidate.mse_norm is None
        else champion.mse_norm - candidate.mse_norm
    )
    checks.append(
        GateCheck(
            name="mse_margin",
            value=mse_gain,
            threshold=config.min_mse_improvement,
            passed=mse_gain is not None and mse_gain >= config.min_mse_improvement,
            detail=f"mse_norm: champion {_fmt(champion.mse_norm)} -> candidate {_fmt(candidate.mse_norm)}",
        )
    )

    versus_champion = compare_rows(
        champion,
        candidate,
        rounded=rounded,
        samples=config.bootstrap_samples,
        seed=config.seed,
        charges=charges,
    )
    checks.append(
        GateCheck(
            name="bootstrap",
            value=versus_champion.probability,
            threshold=1 - alpha,
            passed=versus_champion.probability >= 1 - alpha,  # no shared rows: probability 0
            detail=(
                f"paired over {versus_champion.n_rows} rows, mean per-row gain {versus_champion.mean_gain:+.4f} "
                f"(95% CI {versus_champion.ci_low:+.4f} .. {versus_champion.ci_high:+.4f})"
            ),
        )
    )

    checks.append(
        GateCheck(
            name="json_valid",
            value=candidate.json_valid_rate,
            threshold=config.min_json_valid_rate,
            passed=candidate.json_valid_rate >= config.min_json_valid_rate,
            detail=f"{candidate.json_valid_rate:.3f} of rows parsed",
        )
    )
    checks.append(
        GateCheck(
            name="fallback",
            value=candidate.fallback_rate,
            threshold=config.max_fallback_rate,
            passed=candidate.fallback_rate <= config.max_fallback_rate,
            detail=f"served_by {candidate.served_by}",
        )
    )
    checks.append(
        GateCheck(
            name="latency",
            value=candidate.p95_latency_ms,
            threshold=config.max_p95_latency_ms,
            passed=candidate.p95_latency_ms <= config.max_p95_latency_ms,
            detail=candidate.latency.describe()
            if candidate.latency
            else f"single requests: p50 {candidate.p50_latency_ms:.0f} ms, p95 {candidate.p95_latency_ms:.0f} ms",
        )
    )

    per_dim_champ = champion.per_dim_mae_rounded if rounded else champion.per_dim_mae
    per_dim_cand = candidate.per_dim_mae_rounded if rounded else candidate.per_dim_mae
    worse = {
        d: per_dim_cand.get(d, float("inf")) - per_dim_champ.get(d, float("inf"))
        for d in focus_dims
        if per_dim_cand.get(d, float("inf")) > per_dim_champ.get(d, float("inf")) + config.focus_dim_tolerance
    }
    checks.append(
        GateCheck(
            name="focus_dims",
            value=max(worse.values()) if worse else 0.0,
            threshold=config.focus_dim_tolerance,
            passed=not worse,
            detail="worse on " + ", ".join(f"{d} (+{v:.3f})" for d, v in worse.items())
            if worse
            else f"no focus dim worse ({', '.join(focus_dims)})",
        )
    )
    if baselines:
        results = {
            name: compare_rows(
                report,
                candidate,
                rounded=rounded,
                samples=config.bootstrap_samples,
                seed=config.seed,
                charges=charges,
            )
            for name, report in baselines.items()
        }
        foreign = sorted(
            name for name, report in baselines.items() if report.data_hash != candidate.data_hash
        )
        weakest = min(r.probability for r in results.values())
        checks.append(
            GateCheck(
                name="beats_baselines",
                value=weakest,
                threshold=config.confidence,
                passed=not foreign and all(r.probability >= config.confidence for r in results.values()),
                detail="; ".join(
                    f"vs {name}: gain {r.mean_gain:+.4f} over {r.n_rows} rows, P {r.probability:.3f}"
                    for name, r in results.items()
                )
                + (f"; scored on other rows: {', '.join(foreign)}" if foreign else ""),
            )
        )
    return GateResult(promoted=all(c.passed for c in checks), checks=checks, config=config)


def gate_candidates(
    champion_before: ModelRecord,
    champion: EvalReport,
    candidates: dict[str, EvalReport],
    focus_dims: dict[str, list[str]],
    config: GateConfig,
    baselines: dict[str, EvalReport],
) -> CycleGate:
    """Gate the K evaluated candidates of a cycle against the champion, Holm-corrected; pick the winner."""
    rounded = config.metric == "vector_mae_rounded"
    charges = unscored_charges(baselines.get(CONSTANT_BASELINE), rounded)
    names = sorted(candidates)
    bootstraps = {
        n: compare_rows(
            champion,
            candidates[n],
            rounded=rounded,
            samples=config.bootstrap_samples,
            seed=config.seed,
            charges=charges,
        )
        for n in names
    }
    p_values = {n: bootstraps[n].p_value for n in names}
    alpha = 1 - config.confidence
    if config.holm:
        thresholds, holm_passed = holm_thresholds([p_values[n] for n in names], alpha)
    else:
        thresholds, holm_passed = [alpha] * len(names), [p_values[n] <= alpha for n in names]
    alphas = dict(zip(names, thresholds, strict=True))
    results = {
        n: run_gate(champion, candidates[n], focus_dims[n], config, baselines, bootstrap_alpha=alphas[n])
        for n in names
    }
    for name, passed in zip(names, holm_passed, strict=True):
        check = results[name].check("bootstrap")
        if check.passed and not passed:
            # Holm is step-down: once a smaller p-value fails its threshold, every larger one fails too.
            check.passed = False
            check.detail += " (Holm: a candidate with stronger evidence already failed)"
            results[name].promoted = False
    passing = [n for n in names if results[n].promoted]
    best = max((bootstraps[n].mean_gain for n in passing), default=0.0)
    # All else equal, simpler is better: among the candidates whose gain is within the margin of the best,
    # the fastest to serve wins (a blend without the LM over one with it, when the LM adds nothing).
    close = [n for n in passing if bootstraps[n].mean_gain >= best - config.min_mae_improvement]
    winner = min(
        close, key=lambda n: (candidates[n].p95_latency_ms, -bootstraps[n].mean_gain, n), default=None
    )
    return CycleGate(
        champion_before=champion_before,
        candidates=results,
        p_values=p_values,
        holm_thresholds=alphas,
        winner=winner,
        winner_gain=bootstraps[winner].mean_gain if winner else None,
    )
