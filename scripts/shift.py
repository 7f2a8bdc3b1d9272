"""The shift benchmark: leave-cluster-out cross-validation over train + valid, requests unlike the training rows.

    python scripts/shift.py --data real --skip-lm                # the cheap recipes (a minute or two)
    python scripts/shift.py --data real --out shift_real.json

The nested CV (`scripts/generalisation.py`) holds out random rows, so every held-out request has close
relatives in training. Here the pooled requests are clustered (k-means on their TF-IDF vectors, seeded) and
whole clusters are held out (grouped folds): each recipe is trained on the other clusters exactly as the loop
trains a candidate (`tools.student.recipes.train_recipe`, the same machinery as the nested CV) and scored on
requests whose wording it never saw. Reported per recipe, raw and rounded, per source type and on the
held-out rows that the novelty score calls unfamiliar (novelty >= 0.95 against that fold's training rows),
with the paired bootstrap 95% interval of the gap to the TF-IDF ridge. The test split is never read; with
`--data real` and no kotone-ft folder the benchmark says so and skips.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GroupKFold, KFold

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.generalisation import RECIPES, outer_predictions, summarise  # noqa: E402
from tools.core.schema import TrainingRow  # noqa: E402
from tools.data.dataset import REAL_DATA_DIR, load_dataset  # noqa: E402
from tools.data.novelty import UNFAMILIAR, NoveltyModel, novelty_profile  # noqa: E402

CLUSTERS = 10


def request_clusters(rows: list[TrainingRow], n_clusters: int, seed: int) -> np.ndarray:
    """k-means over the requests' TF-IDF vectors (word 1-2 grams): one cluster id per row."""
    vectors = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(
        [r.request_text for r in rows]
    )
    return KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(vectors)


def held_out_novelty(rows: list[TrainingRow], splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each row's novelty against the rows it was held out from."""
    novelty = np.zeros(len(rows))
    for inner_idx, outer_idx in splits:
        model = NoveltyModel().fit([rows[i].request_text for i in inner_idx])
        novelty[outer_idx] = model.score([rows[i].request_text for i in outer_idx])
    return novelty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="real", help="'real' (../shared/kotone-ft), 'shipped' or a folder")
    parser.add_argument("--clusters", type=int, default=CLUSTERS)
    parser.add_argument("--outer-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-lm", action="store_true", help="only the recipes without a language model")
    parser.add_argument("--base-model", default="bundled")
    parser.add_argument("--out", type=Path, help="write the summary as JSON")
    args = parser.parse_args(argv)
    if args.data == "real" and not REAL_DATA_DIR.is_dir():
        print(f"shift benchmark skipped: kotone-ft is not at {REAL_DATA_DIR}")
        return 0

    data = load_dataset(args.data)
    rows = [*data.train, *data.valid]
    clusters = request_clusters(rows, args.clusters, args.seed)
    splits = list(GroupKFold(args.outer_folds).split(rows, groups=clusters))
    random_splits = list(KFold(args.outer_folds, shuffle=True, random_state=args.seed).split(rows))
    novelty = held_out_novelty(rows, splits)
    profile = novelty_profile(novelty)
    in_distribution = novelty_profile(held_out_novelty(rows, random_splits))
    print(
        f"{data.name}: {len(rows)} rows in {args.clusters} clusters (sizes "
        f"{', '.join(str(n) for n in np.bincount(clusters))}), {args.outer_folds} folds of whole clusters"
    )
    print(f"held-out clusters: {profile.sentence()}")
    print(f"random folds (the nested CV), for comparison: {in_distribution.sentence()}")

    recipes = {k: r for k, r in RECIPES.items() if not (args.skip_lm and r.uses_lm)}
    began = time.perf_counter()
    predictions, chosen = outer_predictions(rows, splits, recipes, base_model=args.base_model, seed=args.seed)
    print(f"\nleave-cluster-out CV; the loop's choice per fold: {', '.join(chosen)}")
    unfamiliar = novelty >= UNFAMILIAR
    summary = {
        "data": data.name,
        "rows": len(rows),
        "clusters": args.clusters,
        "outer_folds": args.outer_folds,
        "novelty_held_out": profile.model_dump(),
        "novelty_random_folds": in_distribution.model_dump(),
        "selected_per_fold": chosen,
        "recipes": summarise(rows, predictions, {"unfamiliar": unfamiliar, "familiar": ~unfamiliar}),
    }
    print(f"\nwall time {time.perf_counter() - began:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
