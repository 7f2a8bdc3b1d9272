"""Augment stage: per candidate, teacher pairs for its focus dims + hard-case replay of the champion's worst
TRAIN rows (by out-of-fold error), filtered; the candidate's training set = the champion's + what was kept.

A kept row that leaks against valid or test stops the cycle: the filters drop leaks, and their re-check of
the kept rows must find none."""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import RootModel

from loop.config import LoopConfig
from loop.decision_log import AugmentSummary
from loop.registry import champion_oof, current_champion
from loop.stages.inputs import candidate_dir, dataset, read_plan
from tools.core.atomic import atomic_write_json
from tools.core.contracts import CandidateSpec, Capacity
from tools.core.schema import TrainingRow
from tools.data.dataset import DatasetSplits, load_jsonl, text_key, write_jsonl

TRAIN_FILE = "train.jsonl"
SUMMARY_FILE = "augment.json"
# Replay copies come from the worst quarter of the champion's out-of-fold rows, up to two copies each.
REPLAY_POOL_SHARE = 0.25
COPIES_PER_SOURCE = 2
MAX_TEACHER_PAIRS = 600


class AugmentResults(RootModel[dict[str, AugmentSummary]]):
    """The augment stage's reply: per candidate, what the teacher and replay delivered and what was kept."""


class LeakedRowsError(RuntimeError):
    """A kept augmented row matches a valid or test row: the cycle stops before training on it."""


def champion_train_rows(data: DatasetSplits) -> list[TrainingRow]:
    """The training set the champion was trained on (the training split for a cycle-0 champion)."""
    champion = current_champion()
    if champion is not None and champion.cycle > 0:
        path = candidate_dir(champion.cycle, champion.candidate) / TRAIN_FILE
        if path.exists():
            return load_jsonl(path)
    return list(data.train)


def replay_sources(data: DatasetSplits) -> list[TrainingRow]:
    """The champion's worst training rows by out-of-fold error, worst first (none without a CV record)."""
    oof = champion_oof()
    if oof is None:
        return []
    by_key = {text_key(r.request_text): r for r in data.train}
    errors = sorted(oof.errors().items(), key=lambda item: -item[1])
    pool = errors[: max(1, int(len(errors) * REPLAY_POOL_SHARE))]
    return [by_key[k] for k, _ in pool if k in by_key]


def capacity(config: LoopConfig) -> Capacity:
    """What augmentation can deliver: the planner never asks for more (its plan line says what is used)."""
    from tools.data.teacher import make_teacher

    teacher = make_teacher(config)
    return Capacity(
        teacher="none" if teacher is None else teacher.name,
        max_teacher_pairs=0 if teacher is None else MAX_TEACHER_PAIRS,
        max_replay_rows=COPIES_PER_SOURCE * len(replay_sources(dataset(config))),
    )


def augment_candidate(
    spec: CandidateSpec,
    folder: Path,
    config: LoopConfig,
    data: DatasetSplits,
    base_train: list[TrainingRow],
    seed: int,
) -> AugmentSummary:
    from tools.data.filters import filter_augmented
    from tools.data.replay import hard_case_replay
    from tools.data.teacher import make_teacher

    teacher = make_teacher(config)
    requested = spec.augmentation
    generated: list[TrainingRow] = []
    if teacher is not None and requested.teacher_pairs:
        generated = teacher.generate(requested, list(spec.focus_dims), requested.teacher_pairs, seed)
    replay: list[TrainingRow] = []
    sources = replay_sources(data)
    if requested.replay_rows and sources:
        replay = hard_case_replay(
            sources, requested.replay_rows, seed=seed, protected={"valid": data.valid, "test": data.test}
        )
    kept, report = filter_augmented(
        generated + replay, train=base_train, protected={"valid": data.valid, "test": data.test}
    )
    if report.leaked_against_protected:
        raise LeakedRowsError(
            f"candidate {spec.name}: {report.leaked_against_protected} kept augmented row(s) match valid/test rows"
        )
    write_jsonl(folder / "generated_augmented_pairs.jsonl", kept)
    train_rows = base_train + kept
    if config.max_train_rows and len(train_rows) > config.max_train_rows:
        # A deterministic sample keeps the mix of original and new rows (smoke runs only).
        train_rows = random.Random(seed).sample(train_rows, config.max_train_rows)
    write_jsonl(folder / TRAIN_FILE, train_rows)
    summary = AugmentSummary(
        teacher="none (replay only)" if teacher is None else teacher.name,
        teacher_pairs_requested=requested.teacher_pairs,
        n_generated=len(generated),
        replay_requested=requested.replay_rows,
        n_replay=len(replay),
        n_kept=len(kept),
        train_rows=len(train_rows),
        dropped=dict(report.dropped),
        leaked_against_protected=report.leaked_against_protected,
    )
    atomic_write_json(folder / "filter_report.json", report)
    atomic_write_json(folder / SUMMARY_FILE, summary)
    return summary


def augment(cycle: int, config: LoopConfig) -> AugmentResults:
    """Every candidate's training set (a candidate already augmented before a kill is kept as it is)."""
    plan = read_plan(cycle)
    data = dataset(config)
    base_train = champion_train_rows(data)
    summaries = {}
    for index, spec in enumerate(plan.candidates):
        folder = candidate_dir(cycle, spec.name)
        if (folder / SUMMARY_FILE).is_file():
            summaries[spec.name] = AugmentSummary.model_validate_json((folder / SUMMARY_FILE).read_text())
            continue
        folder.mkdir(parents=True, exist_ok=True)
        seed = config.seed + 1000 * cycle + index
        summaries[spec.name] = augment_candidate(spec, folder, config, data, base_train, seed)
    return AugmentResults(summaries)
