"""The fold ensemble: K language-model students, one per CV fold of the training split, served as their mean.

Member k trains on every fold but k (with its own seed) and predicts fold k's rows: the K members together
give an out-of-fold prediction for every dataset row of the training split (`oof.json`, the candidate's CV
estimate and the input of the stacked student's blend weights), and at serving time their mean is a seed
ensemble. A single seed's draw moved kotone-ft valid MAE by ±0.025; the mean of K seeds moves far less.

Folder layout:
    ensemble.json        `EnsembleSpec`: member kind, folds, seeds, member folders
    member_K/            a student folder of the member's kind (regression or generative)
    member_K/done.json   `MemberRecord`: written after member K's fold predictions, so a resumed run skips it

Members train one after another in one process, or each as its own Ray task (`loop.stages.candidate`); the
ensemble is then judged on the finished members in fold order, so pruning decides the same either way.
    oof.json             `OutOfFold` of the whole ensemble
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from tools.core.atomic import atomic_write_json
from tools.core.contracts import HParams
from tools.core.schema import Prediction, TrainingRow
from tools.evaluation.baselines import ServesValues
from tools.student.folds import OOF_FILE, OutOfFold, fold_split

SPEC_FILE = "ensemble.json"
MEMBER_DONE_FILE = "done.json"


class EnsembleSpec(BaseModel):
    member_kind: str
    n_folds: int
    seeds: list[int]
    members: list[str]


class MemberRecord(BaseModel):
    """One trained member: what its trainer reported and its predictions on its held-out fold."""

    fold: int
    seed: int
    steps: int
    final_loss: float | None
    wall_s: float
    stopped_by_budget: bool
    train_rows: int
    held_out_rows: list[int]
    held_out_predictions: list[list[float]]


def member_seed(seed: int, fold: int) -> int:
    return seed * 100 + fold


# on_fold(fold, partial OOF so far) -> a reason to stop (the candidate cannot win), or None to go on
OnFold = Callable[[int, OutOfFold], str | None]


class EnsembleResult(BaseModel):
    members: list[MemberRecord]
    oof: OutOfFold
    pruned: str | None = None
    wall_s: float


def _stopped_by_budget(result: BaseModel) -> bool:
    values: dict[str, Any] = result.model_dump()
    return bool(values.get("stopped_by_budget") or values.get("stopped_by_time_budget"))


def train_member(
    kind: str,
    hparams: HParams,
    rows: Sequence[TrainingRow],
    *,
    fold: int,
    n_folds: int,
    base_spec: str,
    output_dir: Path,
    seed: int,
    options: dict | None = None,
    time_budget_s: float | None = None,
    checkpoint_every_steps: int = 25,
    on_step: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> MemberRecord:
    """Member `fold`: trained on every other fold, its held-out fold predicted, `done.json` written (a
    member already done is read back, never trained again). Members train one after another or as
    parallel tasks: either way each is the same function of its fold and seed."""
    from tools.student.interface import load_student, train_student

    member_dir = output_dir / f"member_{fold}"
    done = member_dir / MEMBER_DONE_FILE
    if done.is_file():
        return MemberRecord.model_validate_json(done.read_text())
    train_idx, held_out = fold_split(rows, fold, n_folds)
    result = train_student(
        kind,  # type: ignore[arg-type]
        hparams,
        [rows[i] for i in train_idx],
        base_spec=base_spec,
        output_dir=member_dir,
        seed=member_seed(seed, fold),
        time_budget_s=time_budget_s,
        checkpoint_every_steps=checkpoint_every_steps,
        options=options,
        on_step=(lambda metrics: on_step({**metrics, "member": fold})) if on_step else None,
        progress=progress,
    )
    values = result.model_dump()
    student = load_student(base_spec, member_dir)
    texts = [rows[i].request_text for i in held_out]
    decoder = student.default_decoder("skeleton_ev")
    predictions = student.predict_batch(texts, decoder=decoder) if texts else []
    record = MemberRecord(
        fold=fold,
        seed=member_seed(seed, fold),
        steps=int(values.get("steps", 0)),
        final_loss=values.get("final_loss"),
        wall_s=float(values.get("wall_s", 0.0)),
        stopped_by_budget=_stopped_by_budget(result),
        train_rows=len(train_idx),
        held_out_rows=held_out,
        held_out_predictions=[_values(p) for p in predictions],
    )
    atomic_write_json(done, record)
    return record


def member_done(output_dir: Path, fold: int) -> bool:
    return (output_dir / f"member_{fold}" / MEMBER_DONE_FILE).is_file()


def train_fold_ensemble(
    kind: str,
    hparams: HParams,
    rows: Sequence[TrainingRow],
    *,
    n_folds: int,
    base_spec: str,
    output_dir: Path,
    seed: int,
    options: dict | None = None,
    time_budget_s: float | None = None,
    checkpoint_every_steps: int = 25,
    on_fold: OnFold | None = None,
    on_step: Callable[[dict], None] | None = None,
    progress: bool = True,
    train_missing: bool = True,
) -> EnsembleResult | None:
    """The K members judged fold by fold in fold order (`on_fold` may prune after each). A member not
    done yet is trained here, or, with `train_missing=False` (members trained as parallel tasks), the
    answer is None: not decidable yet. Either way the same members give the same decision."""
    began = time.perf_counter()
    output_dir.mkdir(parents=True, exist_ok=True)
    members: list[MemberRecord] = []
    oof = OutOfFold.empty(n_folds)
    pruned = None
    for fold in range(n_folds):
        if not train_missing and not member_done(output_dir, fold):
            return None
        budget = None
        if time_budget_s is not None:
            budget = max(time_budget_s - (time.perf_counter() - began), 0.0) / (n_folds - fold)
        record = train_member(
            kind,
            hparams,
            rows,
            fold=fold,
            n_folds=n_folds,
            base_spec=base_spec,
            output_dir=output_dir,
            seed=seed,
            options=options,
            time_budget_s=budget,
            checkpoint_every_steps=checkpoint_every_steps,
            on_step=on_step,
            progress=progress,
        )
        members.append(record)
        oof.add(
            [rows[i] for i in record.held_out_rows], np.asarray(record.held_out_predictions).reshape(-1, 6)
        )
        if on_fold is not None and fold < n_folds - 1 and (pruned := on_fold(fold, oof)):
            break
    atomic_write_json(
        output_dir / SPEC_FILE,
        EnsembleSpec(
            member_kind=kind,
            n_folds=n_folds,
            seeds=[m.seed for m in members],
            members=[f"member_{m.fold}" for m in members],
        ),
    )
    atomic_write_json(output_dir / OOF_FILE, oof)
    return EnsembleResult(members=members, oof=oof, pruned=pruned, wall_s=time.perf_counter() - began)


def _values(prediction: Prediction) -> list[float]:
    """A member's numbers for one row; an unparsed generative answer counts as the scale's middle (5)."""
    return list(prediction.values) if prediction.values is not None else [5.0] * 6


class EnsembleStudent(ServesValues):
    """Serves the mean of the members' predictions (every member answers every request)."""

    def __init__(self, members: list[Any], spec: EnsembleSpec, name: str) -> None:
        self.members = members
        self.spec = spec
        self.name = name

    @classmethod
    def load(cls, base_spec: str, folder: Path) -> EnsembleStudent:
        from tools.student.interface import load_student

        spec = EnsembleSpec.model_validate_json((folder / SPEC_FILE).read_text())
        members = [load_student(base_spec, folder / member) for member in spec.members]
        return cls(members, spec, name=f"ensemble:{folder.parent.name}/{folder.name}")

    @staticmethod
    def is_folder(folder: Path) -> bool:
        return (folder / SPEC_FILE).is_file()

    def predict_values(self, texts: Sequence[str]) -> np.ndarray:
        per_member = [
            [_values(p) for p in m.predict_batch(list(texts), decoder=m.default_decoder("skeleton_ev"))]
            for m in self.members
        ]
        return np.mean(np.asarray(per_member, dtype=float), axis=0)
