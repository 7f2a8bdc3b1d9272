"""The shared vocabulary: the six hidden parameters, a training row, and a prediction."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:  # numpy is imported where a score is rounded: the settings and --help do not need it
    import numpy as np

DIMS: tuple[str, ...] = ("energy", "warmth", "brightness", "acousticness", "complexity", "nostalgia")
SCALE_MIN, SCALE_MAX = 0, 10

Score = Annotated[int, Field(ge=SCALE_MIN, le=SCALE_MAX)]


def rounded_scores(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """What the product serves for raw outputs: each rounded half up to an integer on the 0..10 scale (not
    numpy's half-to-even). The served JSON, the predict command and every rounded metric round this one way."""
    import numpy as np

    return np.clip(np.floor(np.asarray(values, dtype=float) + 0.5), SCALE_MIN, SCALE_MAX)


def round_scores(values: Sequence[float]) -> list[int]:
    """`rounded_scores` of one prediction, as the integers the JSON carries."""
    return [int(v) for v in rounded_scores(values)]


class SourceType(StrEnum):
    rule_prompt = "rule_prompt"
    request_text = "request_text"


class ParamVector(BaseModel):
    """Six integer hidden parameters on the 0..10 scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    energy: Score
    warmth: Score
    brightness: Score
    acousticness: Score
    complexity: Score
    nostalgia: Score

    def as_list(self) -> list[int]:
        return [getattr(self, d) for d in DIMS]

    @classmethod
    def from_list(cls, values: list[int]) -> ParamVector:
        return cls(**dict(zip(DIMS, values, strict=True)))

    def to_json(self) -> str:
        """The strict JSON the student must produce (compact, keys in DIMS order)."""
        return "{" + ",".join(f'"{d}":{getattr(self, d)}' for d in DIMS) + "}"


class TrainingRow(BaseModel):
    """One request -> hidden-params example. `origin` records where it came from (never trusted for scoring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_text: str = Field(min_length=1)
    source_type: SourceType
    target: ParamVector
    origin: str = "dataset"

    @field_validator("request_text")
    @classmethod
    def _has_words(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("request_text is blank (only whitespace)")
        return text


ServedBy = Literal["model", "fallback", "baseline", "none"]
DecoderName = Literal["free", "skeleton", "skeleton_ev", "regression", "baseline"]


class Prediction(BaseModel):
    """What one predictor said for one request. `values` is None when the output did not parse."""

    model_config = ConfigDict(extra="forbid")

    values: list[float] | None
    raw_output: str = ""
    json_valid: bool
    parse_error: str | None = None
    served_by: ServedBy = "model"
    latency_ms: float = 0.0


def rank_dims_by_weakness(ratios: dict[str, float], failures: dict[str, int]) -> list[str]:
    """Weakest first: the error ratio to the constant (tied when equal to two decimals), then the number of
    hard failures, then the fixed DIMS order. The diagnosis and the offline planner both rank this way."""
    return sorted(DIMS, key=lambda d: (-round(ratios.get(d, 0.0), 2), -failures.get(d, 0), DIMS.index(d)))
