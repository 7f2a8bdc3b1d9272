"""Cycle 0's early stop: a zero-shot decoder is scored on growing subsamples and stopped only once it is surely
worse than the best baseline on the rows scored so far, within a fixed error budget split over the looks.
A decoder that could win (better, tied, or only noisily worse) is scored on every row."""

from __future__ import annotations

import numpy as np
import pytest

from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.evaluation.harness import evaluate
from tools.evaluation.sequential import evaluate_sequentially, look_sizes, look_threshold

N_ROWS = 120
ALPHA = 0.05


def _rows(n: int = N_ROWS) -> list[TrainingRow]:
    rng = np.random.default_rng(3)
    return [
        TrainingRow(
            request_text=f"request {i}",
            source_type=SourceType.request_text,
            target=ParamVector.from_list(rng.integers(3, 8, size=6).tolist()),
        )
        for i in range(n)
    ]


ROWS = _rows()
BY_TEXT = {row.request_text: (i, row) for i, row in enumerate(ROWS)}


def offset_predictor(offset_of_row):
    """A predictor whose answer is the target plus `offset_of_row(i)` on every dim; counts the rows it saw."""
    seen: list[int] = []

    def predict(texts: list[str]) -> list[Prediction]:
        out = []
        for text in texts:
            i, row = BY_TEXT[text]
            seen.append(i)
            values = (np.asarray(row.target.as_list(), dtype=float) + offset_of_row(i)).tolist()
            out.append(Prediction(values=values, json_valid=True))
        return out

    predict.seen = seen  # type: ignore[attr-defined]
    return predict


REFERENCE = evaluate(
    offset_predictor(lambda i: 1.0),
    ROWS,
    predictor="tfidf-ridge",
    decoder="baseline",
    dataset="x",
    progress=False,
)


def judge(predict):
    return evaluate_sequentially(
        predict,
        ROWS,
        reference=REFERENCE,
        alpha=ALPHA,
        rounded=False,
        predictor="base",
        decoder="skeleton",
        dataset="x",
        first=16,
        samples=2000,
        seed=0,
    )


def test_looks_double_from_the_first_and_end_with_every_row():
    assert look_sizes(120, 16) == [16, 32, 64, 120]
    assert look_sizes(128, 16) == [16, 32, 64, 128]
    assert look_sizes(10, 16) == [10]


def test_the_error_budget_is_split_over_the_interim_looks_only():
    # 16, 32 and 64 rows are decisions; the full score at 120 is not.
    assert look_threshold(ALPHA, 120, 16) == pytest.approx(1 - ALPHA / 3)
    assert look_threshold(ALPHA, 17, 16) == pytest.approx(1 - ALPHA)


def test_a_surely_worse_decoder_stops_at_the_first_look_and_says_so():
    predict = offset_predictor(lambda i: 4.0)
    result = judge(predict)
    assert result.stopped is not None
    assert result.stopped.n_scored == 16 and len(predict.seen) == 16
    assert result.report.n_rows == 16
    assert result.stopped.p_worse == 1.0 and result.stopped.mean_gain == pytest.approx(-3.0)
    assert result.stopped.note().startswith(
        "scored on 16 of 120 rows, stopped: surely worse than tfidf-ridge (P(worse) 1.000 >= 0.9833"
    )


def test_a_better_decoder_is_scored_on_every_row_like_any_evaluation():
    predict = offset_predictor(lambda i: 0.5)
    result = judge(predict)
    full = evaluate(offset_predictor(lambda i: 0.5), ROWS, predictor="base", decoder="skeleton", dataset="x")
    assert result.stopped is None and sorted(predict.seen) == list(range(N_ROWS))
    assert result.report.n_rows == N_ROWS
    assert result.report.data_hash == full.data_hash == REFERENCE.data_hash
    assert result.report.vector_mae == pytest.approx(full.vector_mae)
    assert [r.index for r in result.report.rows] == list(range(N_ROWS))


def test_a_tied_decoder_is_not_worse():
    result = judge(offset_predictor(lambda i: 1.0))
    assert result.stopped is None and result.report.n_rows == N_ROWS


def test_a_decoder_only_noisily_worse_is_scored_in_full():
    # Per row 0.6 better or 0.65 worse in turn: slightly worse on average, nowhere near surely.
    result = judge(offset_predictor(lambda i: 0.4 if i % 2 else 1.65))
    assert result.stopped is None and result.report.n_rows == N_ROWS


def test_a_decoder_worse_only_beyond_a_look_is_stopped_at_the_look_that_sees_it():
    order = np.random.default_rng(0).permutation(N_ROWS).tolist()
    first_32 = set(order[:32])
    # Tied on the first 32 rows of the shuffle, far worse on the rest: the 64-row look stops it.
    result = judge(offset_predictor(lambda i: 1.0 if i in first_32 else 5.0))
    assert result.stopped is not None and result.stopped.n_scored == 64


def unparsed_predictor(texts: list[str]) -> list[Prediction]:
    return [
        Prediction(values=None, json_valid=False, raw_output="a friendly chat, no numbers") for _ in texts
    ]


def test_a_decoder_that_surely_cannot_serve_is_stopped_with_an_exact_bound():
    result = evaluate_sequentially(
        unparsed_predictor,
        ROWS,
        reference=REFERENCE,
        alpha=ALPHA,
        rounded=False,
        predictor="base",
        decoder="free",
        dataset="x",
        min_valid_rate=0.98,
    )
    assert result.stopped is not None and result.stopped.unservable and result.stopped.n_scored == 16
    # 0 of 16 parsed: the one-sided exact bound at the per-look level alpha / 3 is 1 - (alpha / 3) ** (1 / 16).
    assert result.stopped.valid_rate_bound == pytest.approx(1 - (ALPHA / 3) ** (1 / 16))
    assert result.stopped.note().startswith(
        "scored on 16 of 120 rows, stopped: surely cannot serve (parsed 0 of 16"
    )


def test_a_decoder_that_parses_every_row_is_not_stopped_for_its_valid_rate():
    result = evaluate_sequentially(
        offset_predictor(lambda i: 0.5),
        ROWS,
        reference=REFERENCE,
        alpha=ALPHA,
        rounded=False,
        predictor="base",
        decoder="skeleton",
        dataset="x",
        min_valid_rate=0.98,
    )
    assert result.stopped is None and result.report.n_rows == N_ROWS
