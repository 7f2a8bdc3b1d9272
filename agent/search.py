"""The search space the planners know, and their memory of what was tried.

A cycle's K candidates are single-lever moves from the incumbent recipe (the champion's, or the default
stack when the champion is a cycle-0 baseline), taken in the order below, skipping every recipe the gate
already judged (`CycleHistoryEntry.candidates[].recipe_key`, whatever the seed) and the incumbent itself
(a seed-only variant is noise, not a search). When the champion changes, the moves start again from it.
When no move is left the space is exhausted and the loop stops: a plateau means "nothing untried", not
"three misses of one guess". Levers that only turn the LM's knobs are skipped when the incumbent has no LM
(the cheap stack): their candidate would train exactly what the incumbent trains.

| lever | the move |
|---|---|
| `stack` | the default stack: median constant, TF-IDF ridge, additive ridge and the LM fold ensemble |
| `stack-cheap` | the stack without the LM (seconds to train; strong where the signal is structure) |
| `lm-only` | the LM fold ensemble alone |
| `deeper` | 2 more kept layers of the base model, LoRA on one more |
| `more-epochs` | one more epoch |
| `lr-half`, `lr-double` | half / double the learning rate |
| `rank-up` | LoRA rank doubled (alpha = 2r) |
| `ordinal` | an ordinal head (a distribution over 0..10 per dim) instead of a linear one |
| `more-folds` | two more CV folds (= two more seeds in the ensemble) |
| `no-teacher` | replay only, no teacher pairs |
| `more-data` | twice the teacher pairs and replay rows (within what the teacher can write) |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from typing import NamedTuple

from tools.core.contracts import (
    AugmentationSpec,
    CandidateSpec,
    Capacity,
    CycleHistoryEntry,
    HParams,
    StudentRecipe,
)

DEFAULT_COMPONENTS = ["train-median", "tfidf-ridge", "additive-ridge", "lm"]
CHEAP_COMPONENTS = ["train-median", "tfidf-ridge", "additive-ridge"]
MAX_FOLDS = 5


Move = Callable[[CandidateSpec], CandidateSpec]


class Lever(NamedTuple):
    name: str
    reason: str
    move: Move
    lm_knob: bool = False  # changes only what the LM members train with


def _student(spec: CandidateSpec, **update: object) -> CandidateSpec:
    return spec.model_copy(update={"student": spec.student.model_copy(update=update)})


def _options(spec: CandidateSpec, **update: object) -> CandidateSpec:
    return _student(spec, options={**spec.student.options, **update})


def _hparams(spec: CandidateSpec, **update: object) -> CandidateSpec:
    return spec.model_copy(update={"hparams": spec.hparams.model_copy(update=update)})


def _augment(spec: CandidateSpec, **update: object) -> CandidateSpec:
    return spec.model_copy(update={"augmentation": spec.augmentation.model_copy(update=update)})


def _lm_knob(default_options: dict, key: str, fallback: int) -> int:
    return int(default_options.get(key, fallback))


def levers(capacity: Capacity, default_options: dict) -> list[Lever]:
    """The levers in the order they are tried."""

    def with_lm(s: CandidateSpec, **update: object) -> CandidateSpec:
        # A recipe that gains the LM back (from the cheap stack) gets the loop's default LM knobs back.
        options = s.student.options if s.student.uses_lm else dict(default_options)
        return _student(s, options=options, **update)

    def deeper(s: CandidateSpec) -> CandidateSpec:
        kept = int(s.student.options.get("layers_kept", _lm_knob(default_options, "layers_kept", 4)))
        lora = int(s.student.options.get("lora_layers", _lm_knob(default_options, "lora_layers", 2)))
        return _options(s, layers_kept=kept + 2, lora_layers=lora + 1)

    return [
        Lever(
            "stack",
            "blend the LM ensemble with the cheap models per slice (weights from CV on train)",
            lambda s: with_lm(s, family="stack", components=list(DEFAULT_COMPONENTS)),
        ),
        Lever(
            "stack-cheap",
            "the blend without the LM: structure at the cost of seconds",
            lambda s: _student(s, family="stack", components=list(CHEAP_COMPONENTS), options={}),
        ),
        Lever(
            "lm-only",
            "the LM fold ensemble alone",
            lambda s: with_lm(s, family="regression", components=[]),
        ),
        Lever("deeper", "more of the base model's layers for the LM", deeper, lm_knob=True),
        Lever(
            "more-epochs",
            "one more epoch",
            lambda s: _hparams(s, epochs=s.hparams.epochs + 1),
            lm_knob=True,
        ),
        Lever(
            "lr-half",
            "half the learning rate",
            lambda s: _hparams(s, learning_rate=float(f"{s.hparams.learning_rate / 2:.3g}")),
            lm_knob=True,
        ),
        Lever(
            "lr-double",
            "double the learning rate",
            lambda s: _hparams(s, learning_rate=float(f"{s.hparams.learning_rate * 2:.3g}")),
            lm_knob=True,
        ),
        Lever(
            "rank-up",
            "double the LoRA rank",
            lambda s: _hparams(s, lora_r=s.hparams.lora_r * 2, lora_alpha=s.hparams.lora_r * 4),
            lm_knob=True,
        ),
        Lever("ordinal", "an ordinal head over 0..10", lambda s: _options(s, head="ordinal"), lm_knob=True),
        Lever(
            "more-folds",
            "two more folds: more training data per member, two more seeds",
            lambda s: _student(s, folds=min(MAX_FOLDS, s.student.folds + 2)),
        ),
        Lever(
            "no-teacher",
            "replay only: the teacher's pairs may be off-distribution",
            lambda s: _augment(s, teacher_pairs=0),
        ),
        Lever(
            "more-data",
            "twice the teacher pairs and replay rows",
            lambda s: _augment(
                s,
                teacher_pairs=min(capacity.max_teacher_pairs, max(2 * s.augmentation.teacher_pairs, 60)),
                replay_rows=min(capacity.max_replay_rows, max(2 * s.augmentation.replay_rows, 20)),
            ),
        ),
    ]


def tried_recipes(history: list[CycleHistoryEntry]) -> set[str]:
    """Recipe keys the gate (or pruning) already judged; a crash is not a judgement."""
    return {o.recipe_key for entry in history for o in entry.candidates if o.status != "crashed"}


def incumbent_spec(
    champion_recipe: StudentRecipe | None,
    champion_hparams: HParams | None,
    default_hparams: HParams,
    default_options: dict,
    folds: int,
    augmentation: AugmentationSpec,
    focus_dims: list[str],
) -> CandidateSpec:
    """The recipe the moves start from: the champion's when it was trained by the loop, else the default stack."""
    if champion_recipe is not None and champion_recipe.family != "baseline":
        student = champion_recipe
    else:
        student = StudentRecipe(
            family="stack", components=list(DEFAULT_COMPONENTS), options=dict(default_options), folds=folds
        )
    return CandidateSpec(
        name="incumbent",
        student=student,
        hparams=champion_hparams or default_hparams,
        augmentation=augmentation,
        focus_dims=focus_dims,  # type: ignore[arg-type]
        reason="the incumbent recipe",
    )


def ordered_levers(
    levers_in_order: list[Lever],
    prefer: Sequence[str] = (),
    avoid: Set[str] = frozenset(),
    demote: Set[str] = frozenset(),
) -> list[Lever]:
    """Operator-preferred levers first (in the notes' order), then the usual order, demoted ones last;
    avoided ones never."""
    by_name = {lever.name: lever for lever in levers_in_order}
    first = [by_name[name] for name in prefer if name in by_name and name not in avoid]
    rest = [lever for lever in levers_in_order if lever not in first and lever.name not in avoid]
    return (
        first
        + [lever for lever in rest if lever.name not in demote]
        + [lever for lever in rest if lever.name in demote]
    )


def propose(
    incumbent: CandidateSpec,
    tried: set[str],
    k: int,
    cycle: int,
    capacity: Capacity,
    default_options: dict,
    clip: Callable[[CandidateSpec], CandidateSpec],
    incumbent_is_champion: bool,
    prefer: Sequence[str] = (),
    avoid: Set[str] = frozenset(),
    demote: Set[str] = frozenset(),
) -> list[CandidateSpec]:
    """Up to k untried single-lever moves from the incumbent (fewer, or none, when the space runs out).
    The incumbent itself is not proposed when it is the champion's recipe (that would be a seed-only draw).
    `prefer` / `avoid` / `demote` reorder the levers (operator notes, the outcome memory)."""
    seen = set(tried) | ({clip(incumbent).recipe_key()} if incumbent_is_champion else set())
    chosen: list[CandidateSpec] = []
    for lever in ordered_levers(levers(capacity, default_options), prefer, avoid, demote):
        if len(chosen) == k:
            break
        if lever.lm_knob and not incumbent.student.uses_lm:
            continue
        spec = clip(lever.move(incumbent)).model_copy(
            update={"name": lever.name, "reason": lever.reason, "seed": cycle * 10 + len(chosen)}
        )
        if spec.recipe_key() in seen:
            continue
        seen.add(spec.recipe_key())
        chosen.append(spec)
    return chosen


def why_not_proposed(
    name: str,
    incumbent: CandidateSpec,
    tried: set[str],
    capacity: Capacity,
    default_options: dict,
    clip: Callable[[CandidateSpec], CandidateSpec],
) -> str:
    """Why lever `name` is not among the candidates (for the reply to an operator note that asked for it)."""
    lever = next((lever for lever in levers(capacity, default_options) if lever.name == name), None)
    if lever is None:
        return "not a lever of this search"
    if lever.lm_knob and not incumbent.student.uses_lm:
        return f"the incumbent ({incumbent.student.label()}) has no LM for it to move"
    if clip(lever.move(incumbent)).recipe_key() in tried:
        return f"its move from the incumbent ({incumbent.student.label()}) was already judged"
    return "the K candidate slots went to other levers first"
