"""`python -m tools.evaluate`: score a student (and the baselines, always) on one split.

python -m tools.evaluate --data real --split valid                 # base model, both decoders
python -m tools.evaluate --student-dir artifacts/registry/cycle_3  # a trained student
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.core.env_vars import describe


def main(argv: list[str] | None = None) -> int:
    from tools.tracking.env import set_tracking_environment

    set_tracking_environment()  # before anything can import wandb / weave (they read it at import)
    from tools.core.cli import command_parser

    parser = command_parser(
        "tools.evaluate",
        "kotone-evaluate",
        description="Evaluate a student (and the baselines, always) on one split; write EvalReport JSON.",
        epilog="Environment:\n"
        + describe(
            ["KOTONE_CACHE", "KOTONE_PROGRESS_EVERY"], extra={"TQDM_DISABLE": "1 = no progress bars at all"}
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", default="shipped", help="'shipped', 'real' (../shared/kotone-ft), 'hub[:id]' or a folder"
    )
    parser.add_argument(
        "--split", default="valid", choices=["valid", "test"], help="split to score (default valid)"
    )
    parser.add_argument(
        "--base-model", default="bundled", help="'bundled' SmolLM2-135M-Instruct, a folder or a Hub id"
    )
    parser.add_argument(
        "--student-dir", type=Path, default=None, help="trained student folder (adapter/head)"
    )
    parser.add_argument(
        "--decoder",
        action="append",
        choices=["skeleton", "skeleton_ev", "free", "regression"],
        help="decoder(s) to run; repeat the flag for several (default: skeleton and skeleton_ev; "
        "a regression student has one, 'regression')",
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N rows (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--baselines-only", action="store_true", help="skip the model, print baselines only")
    parser.add_argument("--out", type=Path, default=None, help="folder for the EvalReport JSON files")
    args = parser.parse_args(argv)
    # Imported after parsing: `--help` answers without loading the data, the baselines or scikit-learn.
    from tools.core.atomic import atomic_write_json
    from tools.core.paths import file_stem
    from tools.data.dataset import DatasetError, SplitLeakError, load_dataset
    from tools.data.novelty import NoveltyModel, novelty_profile
    from tools.evaluation.harness import evaluate, evaluate_baselines, format_table

    try:
        data = load_dataset(args.data)
    except (DatasetError, SplitLeakError, FileNotFoundError) as exc:
        # A request in two splits would score the model on what it trained on: refuse, in one line.
        print(f"error: cannot evaluate on {args.data!r}: {exc}", file=sys.stderr)
        return 2
    rows = data.split(args.split)[: args.limit]
    if not rows:
        parser.error(f"split {args.split!r} of {data.name} is empty")
    dataset = f"{data.name}/{args.split}"
    reports = evaluate_baselines(data.train, rows, dataset=dataset)
    if not args.baselines_only:
        from tools.student.interface import load_student

        student = load_student(args.base_model, args.student_dir)
        generative = student.default_decoder("skeleton") == "skeleton"
        for decoder in args.decoder or (["skeleton", "skeleton_ev"] if generative else ["regression"]):
            reports.append(
                evaluate(
                    lambda texts, decoder=decoder: student.predict_batch(texts, decoder=decoder),
                    rows,
                    predictor=student.name,
                    decoder=decoder,
                    dataset=dataset,
                    batch_size=args.batch_size,
                )
            )
    print(f"\n{dataset}: {len(rows)} rows\n" + format_table(reports))
    if args.split != "train":
        novelty = (
            NoveltyModel().fit([r.request_text for r in data.train]).score([r.request_text for r in rows])
        )
        print(f"\nnovelty against the training split: {novelty_profile(novelty).sentence()}")
    if args.out:
        for report in reports:
            atomic_write_json(
                args.out / f"{file_stem(f'eval_{report.predictor}_{report.decoder}')}.json", report
            )
        print(f"\nreports written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
