"""Length-grouped batches for the regression student, judged on folds of the training split only (valid
belongs to the gate, test to the record):

    python scripts/batching.py --data real        # kotone-ft train
    python scripts/batching.py --train FILE.jsonl  # any training set, e.g. a cycle's augmented train.jsonl

For each setting of `length_grouped_batches`, the LM fold ensemble the loop trains (3 members, the regression
student's defaults and the planner's starting hyperparameters, one torch thread) is trained on the training
rows; printed per setting: its out-of-fold MAE (raw / rounded), training seconds and optimizer steps, padded
tokens per real token; beside them the TF-IDF ridge's and the median's out-of-fold MAE on the same folds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loop.config import LoopConfig  # noqa: E402
from tools.data.dataset import load_dataset, load_jsonl  # noqa: E402
from tools.student.ensemble import train_fold_ensemble  # noqa: E402
from tools.student.recipes import baseline_oof  # noqa: E402


def padding_ratio(lengths: list[int], batch_size: int, grouped: bool, seed: int, epochs: int) -> float:
    import math

    from tools.student.regression_training import _batch_indices

    steps = epochs * math.ceil(len(lengths) / batch_size)
    padded = real = 0
    for step in range(steps):
        batch = _batch_indices(step, lengths, batch_size, seed, grouped=grouped)
        padded += max(lengths[i] for i in batch) * len(batch)
        real += sum(lengths[i] for i in batch)
    return padded / real


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", default="shipped", help="dataset whose train split is used (default: shipped)"
    )
    parser.add_argument("--train", type=Path, help="a training-rows file instead of --data's train split")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--settings", default="false,true", help="length_grouped_batches values, in order")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    rows = load_jsonl(args.train) if args.train else load_dataset(args.data).train
    config = LoopConfig()
    hparams = config.default_hparams()
    print(f"{len(rows)} training rows, {args.folds} folds, {hparams}")
    for kind in ("train-median", "tfidf-ridge"):
        oof = baseline_oof(kind, rows, args.folds)
        print(f"| {kind} | {oof.mae():.3f} / {oof.mae(rounded=True):.3f} | | | |")
    for setting in args.settings.split(","):
        grouped = setting.strip().lower() == "true"
        with tempfile.TemporaryDirectory() as folder:
            began = time.perf_counter()
            result = train_fold_ensemble(
                config.student,
                hparams,
                rows,
                n_folds=args.folds,
                base_spec=config.base_model,
                output_dir=Path(folder),
                seed=config.seed,
                options={"length_grouped_batches": grouped},
                progress=False,
            )
            wall = time.perf_counter() - began
            from tools.student.regression import RegressionStudent, format_input

            student = RegressionStudent.load(config.base_model, Path(folder) / "member_0")
            spec = student.spec
            lengths = [
                min(len(student.tokenizer(text)["input_ids"]), spec.config.max_length)
                for text in (
                    format_input(r.request_text, spec.common_lines, spec.config.prompt_prefix) for r in rows
                )
            ]
        assert result is not None
        steps = sum(m.steps for m in result.members)
        ratio = padding_ratio(
            lengths, hparams.batch_size * hparams.grad_accum, grouped, 0, int(hparams.epochs)
        )
        print(
            f"| LM ensemble, length_grouped_batches={grouped} | {result.oof.mae():.3f} / "
            f"{result.oof.mae(rounded=True):.3f} | {wall:.0f} s | {steps} | {ratio:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
