"""Scoring shared by the stages: a student on the frozen validation rows (with single-request latency), a
student's out-of-fold CV report on the training split, and logging both to W&B + Weave."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loop.config import LoopConfig
from tools.core.schema import Prediction, TrainingRow
from tools.data.dataset import text_key
from tools.evaluation.harness import evaluate
from tools.evaluation.latency import interleaved_latency
from tools.evaluation.metrics import EvalReport, build_report, score_row
from tools.student.folds import OOF_FILE, OutOfFold


@contextmanager
def single_thread() -> Iterator[None]:
    """Latency is a per-request figure: measured with one torch thread, as a server worker would run, so
    the calling thread does a request's work (its CPU time is the request's)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_request_latency(
    student: Any,
    decoder: str,
    rows: Sequence[TrainingRow],
    n: int,
    repeats: int,
    champion: tuple[Any, str] | None = None,
) -> dict:
    """p50 / p95 over `n` requests of each request's minimum thread CPU time over `repeats` single calls
    (1 thread), the `champion` (student, decoder) timed interleaved in the same window
    (`tools.evaluation.latency`)."""
    if not rows or n == 0:
        return {}
    texts = [r.request_text for r in rows[:n]]
    with single_thread():
        probe = interleaved_latency(
            lambda text: student.predict_one(text, decoder=decoder),
            texts,
            repeats=repeats,
            champion=(lambda text: champion[0].predict_one(text, decoder=champion[1])) if champion else None,
        )
    return {"p50_latency_ms": probe.cpu_p50_ms, "p95_latency_ms": probe.cpu_p95_ms, "latency": probe}


def evaluate_student(
    student: Any,
    rows: Sequence[TrainingRow],
    *,
    predictor: str,
    dataset: str,
    config: LoopConfig,
    decoder: str | None = None,
    latency_repeats: int | None = None,
    champion: tuple[Any, str] | None = None,
) -> EvalReport:
    """A student on `rows`; the latency figures are single requests, not batch shares, timed interleaved
    with `champion` (its student and decoder) when given."""
    decoder = decoder or student.default_decoder(config.decoder)
    report = evaluate(
        lambda texts: student.predict_batch(texts, decoder=decoder),
        rows,
        predictor=predictor,
        decoder=decoder,
        dataset=dataset,
        batch_size=config.eval_batch_size,
    )
    repeats = latency_repeats or config.latency_repeats
    latency = single_request_latency(student, decoder, rows, config.latency_requests, repeats, champion)
    return report.model_copy(update=latency)


def read_oof(student_dir: Path) -> OutOfFold | None:
    path = student_dir / OOF_FILE
    return OutOfFold.model_validate_json(path.read_text()) if path.is_file() else None


def cv_report(
    student_dir: Path, train: Sequence[TrainingRow], *, predictor: str, dataset: str
) -> EvalReport | None:
    """The student's out-of-fold predictions on the training split, scored like any evaluation."""
    oof = read_oof(student_dir)
    if oof is None or not oof.keys:
        return None
    by_key = {text_key(r.request_text): r for r in train}
    rows = [by_key[k] for k in oof.keys if k in by_key]
    predictions = dict(zip(oof.keys, oof.predictions, strict=True))
    results = [
        score_row(
            i,
            row,
            Prediction(values=predictions[text_key(row.request_text)], json_valid=True, served_by="model"),
            "model",
        )
        for i, row in enumerate(rows)
    ]
    from tools.data.dataset import data_hash

    return build_report(
        results,
        predictor=predictor,
        decoder="out-of-fold",
        dataset=f"{dataset}/train-cv",
        data_hash=data_hash(rows),
    )


def log_valid(
    report: EvalReport, *, cycle: int, name: str, role: str, extra: dict[str, Any] | None = None
) -> str:
    from tools.tracking import log_evaluation

    return log_evaluation(
        report,
        name=f"cycle{cycle}-{name}",
        group=f"cycle_{cycle}",
        config={"role": role, "cycle": cycle, "candidate": name, "split": "valid", **(extra or {})},
    )


def log_cv(
    report: EvalReport | None, *, cycle: int, name: str, role: str, extra: dict[str, Any] | None = None
) -> str | None:
    """The CV report as its own eval run (`role: cv`): what the planners read about a student. Its summary
    covers every training row; its tables and Weave traces keep the worst rows (the ones planners read), not
    hundreds of rows per candidate."""
    if report is None:
        return None
    from tools.tracking import log_evaluation

    return log_evaluation(
        report.model_copy(update={"rows": report.top_failures}),
        name=f"cycle{cycle}-{name}-cv",
        group=f"cycle_{cycle}",
        config={
            "role": "cv",
            "of_role": role,
            "cycle": cycle,
            "candidate": name,
            "split": "train-cv",
            **(extra or {}),
        },
    )
