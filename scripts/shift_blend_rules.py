"""Novelty-dependent blend rules for the cheap stack, on the shift benchmark's folds and the nested CV's.

    python scripts/shift_blend_rules.py --data real          # about 2 minutes on 2 cores
    python scripts/shift_blend_rules.py --data real --seed 1 --clusters 15     # another partition: confirm

For each outer fold (whole clusters held out, as `scripts/shift.py`; random rows, as
`scripts/generalisation.py`) the cheap components are fitted on the inner rows and blended exactly as the
loop's stack-cheap (out-of-fold predictions on the loop's hash folds, `fit_blend`), then the held-out rows
whose novelty against the inner rows is >= tau get another weight set:

- `any@tau`: the source-agnostic weights (`*`) instead of their slice's;
- `novelfit@tau`: weights fitted, per (source type, dim), on the inner rows whose out-of-fold novelty (against
  their fold's training rows) is >= tau (at least 30 of them, else today's);
- `novelfitany@tau`: the same, pooled over source types.

Every rule is printed beside today's blend ("today") with the paired bootstrap 95% CI of the gap, raw and
rounded. Only train + valid are read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold, KFold

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.shift import CLUSTERS, request_clusters  # noqa: E402
from tools.core.schema import TrainingRow, rounded_scores  # noqa: E402
from tools.data.dataset import load_dataset  # noqa: E402
from tools.data.novelty import NoveltyModel  # noqa: E402
from tools.evaluation.baselines import TextBaseline  # noqa: E402
from tools.evaluation.stats import paired_bootstrap  # noqa: E402
from tools.student.folds import fold_split  # noqa: E402
from tools.student.stack import ANY_SOURCE, SourceClassifier, blend, fit_blend  # noqa: E402

CHEAP = ["train-median", "tfidf-ridge", "additive-ridge"]
TAUS = (0.5, 0.8)
MIN_NOVEL_ROWS = 30


def inner_oof(inner: list[TrainingRow], n_folds: int = 5) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The components' out-of-fold predictions on the loop's hash folds, and each row's out-of-fold novelty."""
    predictions = {k: np.zeros((len(inner), 6)) for k in CHEAP}
    novelty = np.zeros(len(inner))
    for fold in range(n_folds):
        train_idx, held = fold_split(inner, fold, n_folds)
        if not held:
            continue
        train_rows = [inner[i] for i in train_idx]
        texts = [inner[i].request_text for i in held]
        for kind in CHEAP:
            predictions[kind][held] = TextBaseline(kind).fit(train_rows).predict_values(texts)
        novelty[held] = NoveltyModel().fit([r.request_text for r in train_rows]).score(texts)
    return predictions, novelty


def rules_on(rows: list[TrainingRow], splits: list) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for inner_idx, outer_idx in splits:
        inner = [rows[i] for i in inner_idx]
        texts = [rows[i].request_text for i in outer_idx]
        sources_in = np.array([r.source_type.value for r in inner])
        targets_in = np.array([r.target.as_list() for r in inner], dtype=float)
        components = {k: TextBaseline(k).fit(inner).predict_values(texts) for k in CHEAP}
        sources_out = np.array(SourceClassifier.fit(inner).predict(texts))
        novelty_out = NoveltyModel().fit([r.request_text for r in inner]).score(texts)
        oof, novelty_in = inner_oof(inner)
        weights = fit_blend(oof, targets_in, sources_in)
        today = blend(weights, components, sources_out)
        found = {"today": today}
        for tau in TAUS:
            novel, fitted_on = novelty_out >= tau, novelty_in >= tau
            some = {k: c[novel] for k, c in components.items()}
            found[f"any@{tau}"] = today.copy()
            found[f"novelfit@{tau}"] = today.copy()
            found[f"novelfitany@{tau}"] = today.copy()
            if not novel.any():
                continue
            found[f"any@{tau}"][novel] = blend(weights, some, [ANY_SOURCE] * int(novel.sum()))
            if fitted_on.sum() < MIN_NOVEL_ROWS:
                continue
            subset = {k: p[fitted_on] for k, p in oof.items()}
            per_source = fit_blend(subset, targets_in[fitted_on], sources_in[fitted_on])
            found[f"novelfit@{tau}"][novel] = blend(per_source, some, sources_out[novel])
            pooled = fit_blend(subset, targets_in[fitted_on], [ANY_SOURCE] * int(fitted_on.sum()))
            found[f"novelfitany@{tau}"][novel] = blend(pooled, some, [ANY_SOURCE] * int(novel.sum()))
        for name, values in found.items():
            out.setdefault(name, np.zeros((len(rows), 6)))[outer_idx] = np.clip(values, 0, 10)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="real")
    parser.add_argument("--seed", type=int, default=0, help="k-means and random folds")
    parser.add_argument("--clusters", type=int, default=CLUSTERS)
    args = parser.parse_args(argv)
    rows = [*(data := load_dataset(args.data)).train, *data.valid]
    targets = np.array([r.target.as_list() for r in rows], dtype=float)
    schemes = {
        "leave-cluster-out (shift)": list(
            GroupKFold(5).split(rows, groups=request_clusters(rows, args.clusters, args.seed))
        ),
        "random folds (nested CV)": list(KFold(5, shuffle=True, random_state=args.seed).split(rows)),
    }
    for scheme, splits in schemes.items():
        predictions = rules_on(rows, splits)
        raw_today = np.abs(predictions["today"] - targets).mean(1)
        rounded_today = np.abs(rounded_scores(predictions["today"]) - targets).mean(1)
        print(f"\n{scheme}: {len(rows)} rows")
        for name, values in predictions.items():
            raw = np.abs(values - targets).mean(1)
            rounded = np.abs(rounded_scores(values) - targets).mean(1)
            gap_raw = paired_bootstrap(raw_today - raw, samples=5000, seed=0)
            gap = paired_bootstrap(rounded_today - rounded, samples=5000, seed=0)
            print(
                f"{name:18s} raw {raw.mean():.4f} rounded {rounded.mean():.4f}   gap to today: rounded "
                f"{-gap.mean_gain:+.4f} [{-gap.ci_high:+.4f}, {-gap.ci_low:+.4f}]  raw {-gap_raw.mean_gain:+.4f} "
                f"[{-gap_raw.ci_high:+.4f}, {-gap_raw.ci_low:+.4f}]",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
