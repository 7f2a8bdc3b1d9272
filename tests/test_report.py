"""The HTML review page: self-contained, and its charts really render in a browser."""

import shutil
import subprocess

import numpy as np
import pytest

from loop.history import append_history
from loop.registry import promote, register_candidate
from loop.report import build_page
from tools.core.atomic import atomic_write_json, atomic_write_text
from tools.core.contracts import CycleHistoryEntry
from tools.core.paths import cycle_dir
from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.evaluation.metrics import build_report, score_row

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _report(error: float, predictor: str):
    rng = np.random.default_rng(0)
    rows = [
        TrainingRow(
            request_text=f"r{i}", source_type=SourceType.rule_prompt, target=ParamVector.from_list([5] * 6)
        )
        for i in range(20)
    ]
    results = [
        score_row(i, r, Prediction(values=(5 + rng.normal(0, error, 6)).tolist(), json_valid=True), "model")
        for i, r in enumerate(rows)
    ]
    return build_report(results, predictor=predictor, decoder="d", dataset="x", data_hash="h")


@pytest.fixture
def three_cycles(tmp_path, monkeypatch):
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    base, better, worse = _report(2.0, "base"), _report(0.8, "c1"), _report(1.2, "c2")
    ridge = _report(1.0, "tfidf-ridge")
    atomic_write_json(cycle_dir(0) / "eval_baseline_tfidf-ridge.json", ridge)
    champion_before = {0: None, 1: base.vector_mae, 2: better.vector_mae}
    for cycle, report, status in ((0, base, "baseline"), (1, better, "promoted"), (2, worse, "rejected")):
        register_candidate(cycle, None, report, base_model="tiny", eval_run_id=None)
        if status != "rejected":
            promote(cycle)
        atomic_write_text(cycle_dir(cycle) / "decision_log.md", f"# cycle {cycle}\n")
        append_history(
            CycleHistoryEntry(
                cycle=cycle,
                status=status,
                description=f"cycle {cycle}",
                champion_mae=champion_before[cycle],
                candidate_mae=report.vector_mae,
                candidate_mae_rounded=report.vector_mae_rounded,
                gate_failed_checks=["mae_margin"] if status == "rejected" else [],
                started_at="2026-11-27T00:00:00+00:00",
            )
        )
    return tmp_path / "artifacts" / "loop" / "report.html"


def test_page_is_self_contained_with_trend_radar_verdicts_and_links(three_cycles):
    html = build_page(three_cycles).read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count('class="series"') >= 4  # three trend lines + two radar polygons (minus empty ones)
    assert 'aria-label="per-dim MAE radar"' in html
    assert "rejected" in html and "promoted" in html and "mae_margin" in html
    assert 'href="cycle_1/decision_log.md"' in html


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed")
def test_headless_chromium_renders_the_charts(three_cycles, tmp_path):
    from PIL import Image

    page = build_page(three_cycles)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,900",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    teal = np.abs(pixels - [0x00, 0x79, 0x8C]).sum(axis=1) < 40  # champion radar and trend colour
    red = np.abs(pixels - [0xD1, 0x49, 0x5B]).sum(axis=1) < 40  # champion MAE line
    assert teal.sum() > 200, "the charts' teal series did not render"
    assert red.sum() > 50, "the trend line did not render"
