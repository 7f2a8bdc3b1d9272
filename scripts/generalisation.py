"""The generalisation benchmark: nested cross-validation over train + valid, the number to develop against.

    python scripts/generalisation.py --data real                 # kotone-ft: every recipe, LM ones included
    python scripts/generalisation.py --data real --skip-lm       # the cheap recipes only (seconds)
    python scripts/generalisation.py --data real --out docs/generalisation_real.json

Outer folds (5, shuffled, seeded) are never seen by any choice: for each outer fold, every recipe is trained
on the other rows exactly as the loop trains a candidate (`tools.student.recipes.train_recipe`: its blend
weights and its own CV estimate come from inner folds of those rows only), and the loop's choice is
emulated the only honest way, by the inner CV estimate. The chosen recipe ("selected") and every recipe
are then scored on the outer fold. Reported per recipe, raw and rounded, per source type, with the paired
bootstrap 95% interval of the gap to the TF-IDF ridge over all outer rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.core.contracts import HParams, StudentRecipe  # noqa: E402
from tools.core.schema import TrainingRow, rounded_scores  # noqa: E402
from tools.data.dataset import load_dataset  # noqa: E402
from tools.evaluation.stats import paired_bootstrap  # noqa: E402

CHEAP = ["train-median", "tfidf-ridge", "additive-ridge"]
RECIPES: dict[str, StudentRecipe] = {
    "train-median": StudentRecipe(family="baseline", baseline="train-median"),
    "tfidf-ridge": StudentRecipe(family="baseline", baseline="tfidf-ridge"),
    "stack-cheap": StudentRecipe(family="stack", components=CHEAP, folds=5),
    "stack": StudentRecipe(family="stack", components=[*CHEAP, "lm"], folds=3),
}
# The stack's LM component (its fold ensemble) is scored on its own too: the LM student alone, for free.
LM_COMPONENT = "lm (stack's)"
LM_HPARAMS = HParams(learning_rate=5e-4, lora_r=16, lora_alpha=32, epochs=3.0, batch_size=16)


def outer_predictions(
    rows: list[TrainingRow],
    splits: list[tuple[np.ndarray, np.ndarray]],
    recipes: dict[str, StudentRecipe],
    *,
    base_model: str,
    seed: int,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every recipe trained on each split's inner rows as the loop trains a candidate and scored on its outer
    rows, plus the loop's choice by inner CV ("selected"); the choice made per split."""
    from tools.student.interface import load_student
    from tools.student.recipes import train_recipe

    scored = [*recipes, *([LM_COMPONENT] if "stack" in recipes else []), "selected"]
    predictions = {name: np.zeros((len(rows), 6)) for name in scored}
    chosen: list[str] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="generalisation-") as scratch:
        for fold, (inner_idx, outer_idx) in enumerate(splits):
            inner = [rows[i] for i in inner_idx]
            held = [rows[i] for i in outer_idx]
            held_targets = np.array([r.target.as_list() for r in held], dtype=float)
            cv = {}
            for name, recipe in recipes.items():
                folder = Path(scratch) / f"fold{fold}" / name
                result = train_recipe(
                    recipe,
                    LM_HPARAMS,
                    inner,
                    base_spec=base_model,
                    output_dir=folder,
                    seed=seed,
                    progress=False,
                )
                cv[name] = result.cv_mae if result.cv_mae is not None else float("inf")
                student = load_student(base_model, folder)
                values = np.array(
                    [
                        p.values
                        for p in student.predict_batch(
                            [r.request_text for r in held], decoder=student.default_decoder("")
                        )
                    ]
                )
                predictions[name][outer_idx] = np.clip(values, 0, 10)
                if name == "stack":
                    lm = load_student(base_model, folder / "components" / "lm")
                    predictions[LM_COMPONENT][outer_idx] = np.clip(
                        lm.predict_values([r.request_text for r in held]), 0, 10
                    )
                outer_mae = np.abs(predictions[name][outer_idx] - held_targets).mean()
                print(
                    f"fold {fold}: {name:13s} inner CV {cv[name]:.3f}  outer {outer_mae:.3f}  "
                    f"({time.perf_counter() - began:.0f} s)",
                    flush=True,
                )
            pick = min(cv, key=cv.get)
            chosen.append(pick)
            predictions["selected"][outer_idx] = predictions[pick][outer_idx]
            print(f"fold {fold}: the loop's choice by inner CV: {pick}", flush=True)
    return predictions, chosen


def summarise(
    rows: list[TrainingRow], predictions: dict[str, np.ndarray], masks: dict[str, np.ndarray] | None = None
) -> dict[str, dict]:
    """Per recipe: MAE raw and rounded, per source type (and per extra named row mask), and the paired
    bootstrap 95% CI of the rounded gap to the TF-IDF ridge over all rows; printed as a table."""
    sources = np.array([r.source_type.value for r in rows])
    targets = np.array([r.target.as_list() for r in rows], dtype=float)
    slices = {s: sources == s for s in sorted(set(sources))} | (masks or {})
    print(
        f"{'recipe':<16}{'raw':>8}{'rounded':>9}   "
        + "   ".join(f"{s} ({int(m.sum())}) raw/rnd" for s, m in slices.items())
        + "   gap to ridge (rounded, 95% CI)"
    )
    ridge_rounded = np.abs(rounded_scores(predictions["tfidf-ridge"]) - targets)
    summary = {}
    for name, values in predictions.items():
        err = np.abs(values - targets)
        rounded = np.abs(rounded_scores(values) - targets)
        by_slice = {
            s: (float(err[m].mean()), float(rounded[m].mean())) if m.any() else (float("nan"),) * 2
            for s, m in slices.items()
        }
        gap = paired_bootstrap(ridge_rounded.mean(1) - rounded.mean(1), samples=5000, seed=0)
        summary[name] = {
            "mae": float(err.mean()),
            "mae_rounded": float(rounded.mean()),
            "by_source": by_slice,
            "gain_vs_ridge_rounded": {"mean": gap.mean_gain, "ci_low": gap.ci_low, "ci_high": gap.ci_high},
        }
        shown = "   ".join(f"{a:.3f}/{b:.3f}" for a, b in by_slice.values())
        print(
            f"{name:<16}{err.mean():>8.3f}{rounded.mean():>9.3f}   {shown}   "
            f"{-gap.mean_gain:+.3f} [{-gap.ci_high:+.3f}, {-gap.ci_low:+.3f}]"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="real", help="'real' (../shared/kotone-ft), 'shipped' or a folder")
    parser.add_argument("--outer-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-lm", action="store_true", help="only the recipes without a language model")
    parser.add_argument("--base-model", default="bundled")
    parser.add_argument("--out", type=Path, help="write every row's errors and the summary as JSON")
    args = parser.parse_args(argv)

    data = load_dataset(args.data)
    rows = [*data.train, *data.valid]
    recipes = {k: r for k, r in RECIPES.items() if not (args.skip_lm and r.uses_lm)}
    began = time.perf_counter()
    outer = KFold(args.outer_folds, shuffle=True, random_state=args.seed)
    predictions, chosen = outer_predictions(
        rows, list(outer.split(rows)), recipes, base_model=args.base_model, seed=args.seed
    )
    print(
        f"\n{data.name}: nested CV over train+valid ({len(rows)} rows, {args.outer_folds} outer folds); "
        f"the loop's choice per fold: {', '.join(chosen)}"
    )
    summary = {
        "data": data.name,
        "rows": len(rows),
        "outer_folds": args.outer_folds,
        "selected_per_fold": chosen,
        "recipes": summarise(rows, predictions),
    }
    print(f"\nwall time {time.perf_counter() - began:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
