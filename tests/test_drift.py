"""Drift in the loop: the champion's novelty profile of the validation split and of a batch a user points at,
in the report page, `loop.report --requests`, the MCP tool the snapshot stage calls."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest
from mcp import Client

from loop.registry import promote, register_candidate
from loop.report import build_page
from loop.report import main as report_main
from tools.core.contracts import StudentRecipe
from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.data.novelty import NOVELTY_DIR, NoveltyModel
from tools.evaluation.baselines import TextBaseline
from tools.evaluation.metrics import build_report, score_row
from tools.serving.drift import drift_report

PLACES = ["harbour", "station", "garden", "market", "river", "temple", "bridge", "alley"]
COMBINATIONS = [
    f"a {mood} song for the {place} at dusk"
    for mood in ["calm", "sad", "warm", "cozy", "quiet"]
    for place in PLACES
]
HELD_BACK = {3, 17}
TRAIN = [
    TrainingRow(
        request_text=text,
        source_type=SourceType.request_text,
        target=ParamVector.from_list([(i + k) % 11 for k in range(6)]),
    )
    for i, text in enumerate(COMBINATIONS)
    if i not in HELD_BACK
]
# Validation: two unseen combinations of the training wording, two requests unlike anything in it.
VALID_TEXTS = [
    *(COMBINATIONS[i] for i in sorted(HELD_BACK)),
    "thunderous orchestral boss battle",
    "an electric riff for a spaceship",
]


@pytest.fixture
def champion(tmp_path, monkeypatch) -> NoveltyModel:
    """A ridge champion registered the way the loop registers one, its novelty model beside its student."""
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    student = tmp_path / "student"
    TextBaseline("tfidf-ridge").fit(TRAIN).save(student)
    model = NoveltyModel().fit([r.request_text for r in TRAIN])
    model.save(student / NOVELTY_DIR)
    rows = [
        TrainingRow(request_text=t, source_type=SourceType.request_text, target=TRAIN[0].target)
        for t in VALID_TEXTS
    ]
    results = [
        score_row(i, r, Prediction(values=[5.0] * 6, json_valid=True), "model") for i, r in enumerate(rows)
    ]
    report = build_report(results, predictor="ridge", decoder="baseline", dataset="x/valid", data_hash="h")
    register_candidate(
        0,
        "tfidf-ridge",
        student,
        report,
        base_model="tiny",
        decoder="baseline",
        recipe=StudentRecipe(family="baseline", baseline="tfidf-ridge"),
        eval_run_id=None,
    )
    promote(0, "tfidf-ridge")
    return model


def test_the_validation_profile_scores_the_champions_validation_requests_against_its_training_rows(champion):
    report = drift_report(["a sad song for the garden at dusk"])
    expected = champion.score(VALID_TEXTS)
    assert report.training_rows == len(TRAIN)
    assert report.profiles["valid"].n_requests == 4
    assert report.profiles["valid"].unfamiliar_share == float(np.mean(expected >= 0.95)) == 0.5
    assert report.profiles["requests"].n_requests == 1 and report.profiles["requests"].unfamiliar_share == 0.0


def test_the_report_shows_the_drift_of_valid_and_of_the_requests_a_user_points_at(champion, tmp_path):
    requests = tmp_path / "batch.jsonl"
    requests.write_text(
        "".join(
            json.dumps({"request_text": t}) + "\n"
            for t in ["laser cannon dubstep", "a calm song for the alley at dusk"]
        )
    )
    out = tmp_path / "report.html"
    assert report_main(["--out", str(out), "--requests", str(requests)]) == 0
    html = out.read_text()
    assert "Drift:" in html
    assert (
        'validation split</td><td class="num"><strong>50%</strong> less familiar than 95% of training' in html
    )
    assert 'requests given (--requests)</td><td class="num"><strong>50%</strong>' in html


def test_a_bad_requests_file_is_named_with_its_line_and_exit_code_2(champion, tmp_path, capsys):
    requests = tmp_path / "batch.jsonl"
    requests.write_text('{"request_text": "fine"}\n{"text": "no request"}\n')
    assert report_main(["--out", str(tmp_path / "r.html"), "--requests", str(requests)]) == 2
    assert "batch.jsonl:2: request_text is missing" in capsys.readouterr().err


def test_a_champion_without_a_novelty_model_says_so_instead_of_a_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    rows = [score_row(0, TRAIN[0], Prediction(values=[5.0] * 6, json_valid=True), "model")]
    report = build_report(rows, predictor="base", decoder="d", dataset="x", data_hash="h")
    register_candidate(
        0, "base-skeleton", None, report, base_model="tiny", decoder="d", recipe=None, eval_run_id=None
    )
    promote(0, "base-skeleton")
    assert drift_report().profiles == {}
    html = build_page(tmp_path / "report.html").read_text()
    assert "the champion has no novelty model" in html


def test_the_novelty_profile_tool_answers_for_the_champion_and_errors_without_one(
    champion, tmp_path, monkeypatch
):
    from loop.server.assemble import build_server

    async def call(arguments: dict) -> object:
        async with Client(build_server()) as client:
            return await client.call_tool("get_novelty_profile_tool", arguments)

    result = anyio.run(call, {"request_texts": ["laser cannon dubstep"]})
    assert not result.is_error
    profiles = result.structured_content["profiles"]
    assert profiles["valid"]["unfamiliar_share"] == 0.5 and profiles["requests"]["unfamiliar_share"] == 1.0
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "empty"))
    result = anyio.run(call, {})
    assert result.is_error and "no champion yet" in result.content[0].text


def test_report_page_without_a_champion_has_no_drift_section(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    assert "Drift:" not in build_page(Path(tmp_path) / "report.html").read_text()


def test_an_evaluation_prints_the_novelty_of_the_split_against_train(tmp_path):
    import subprocess
    import sys

    from tools.data.dataset import row_to_record

    data = tmp_path / "data"
    data.mkdir()
    valid = [
        TrainingRow(request_text=t, source_type=SourceType.request_text, target=TRAIN[0].target)
        for t in VALID_TEXTS
    ]
    for split, rows in (("train", TRAIN), ("valid", valid)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(row_to_record(r)) + "\n" for r in rows))
    result = subprocess.run(
        [sys.executable, "-m", "tools.evaluate", "--data", str(data), "--baselines-only"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "novelty against the training split: 50% of these 4 requests are less familiar than 95% of training"
        in result.stdout
    )
