"""Experiment driver for the regression student: train on a dataset's train split, score its valid split.

    python scripts/exp_regression.py --name l8_m4 --set layers_kept=8 --set lora_layers=4 --set epochs=3

Scores every valid row with single-request calls (`predict_one`), so the report's p50/p95 latency is the
per-request figure, and prints it beside the median and TF-IDF ridge baselines (same harness). One JSON line
per run is appended to `<artifacts>/exp_regression/results.jsonl`, crashed runs included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.core.atomic import append_line  # noqa: E402
from tools.core.paths import artifacts_dir  # noqa: E402
from tools.data.dataset import load_dataset  # noqa: E402
from tools.evaluation.harness import evaluate, evaluate_baselines, format_table  # noqa: E402
from tools.evaluation.metrics import EvalReport  # noqa: E402
from tools.student.regression import RegressionConfig, RegressionStudent  # noqa: E402
from tools.student.regression_training import train_regression  # noqa: E402


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`key=value` pairs; values are read as JSON where they parse (numbers, null, lists), else as strings."""
    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def summary(report: EvalReport) -> dict[str, object]:
    return {
        "vector_mae": report.vector_mae,
        "vector_mae_rounded": report.vector_mae_rounded,
        "by_source_rounded": {k: v.vector_mae_rounded for k, v in report.by_source_type.items()},
        "by_source_raw": {k: v.vector_mae for k, v in report.by_source_type.items()},
        "per_dim_mae_rounded": report.per_dim_mae_rounded,
        "p50_latency_ms": report.p50_latency_ms,
        "p95_latency_ms": report.p95_latency_ms,
        "json_valid_rate": report.json_valid_rate,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="run name (folder under artifacts/exp_regression)")
    parser.add_argument("--data", default="real", help="'real', 'shipped' or a folder")
    parser.add_argument("--base-model", default="bundled")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="RegressionConfig field"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (training and serving)")
    parser.add_argument("--eval-only", action="store_true", help="score an already trained student folder")
    parser.add_argument("--int8", action="store_true", help="serve with int8 dynamic quantization")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    root = artifacts_dir() / "exp_regression"
    student_dir = root / args.name
    data = load_dataset(args.data)
    record: dict[str, object] = {
        "name": args.name + ("+int8" if args.int8 else ""),
        "data": data.name,
        "overrides": args.set,
        "argv": sys.argv,
    }
    began = time.perf_counter()
    try:
        if not args.eval_only:
            config = RegressionConfig(**parse_overrides(args.set))
            result = train_regression(config, data.train, args.base_model, student_dir)
            record["train"] = result.model_dump(mode="json")
        student = RegressionStudent.load(args.base_model, student_dir, quantize_int8=args.int8 or None)
        dataset = f"{data.name}/valid"
        report = evaluate(
            lambda texts: [student.predict_one(t) for t in texts],
            data.valid,
            predictor=args.name,
            decoder=student.decoder,
            dataset=dataset,
            progress=False,
        )
        baselines = evaluate_baselines(data.train, data.valid, dataset=dataset)
        print(f"\n{dataset}: {len(data.valid)} rows\n" + format_table([*baselines, report]))
        for r in [*baselines, report]:
            print(
                f"  {r.predictor:<28} by source (rounded): "
                + ", ".join(f"{k} {v.vector_mae_rounded:.3f}" for k, v in r.by_source_type.items())
            )
        record.update(
            status="ok", valid=summary(report), baselines={b.predictor: summary(b) for b in baselines}
        )
    except Exception as exc:  # a crashed run is still one line in the results log
        record.update(status="crash", error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    record["wall_s"] = round(time.perf_counter() - began, 1)
    append_line(root / "results.jsonl", json.dumps(record))
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
