"""The evaluation harness: one predictor, one split -> `EvalReport`, with the baselines printed beside it.

python -m tools.evaluate --data real --split valid                 # base model, both decoders
python -m tools.evaluate --student-dir artifacts/registry/cycle_3  # a trained student
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from tools.core.atomic import atomic_write_json
from tools.core.schema import Prediction, ServedBy, TrainingRow
from tools.data.dataset import data_hash, load_dataset
from tools.evaluation.baselines import MedianBaseline, RidgeBaseline
from tools.evaluation.metrics import EvalReport, build_report, score_row

PredictBatch = Callable[[list[str]], list[Prediction]]


def evaluate(
    predict_batch: PredictBatch,
    rows: Sequence[TrainingRow],
    *,
    predictor: str,
    decoder: str,
    dataset: str,
    subject: ServedBy = "model",
    batch_size: int = 16,
    progress: bool = True,
) -> EvalReport:
    """Run `predict_batch` over `rows` in chunks and score only what `subject` served."""
    results = []
    chunks = range(0, len(rows), batch_size)
    bar = tqdm(chunks, desc=f"eval {predictor} [{decoder}]", unit="batch", disable=not progress, leave=False)
    for start in bar:
        chunk = rows[start : start + batch_size]
        predictions = predict_batch([r.request_text for r in chunk])
        if len(predictions) != len(chunk):
            raise RuntimeError(f"{predictor} returned {len(predictions)} predictions for {len(chunk)} rows")
        results.extend(
            score_row(start + i, row, pred, subject)
            for i, (row, pred) in enumerate(zip(chunk, predictions, strict=True))
        )
    return build_report(
        results, predictor=predictor, decoder=decoder, dataset=dataset, data_hash=data_hash(list(rows))
    )


def evaluate_baselines(
    train: Sequence[TrainingRow], rows: Sequence[TrainingRow], *, dataset: str
) -> list[EvalReport]:
    """Median constant and TF-IDF+ridge, fitted on `train`, scored by the same harness."""
    reports = []
    for baseline in (MedianBaseline().fit(train), RidgeBaseline().fit(train)):
        reports.append(
            evaluate(
                baseline.predict_batch,
                rows,
                predictor=baseline.name,
                decoder="baseline",
                dataset=dataset,
                subject="baseline",
                batch_size=max(len(rows), 1),
                progress=False,
            )
        )
    return reports


def format_table(reports: Sequence[EvalReport]) -> str:
    """One line per predictor: raw and rounded MAE, validity, latency; per-dim MAE below."""
    lines = [r.headline() for r in reports]
    dims = list(reports[0].per_dim_mae) if reports and reports[0].per_dim_mae else []
    if dims:
        lines.append("")
        lines.append(f"{'per-dim MAE':<44}" + "".join(f"{d[:6]:>8}" for d in dims))
        for r in reports:
            label = f"{r.predictor} [{r.decoder}]"
            lines.append(f"{label:<44}" + "".join(f"{r.per_dim_mae.get(d, float('nan')):8.3f}" for d in dims))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.evaluate",
        description="Evaluate a student (and the baselines, always) on one split; write EvalReport JSON.",
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

    data = load_dataset(args.data)
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
    if args.out:
        for report in reports:
            atomic_write_json(args.out / f"eval_{report.predictor}_{report.decoder}.json", report)
        print(f"\nreports written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
