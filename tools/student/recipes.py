"""Training one candidate from its `StudentRecipe`: the student folder, its out-of-fold predictions, pruning.

| family | what lands in the output folder |
|---|---|
| `baseline` | one cheap model (`tools.evaluation.baselines`) fitted on every row |
| `regression` / `generative` | a fold ensemble of that LM student (`tools.student.ensemble`) |
| `stack` | the cheap components fitted on every row, the LM fold ensemble, the blend (`tools.student.stack`) |

Every family also leaves `novelty/`: the novelty model of its training rows (`tools.data.novelty`), served
with each prediction.

Every family leaves `oof.json`: each dataset row of the training split predicted by models that never saw
it (for a stack, blended with weights fitted on the other folds). That is the candidate's CV estimate.

Pruning: after each LM fold (in fold order, whichever member finished first when they train as parallel
tasks), the candidate's out-of-fold errors so far are compared, row by row, with the champion's on the same
rows (paired bootstrap). When even this estimate (for a stack, blended with weights
fitted on those same rows, which flatters it) says the candidate is worse with `prune_confidence`, it
cannot win: training stops and the reason is recorded. Pruning reads only training rows.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from tools.core.atomic import atomic_write_json
from tools.core.contracts import HParams, StudentRecipe
from tools.core.schema import TrainingRow
from tools.data.novelty import NOVELTY_DIR, NoveltyModel
from tools.evaluation.baselines import TextBaseline
from tools.evaluation.stats import paired_bootstrap
from tools.student.ensemble import MemberRecord, train_fold_ensemble, train_member
from tools.student.folds import OOF_FILE, OutOfFold, fold_split, paired_gain
from tools.student.stack import (
    COMPONENTS_DIR,
    LM_COMPONENT,
    BlendWeights,
    SourceClassifier,
    blend,
    fit_blend,
    nested_blend,
    save_stack,
)

RECORD_FILE = "recipe_record.json"


class RecipeResult(BaseModel):
    """What training one candidate did (also `recipe_record.json` in its folder)."""

    recipe: StudentRecipe
    student_dir: str
    members: list[MemberRecord] = []
    blend: BlendWeights | None = None
    classifier_train_accuracy: float | None = None
    cv_mae: float | None
    cv_mae_rounded: float | None
    cv_rows: int
    pruned: str | None = None
    not_trained: bool = False
    wall_s: float
    peak_rss_mb: float


class Pruner:
    """Decides after each LM fold whether the candidate can still beat the champion (training rows only)."""

    def __init__(
        self,
        champion: OutOfFold | None,
        *,
        rounded: bool,
        confidence: float,
        samples: int = 1000,
        seed: int = 0,
    ) -> None:
        self.champion_errors = champion.errors(rounded) if champion is not None else None
        self.rounded = rounded
        self.confidence = confidence
        self.samples = samples
        self.seed = seed

    def __call__(self, fold: int, candidate: OutOfFold) -> str | None:
        if self.champion_errors is None:
            return None
        gains = paired_gain(self.champion_errors, candidate.errors(self.rounded))
        if gains.size == 0:
            return None
        result = paired_bootstrap(gains, samples=self.samples, seed=self.seed)
        # P(worse) = P(mean gain < 0), on the same resamples: an exact tie (common on rounded errors) is not worse.
        worse = paired_bootstrap(-gains, samples=self.samples, seed=self.seed).probability
        if worse < self.confidence:
            return None
        return (
            f"pruned after fold {fold + 1}: out-of-fold gain vs the champion {result.mean_gain:+.3f} "
            f"(95% CI {result.ci_low:+.3f} .. {result.ci_high:+.3f}) over {result.n_rows} training rows, "
            f"P(better) {result.probability:.3f}"
        )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_oof(kind: str, rows: Sequence[TrainingRow], n_folds: int) -> OutOfFold:
    """A cheap model's out-of-fold predictions on the same folds the LM members use."""
    oof = OutOfFold.empty(n_folds)
    for fold in range(n_folds):
        train_idx, held_out = fold_split(rows, fold, n_folds)
        if not held_out:
            continue
        model = TextBaseline(kind).fit([rows[i] for i in train_idx])  # type: ignore[arg-type]
        oof.add([rows[i] for i in held_out], model.predict_values([rows[i].request_text for i in held_out]))
    return oof


def _by_key(oof: OutOfFold) -> dict[str, list[float]]:
    return dict(zip(oof.keys, oof.predictions, strict=True))


def stack_oof(
    component_oofs: dict[str, OutOfFold], n_folds: int, *, nested: bool
) -> tuple[OutOfFold, BlendWeights]:
    """The blend's out-of-fold predictions over the rows every component has, and the weights fitted on
    all of them. `nested=False` blends with those in-sample weights (the pruning estimate)."""
    names = list(component_oofs)
    by_key = {name: _by_key(oof) for name, oof in component_oofs.items()}
    reference = component_oofs[names[0]]
    rows = [
        (k, s, t)
        for k, s, t in zip(reference.keys, reference.source_types, reference.targets, strict=True)
        if all(k in by_key[n] for n in names)
    ]
    keys = [k for k, _, _ in rows]
    sources = [s for _, s, _ in rows]
    targets = np.array([t for _, _, t in rows], dtype=float)
    predictions = {n: np.array([by_key[n][k] for k in keys], dtype=float) for n in names}
    weights = fit_blend(predictions, targets, sources)
    blended = (
        nested_blend(predictions, targets, sources, keys, n_folds)
        if nested
        else blend(weights, predictions, sources)
    )
    oof = OutOfFold(
        n_folds=n_folds,
        keys=keys,
        source_types=sources,
        targets=[list(map(int, t)) for t in targets],
        predictions=blended.tolist(),
    )
    return oof, weights


def member_folder(recipe: StudentRecipe, output_dir: Path) -> Path:
    """Where a recipe's LM fold ensemble lives inside its student folder."""
    return output_dir / COMPONENTS_DIR / LM_COMPONENT if recipe.family == "stack" else output_dir


def train_recipe_member(
    recipe: StudentRecipe,
    hparams: HParams,
    rows: Sequence[TrainingRow],
    *,
    fold: int,
    base_spec: str,
    output_dir: Path,
    seed: int,
    time_budget_s: float | None = None,
    checkpoint_every_steps: int = 25,
    on_step: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> MemberRecord:
    """One LM member of the candidate, as its own task. A time budget is the candidate's, split evenly
    over its members (they run side by side, not one after another)."""
    return train_member(
        recipe.member_kind,
        hparams,
        rows,
        fold=fold,
        n_folds=recipe.folds,
        base_spec=base_spec,
        output_dir=member_folder(recipe, output_dir),
        seed=seed,
        options=recipe.options,
        time_budget_s=None if time_budget_s is None else time_budget_s / recipe.folds,
        checkpoint_every_steps=checkpoint_every_steps,
        on_step=on_step,
        progress=progress,
    )


def train_recipe(
    recipe: StudentRecipe,
    hparams: HParams,
    rows: Sequence[TrainingRow],
    *,
    base_spec: str,
    output_dir: Path,
    seed: int,
    pruner: Pruner | None = None,
    time_budget_s: float | None = None,
    checkpoint_every_steps: int = 25,
    on_step: Callable[[dict], None] | None = None,
    progress: bool = True,
    train_members: bool = True,
) -> RecipeResult | None:
    """Train the candidate into `output_dir` (a rerun skips finished LM members) and write its record.

    With `train_members=False` the LM members come from parallel tasks (`train_recipe_member`): the
    candidate is assembled from the members finished so far, judged by `pruner` in fold order, and the
    answer is None while a member the decision needs is still missing."""
    began = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    n_folds = recipe.folds
    members: list[MemberRecord] = []
    weights = None
    accuracy = None
    pruned = None

    def ensemble(folder: Path, on_fold: Callable[[int, OutOfFold], str | None] | None):
        return train_fold_ensemble(
            recipe.member_kind,
            hparams,
            rows,
            n_folds=n_folds,
            base_spec=base_spec,
            output_dir=folder,
            seed=seed,
            options=recipe.options,
            time_budget_s=time_budget_s,
            checkpoint_every_steps=checkpoint_every_steps,
            on_fold=on_fold,
            on_step=on_step,
            progress=progress,
            train_missing=train_members,
        )

    if recipe.family == "baseline":
        assert recipe.baseline is not None, "a baseline recipe names its model"
        TextBaseline(recipe.baseline).fit(rows).save(output_dir)
        oof = baseline_oof(recipe.baseline, rows, n_folds)
    elif recipe.family in ("regression", "generative"):
        result = ensemble(output_dir, pruner)
        if result is None:
            return None
        members, oof, pruned = result.members, result.oof, result.pruned
    else:
        cheap = [c for c in recipe.components if c != LM_COMPONENT]
        for kind in cheap:
            TextBaseline(kind).fit(rows).save(output_dir / COMPONENTS_DIR / kind)  # type: ignore[arg-type]
        component_oofs = {kind: baseline_oof(kind, rows, n_folds) for kind in cheap}
        if recipe.uses_lm:

            def provisional(fold: int, lm_oof: OutOfFold) -> str | None:
                flattering, _ = stack_oof({**component_oofs, LM_COMPONENT: lm_oof}, n_folds, nested=False)
                return pruner(fold, flattering) if pruner is not None else None

            result = ensemble(member_folder(recipe, output_dir), provisional if pruner else None)
            if result is None:
                return None
            members, pruned = result.members, result.pruned
            component_oofs[LM_COMPONENT] = result.oof
        oof, weights = stack_oof(component_oofs, n_folds, nested=True)
        if pruned is None:
            classifier = SourceClassifier.fit(rows)
            accuracy = save_stack(output_dir, weights, classifier, rows).classifier_train_accuracy
    atomic_write_json(output_dir / OOF_FILE, oof)
    # Every family serves how unlike its training rows a request is (tools.data.novelty).
    NoveltyModel().fit([r.request_text for r in rows]).save(output_dir / NOVELTY_DIR)
    record = RecipeResult(
        recipe=recipe,
        student_dir=str(output_dir),
        members=members,
        blend=weights,
        classifier_train_accuracy=accuracy,
        cv_mae=oof.mae(),
        cv_mae_rounded=oof.mae(rounded=True),
        cv_rows=len(oof.keys),
        pruned=pruned,
        not_trained=bool(members) and all(m.steps == 0 for m in members),
        wall_s=time.perf_counter() - began,
        peak_rss_mb=peak_rss_mb(),
    )
    atomic_write_json(output_dir / RECORD_FILE, record)
    return record
