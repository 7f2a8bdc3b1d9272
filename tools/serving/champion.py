"""The current champion as a predictor: one JSON line per request, whatever kind of student it is."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tools.core import records
from tools.core.contracts import ModelRecord
from tools.core.schema import DIMS, Prediction, round_scores
from tools.data.novelty import NoveltyModel, NoveltyProfile, novelty_profile


class ChampionUnavailable(LookupError):
    """There is no usable champion (none yet, or its record cannot be read); the message says which."""


class PredictionLine(BaseModel):
    """What the champion answered for one request: the six parameters as the game reads them."""

    request_text: str
    prediction: dict[str, int] | None = Field(
        description="the six parameters, rounded to integers on 0..10; null when the output did not parse"
    )
    values: list[float] | None = Field(description="the raw outputs in DIMS order (before rounding)")
    json_valid: bool
    served_by: str
    latency_ms: float
    parse_error: str | None = None
    novelty: float | None = Field(
        None,
        description="how unlike the champion's training requests this one is: the share of training rows "
        "more familiar than it (0..1; >= 0.95: less familiar than 95% of training); null when the champion "
        "has no training rows (the untouched base model)",
    )


def batch_novelty(lines: Sequence[PredictionLine]) -> NoveltyProfile | None:
    """The batch's novelty profile, or None when the champion serves no novelty."""
    scores = [line.novelty for line in lines if line.novelty is not None]
    return novelty_profile(scores) if scores else None


def read_champion() -> ModelRecord:
    """The current champion record, or `ChampionUnavailable` with a one-line reason."""
    try:
        champion = records.read_champion()
    except records.RecordError as exc:
        raise ChampionUnavailable(str(exc)) from None
    if champion is None:
        raise ChampionUnavailable(
            f"no champion yet ({records.champion_path()} does not exist): run `python -m loop.run` to make one"
        )
    return champion


def to_line(text: str, prediction: Prediction, novelty: float | None = None) -> PredictionLine:
    rounded = (
        None if prediction.values is None else dict(zip(DIMS, round_scores(prediction.values), strict=True))
    )
    return PredictionLine(
        request_text=text,
        prediction=rounded,
        values=None if prediction.values is None else [round(v, 4) for v in prediction.values],
        json_valid=prediction.json_valid,
        served_by=prediction.served_by,
        latency_ms=round(prediction.latency_ms, 3),
        parse_error=prediction.parse_error,
        novelty=novelty,
    )


class ChampionPredictor:
    """The champion's student, loaded once; `predict(texts)` answers in batches."""

    def __init__(self, champion: ModelRecord) -> None:
        from tools.student.interface import load_student

        self.champion = champion
        student_dir = champion.student_dir()
        if student_dir is not None and not student_dir.is_dir():
            raise ChampionUnavailable(f"the champion's student folder {student_dir} is missing")
        self._student = load_student(champion.base_model, student_dir)
        self.novelty = NoveltyModel.beside(student_dir)
        self.decoder = self._student.default_decoder(champion.decoder)

    @classmethod
    def current(cls) -> ChampionPredictor:
        return cls(read_champion())

    def predict(self, texts: Sequence[str], batch_size: int = 16) -> list[PredictionLine]:
        lines: list[PredictionLine] = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            predictions = self._student.predict_batch(batch, decoder=self.decoder)
            novelty = self.novelty.score(batch).tolist() if self.novelty else [None] * len(batch)
            lines += [to_line(*answer) for answer in zip(batch, predictions, novelty, strict=True)]
        return lines


MAX_REQUEST_CHARS = 4000  # one request's length at most: the command line and predict_tool both refuse more


class RequestFileError(ValueError):
    """A request file cannot be read at all; the message names the file."""


class RequestBatch(BaseModel):
    """A JSONL request file read line by line: the rows to answer and one `file:line: why` per bad line."""

    rows: list[dict[str, Any]]
    problems: list[str]


def request_problem(text: Any) -> str | None:
    """Why `text` cannot be answered (None when it can)."""
    if not isinstance(text, str) or not text.strip():
        return "request_text is missing or blank"
    if len(text) > MAX_REQUEST_CHARS:
        return f"request_text is {len(text)} characters; at most {MAX_REQUEST_CHARS}"
    return None


def parse_requests(data: bytes, source: str) -> RequestBatch:
    """Each non-blank line must be a JSON object with an answerable `request_text` (other fields, targets
    included, are kept and not checked). A bad line is reported and skipped; the others are kept."""
    rows, problems = [], []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{source}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{where}: not UTF-8 text")
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: expected a JSON object with request_text")
            continue
        problem = request_problem(record.get("request_text"))
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        rows.append(record)
    return RequestBatch(rows=rows, problems=problems)


def read_requests(path: Path) -> RequestBatch:
    """`parse_requests` of a file; `RequestFileError` when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RequestFileError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_requests(data, str(path))
