"""The evaluation harness: one predictor, one split -> `EvalReport`, with the baselines printed beside it
(the command is `python -m tools.evaluate`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tools.core.progress import Progress
from tools.core.schema import Prediction, ServedBy, TrainingRow
from tools.data.dataset import data_hash
from tools.evaluation.baselines import REFERENCE_BASELINES, TextBaseline
from tools.evaluation.metrics import EvalReport, RowResult, build_report, score_row

PredictBatch = Callable[[list[str]], list[Prediction]]


def score_rows(
    predict_batch: PredictBatch,
    rows: Sequence[TrainingRow],
    indices: Sequence[int],
    *,
    subject: ServedBy = "model",
    batch_size: int = 16,
    bar: Progress | None = None,
    label: str = "the predictor",
) -> list[RowResult]:
    """`rows[i]` for each i of `indices`, predicted in chunks and scored; each result keeps its index i."""
    results = []
    for start in range(0, len(indices), batch_size):
        chunk = list(indices[start : start + batch_size])
        predictions = predict_batch([rows[i].request_text for i in chunk])
        if len(predictions) != len(chunk):
            raise RuntimeError(f"{label} returned {len(predictions)} predictions for {len(chunk)} rows")
        results.extend(
            score_row(i, rows[i], pred, subject) for i, pred in zip(chunk, predictions, strict=True)
        )
        if bar is not None:
            bar.update(1)
    return results


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
    chunks = range(0, len(rows), batch_size)
    bar = Progress(len(chunks), f"eval {predictor} [{decoder}]", unit="batch", enabled=progress, every=10)
    results = score_rows(
        predict_batch,
        rows,
        range(len(rows)),
        subject=subject,
        batch_size=batch_size,
        bar=bar,
        label=predictor,
    )
    bar.close()
    return build_report(
        results, predictor=predictor, decoder=decoder, dataset=dataset, data_hash=data_hash(list(rows))
    )


def evaluate_baselines(
    train: Sequence[TrainingRow], rows: Sequence[TrainingRow], *, dataset: str
) -> list[EvalReport]:
    """The reference baselines (median constant, TF-IDF + ridge), fitted on `train`, scored by the same harness."""
    return [
        evaluate_baseline(TextBaseline(kind).fit(train), rows, dataset=dataset)
        for kind in REFERENCE_BASELINES
    ]


def evaluate_baseline(baseline: TextBaseline, rows: Sequence[TrainingRow], *, dataset: str) -> EvalReport:
    return evaluate(
        baseline.predict_batch,
        rows,
        predictor=baseline.spec.kind,
        decoder=baseline.decoder,
        dataset=dataset,
        batch_size=max(len(rows), 1),
        progress=False,
    )


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
