"""Augment stage: teacher pairs for the focus dims + hard-case replay of the champion's worst TRAIN rows, filtered."""

from __future__ import annotations

import random
from pathlib import Path

from loop.config import LoopConfig
from loop.decision_log import AugmentSummary
from loop.registry import current_champion
from loop.stages.inputs import dataset, read_plan
from tools.core.atomic import atomic_write_json
from tools.core.paths import cycle_dir
from tools.core.schema import TrainingRow
from tools.data.dataset import DatasetSplits, load_jsonl, write_jsonl
from tools.evaluation.harness import evaluate


def champion_train_rows(config: LoopConfig, data: DatasetSplits) -> list[TrainingRow]:
    """The training set the champion was trained on (the base split for the base model)."""
    champion = current_champion()
    if champion is not None and champion.cycle > 0:
        path = cycle_dir(champion.cycle) / f"train.cycle_{champion.cycle}.jsonl"
        if path.exists():
            return load_jsonl(path)
    return list(data.train)


def augment(cycle: int, config: LoopConfig) -> AugmentSummary:
    """Teacher pairs for the focus dims + hard-case replay of the champion's worst TRAIN rows, filtered."""
    from tools.data.filters import filter_augmented
    from tools.data.replay import hard_case_replay
    from tools.data.teacher import make_teacher
    from tools.student.interface import load_student

    plan = read_plan(cycle)
    data = dataset(config)
    base_train = champion_train_rows(config, data)
    teacher = make_teacher(config)
    generated: list[TrainingRow] = []
    if teacher is not None:
        generated = teacher.generate(
            plan.augmentation, list(plan.focus_dims), plan.augmentation.new_pairs, config.seed + cycle
        )

    n_replay = round(plan.augmentation.new_pairs * plan.augmentation.replay_ratio)
    replay: list[TrainingRow] = []
    if n_replay:
        champion = current_champion()
        sample = random.Random(config.seed + cycle).sample(
            base_train, min(config.replay_sample_rows, len(base_train))
        )
        student = load_student(
            config.base_model, Path(champion.student_path) if champion and champion.student_path else None
        )
        decoder = student.default_decoder(config.decoder)
        train_report = evaluate(
            lambda texts: student.predict_batch(texts, decoder=decoder),
            sample,
            predictor=student.name,
            decoder=decoder,
            dataset=f"{data.name}/train-sample",
            batch_size=config.eval_batch_size,
        )
        worst = sorted((r for r in train_report.rows if r.scored), key=lambda r: -(r.mae or 0))
        replay = hard_case_replay(
            [sample[r.index] for r in worst],
            n_replay,
            seed=config.seed + cycle,
            protected={"valid": data.valid, "test": data.test},
        )
    kept, report = filter_augmented(
        generated + replay, train=base_train, protected={"valid": data.valid, "test": data.test}
    )
    out = cycle_dir(cycle)
    write_jsonl(out / "generated_augmented_pairs.jsonl", kept)
    train_rows = base_train + kept
    if config.max_train_rows and len(train_rows) > config.max_train_rows:
        # A deterministic sample keeps the mix of original and new rows (smoke runs only).
        train_rows = random.Random(config.seed + cycle).sample(train_rows, config.max_train_rows)
    write_jsonl(out / f"train.cycle_{cycle}.jsonl", train_rows)
    summary = AugmentSummary(
        teacher="none (replay only)" if teacher is None else teacher.name,
        n_generated=len(generated),
        n_replay=len(replay),
        n_kept=len(kept),
        train_rows=len(train_rows),
        dropped=dict(report.dropped),
        leaked_against_protected=report.leaked_against_protected,
    )
    atomic_write_json(out / "filter_report.json", report)
    atomic_write_json(out / "augment.json", summary)
    return summary
