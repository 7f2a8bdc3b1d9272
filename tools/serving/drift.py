"""Drift: how unlike the champion's training requests the validation split, or any batch of requests, is.

The champion's novelty model (saved beside its student) scores each request; a profile summarises a set
("n% of these requests are less familiar than 95% of training"). The validation texts are read from the
evaluation report registered beside the champion's student; only their wording is used, never their targets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import BaseModel, Field

from tools.core.contracts import ModelRecord
from tools.data.novelty import NoveltyModel, NoveltyProfile, novelty_profile
from tools.serving.champion import read_champion

EVAL_FILE = "eval_valid.json"  # written beside the registered student (loop.registry)


class DriftReport(BaseModel):
    champion_cycle: int
    champion_candidate: str
    training_rows: int | None = Field(description="rows the champion's novelty is calibrated on (null: none)")
    profiles: dict[str, NoveltyProfile] = Field(
        description="per set of requests ('valid', 'requests'), its novelty against the champion's training rows"
    )
    note: str = ""


def validation_texts(champion: ModelRecord) -> list[str]:
    """The request texts of the champion's validation report, or [] when it has none."""
    student_dir = champion.student_dir()
    path = student_dir.parent / EVAL_FILE if student_dir is not None else None
    if path is None or not path.is_file():
        return []
    return [row["request_text"] for row in json.loads(path.read_text(encoding="utf-8"))["rows"]]


def drift_report(requests: Sequence[str] | None = None, champion: ModelRecord | None = None) -> DriftReport:
    """The champion's novelty profile of its validation split and, when given, of `requests`."""
    champion = champion or read_champion()
    model = NoveltyModel.beside(champion.student_dir())
    report = DriftReport(
        champion_cycle=champion.cycle,
        champion_candidate=champion.candidate,
        training_rows=None if model is None else model.matrix.shape[0],
        profiles={},
    )
    if model is None:
        report.note = (
            "the champion has no novelty model (the untouched base model, or trained before novelty)"
        )
        return report
    sets = {"valid": validation_texts(champion), "requests": list(requests or [])}
    report.profiles = {name: novelty_profile(model.score(texts)) for name, texts in sets.items() if texts}
    return report
