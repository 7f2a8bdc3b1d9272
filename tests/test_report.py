"""The HTML review page: self-contained, every candidate of every cycle in it, and its charts really render."""

import shutil
import subprocess

import numpy as np
import pytest

from loop.decision_log import CandidateRow, DecisionRecord, HParamChange, TableRow, write_decision
from loop.gate import GateConfig, gate_candidates
from loop.history import append_history
from loop.plateau import PLATEAU_FILE
from loop.registry import champion_report, current_champion, promote, register_candidate
from loop.report import build_page
from tools.core.atomic import atomic_write_json
from tools.core.contracts import (
    CandidateOutcome,
    CandidateSpec,
    CycleHistoryEntry,
    CyclePlan,
    StudentRecipe,
)
from tools.core.paths import cycle_dir, loop_dir
from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.evaluation.metrics import build_report, score_row

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROWS = [
    TrainingRow(
        request_text=f"r{i}", source_type=SourceType.rule_prompt, target=ParamVector.from_list([5] * 6)
    )
    for i in range(40)
]


def _report(error: float, predictor: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    results = [
        score_row(i, r, Prediction(values=(5 + rng.normal(0, error, 6)).tolist(), json_valid=True), "model")
        for i, r in enumerate(ROWS)
    ]
    return build_report(results, predictor=predictor, decoder="d", dataset="x", data_hash="h")


def _spec(name: str, components: list[str]) -> CandidateSpec:
    return CandidateSpec(
        name=name, student=StudentRecipe(components=components), focus_dims=["energy"], reason=f"try {name}"
    )


def _cycle(
    cycle: int,
    reports: dict,
    specs: list[CandidateSpec],
    baselines: dict,
    patches: dict[str, list[HParamChange]] | None = None,
) -> None:
    """Register a cycle's candidates, gate them for real, write its decision record and history line."""
    before = current_champion()
    champion = champion_report()
    for spec in specs:
        register_candidate(
            cycle,
            spec.name,
            None,
            reports[spec.name],
            base_model="tiny",
            decoder="regression",
            recipe=spec.student,
            eval_run_id=f"run{cycle}{spec.name}",
        )
    gate = gate_candidates(
        before, champion, reports, {s.name: ["energy"] for s in specs}, GateConfig(confirm=False), baselines
    )
    if gate.winner:
        promote(cycle, gate.winner)
    plan = CyclePlan(cycle=cycle, candidates=specs, reasons={"search": "two moves"})
    rows = [
        CandidateRow(
            name=s.name,
            description=s.describe(),
            reason=s.reason,
            status="promoted" if s.name == gate.winner else "rejected",
            hparam_patch=(patches or {}).get(s.name, []),
            augmentation=None,
            cv_mae=0.5,
            cv_mae_rounded=0.4,
            valid=TableRow.from_report(s.name, reports[s.name]),
            p_value=gate.p_values[s.name],
            holm_threshold=gate.holm_thresholds[s.name],
            failed_checks=gate.candidates[s.name].failed,
            member_valid_mae=[],
            training_wall_s=12.0,
        )
        for s in specs
    ]
    record = DecisionRecord(
        cycle=cycle,
        started_at="2026-11-30T00:00:00+00:00",
        finished_at="2026-11-30T00:01:00+00:00",
        verdict="promoted" if gate.winner else "rejected",
        sources=[],
        runs_read=[],
        weak_dims=[],
        learnability=[],
        plan=plan,
        candidates=rows,
        winner=gate.winner,
        table=[],
        gate=gate,
        winner_gate=gate.candidates.get(gate.winner) if gate.winner else None,
        champion_before=before,
        champion_after=current_champion(),
    )
    write_decision(record, cycle_dir(cycle))
    append_history(
        CycleHistoryEntry(
            cycle=cycle,
            status=record.verdict,
            description=f"cycle {cycle}",
            started_at=record.started_at,
            wall_s=60.0,
            candidates=[
                CandidateOutcome(
                    name=r.name,
                    recipe_key=s.recipe_key(),
                    description=r.description,
                    status=r.status,
                    valid_mae=r.valid.vector_mae,
                    valid_mae_rounded=r.valid.vector_mae_rounded,
                    cv_mae=r.cv_mae,
                )
                for r, s in zip(rows, specs, strict=True)
            ],
        )
    )


@pytest.fixture
def two_cycles(tmp_path, monkeypatch):
    """Cycle 0 (base, median, ridge), cycle 1 (two candidates, one promoted), cycle 2 (two rejected), a crash."""
    monkeypatch.setenv("KOTONE_ARTIFACTS", str(tmp_path / "artifacts"))
    baselines = {"tfidf-ridge": _report(1.0, "tfidf-ridge"), "train-median": _report(1.6, "train-median")}
    outcomes = []
    for name, report in {**baselines, "base-skeleton": _report(4.0, "base")}.items():
        register_candidate(
            0, name, None, report, base_model="tiny", decoder="d", recipe=None, eval_run_id=f"run0{name}"
        )
        outcomes.append(
            CandidateOutcome(
                name=name,
                recipe_key="cycle0",
                description=name,
                status="promoted" if name == "tfidf-ridge" else "rejected",
                valid_mae=report.vector_mae,
                valid_mae_rounded=report.vector_mae_rounded,
            )
        )
    promote(0, "tfidf-ridge")
    append_history(
        CycleHistoryEntry(
            cycle=0, status="baseline", description="cycle 0", candidates=outcomes, started_at="x"
        )
    )
    _cycle(
        1,
        {"stack": _report(0.5, "stack", 1), "stack-cheap": _report(0.95, "cheap", 2)},
        [_spec("stack", ["train-median", "lm"]), _spec("stack-cheap", ["train-median"])],
        baselines,
    )
    slow = _report(0.55, "deeper", 3).model_copy(update={"p50_latency_ms": 1800.0, "p95_latency_ms": 2350.0})
    _cycle(
        2,
        {"deeper": slow, "lr-half": _report(0.7, "lr", 4)},
        [_spec("deeper", ["lm"]), _spec("lr-half", ["tfidf-ridge", "lm"])],
        baselines,
        patches={"deeper": [HParamChange(name="layers_kept", before=4, after=6)]},
    )
    # the offline W&B run folder of one candidate's evaluation (what kotone-publish uploads)
    (tmp_path / "artifacts" / "wandb" / "wandb" / "offline-run-20261130_000000-run2deeper").mkdir(
        parents=True
    )
    append_history(
        CycleHistoryEntry(cycle=3, status="crashed", description="crashed after plan: boom", started_at="x")
    )
    atomic_write_json(
        loop_dir() / PLATEAU_FILE, {"cycle": 2, "reason": "3 cycles without a promotion", "at": "now"}
    )
    return tmp_path / "artifacts" / "loop" / "report.html"


def test_every_candidate_is_on_the_self_contained_page_with_its_figures(two_cycles):
    html = build_page(two_cycles).read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for name in ("stack", "stack-cheap", "deeper", "lr-half", "tfidf-ridge", "train-median"):
        assert f">{name}<" in html, name
    assert "Plateau:" in html and "3 cycles without a promotion" in html
    assert (
        'aria-label="validation MAE per cycle, raw"' in html
        and 'aria-label="validation MAE per cycle, rounded"' in html
    )
    assert 'aria-label="per-dim MAE bars"' in html and 'class="bar"' in html
    assert "run1stack" in html  # W&B run ids
    assert 'href="cycle_1/decision_log.md"' in html
    assert "background: hsla(130" in html and "background: hsla(0" in html  # heat cells both ways
    assert ">crashed<" in html


def test_each_candidate_says_why_it_was_rejected_what_it_changed_and_where_its_runs_are(two_cycles):
    from loop.report import cycle_rows

    deeper = next(c for r in cycle_rows(two_cycles) for c in r.candidates if c.name == "deeper")
    failed = {check.name: check.text() for check in deeper.failed_checks}
    assert failed["latency"] == "latency 2350 (threshold 150)"
    assert deeper.p95_latency_ms == 2350.0
    assert deeper.hparam_changes == ["layers_kept 4 → 6"]
    html = build_page(two_cycles).read_text()
    assert "latency 2350 (threshold 150)" in html and "layers_kept 4 → 6" in html and ">2350<" in html
    assert 'href="../wandb/wandb/offline-run-20261130_000000-run2deeper"' in html
    assert html.count('href="cycle_2/decision_log.md"') == 2, "every candidate links its cycle's log"
    promoted = next(c for r in cycle_rows(two_cycles) for c in r.candidates if c.name == "stack")
    assert promoted.failed_checks == []


def test_cv_against_valid_shows_every_trained_candidate(two_cycles):
    html = build_page(two_cycles).read_text()
    assert 'aria-label="CV MAE against valid MAE"' in html
    assert html.count('class="cvdot"') == 4  # the four candidates of cycles 1 and 2 have both figures


def test_axis_ticks_are_round_and_never_below_zero():
    from loop.report import nice_ticks

    assert nice_ticks(0.05, 0.98) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.0, 0.07)[0] == 0.0
    assert nice_ticks(0.5, 0.5)[0] >= 0.0
    ticks = nice_ticks(1.02, 1.61)
    assert ticks[0] <= 1.02 and ticks[-1] >= 1.61 and all(t >= 0 for t in ticks)


def test_candidates_of_one_cycle_do_not_overlap_on_the_trend(two_cycles):
    import re

    from loop.report import baselines, cycle_rows, trend_chart

    rows = cycle_rows(two_cycles)
    raw = trend_chart(rows, {n: r.vector_mae for n, r in baselines().items()}, rounded=False)
    centres = [(float(x), float(y)) for x, y in re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', raw)]
    for n, (x1, y1) in enumerate(centres):
        for x2, y2 in centres[n + 1 :]:
            assert (x1 - x2) ** 2 + (y1 - y2) ** 2 >= 9.0**2 or abs(x1 - x2) >= 9.0, (x1, y1, x2, y2)
    ticks = re.findall(r'text-anchor="end">(-?[\d.]+)</text>', raw)
    assert ticks and all(not t.startswith("-") for t in ticks), ticks


def test_only_cycles_that_ran_are_on_the_trend_and_baselines_sit_on_their_own_scale(two_cycles):
    from loop.report import baselines, cycle_rows, trend_chart

    rows = cycle_rows(two_cycles)
    refs = baselines()
    raw = trend_chart(rows, {n: r.vector_mae for n, r in refs.items()}, rounded=False)
    rounded = trend_chart(rows, {n: r.vector_mae_rounded for n, r in refs.items()}, rounded=True)
    ticks = [line for line in raw.split("</text>") if 'text-anchor="middle"' in line]
    assert [t.rsplit(">", 1)[1] for t in ticks] == ["0", "1", "2"]  # the crashed cycle 3 is not on the axis
    assert f"tfidf-ridge {refs['tfidf-ridge'].vector_mae_rounded:.3f}" in rounded
    assert f"tfidf-ridge {refs['tfidf-ridge'].vector_mae:.3f}" in raw
    assert (
        raw.count('class="dot"') == 2 + 4
    )  # cycle 0's baselines and the four candidates, not the base model


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium is not installed")
def test_headless_chromium_renders_the_charts(two_cycles, tmp_path):
    from PIL import Image

    page = build_page(two_cycles)
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
            "--window-size=1300,1800",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    teal = np.abs(pixels - [0x00, 0x79, 0x8C]).sum(axis=1) < 40  # the champion's step line and bars
    green = np.abs(pixels - [0x1B, 0x7F, 0x3B]).sum(axis=1) < 40  # promoted candidates
    red = np.abs(pixels - [0xB3, 0x26, 0x1E]).sum(axis=1) < 40  # rejected candidates
    assert teal.sum() > 300, "the champion's line and bars did not render"
    assert green.sum() > 20 and red.sum() > 20, "the candidates' dots did not render"


def test_an_evaluation_logged_to_wandb_and_weave_is_linked_from_its_candidate(tmp_path):
    from tracking_support import log_runs, offline_tracking

    from loop.report import _offline_run_folders, _weave_evaluations

    with offline_tracking(tmp_path):
        runs = log_runs()
        evaluations = _weave_evaluations()
        folders = _offline_run_folders()
    assert evaluations[runs.eval_run_id] != evaluations[runs.baseline_run_id]
    assert (
        folders[runs.eval_run_id].name.endswith(f"-{runs.eval_run_id}") and folders[runs.eval_run_id].is_dir()
    )
