"""`python -m loop.report`: one self-contained HTML page (inline SVG, no script, no network) to review the loop.

- trend: the champion's validation MAE as a step line over the cycles that ran, every candidate as a dot
  coloured by its verdict (side by side within a cycle), the reference baselines as dashed lines, raw and
  rounded on their own panels, round ticks from 0 up;
- CV (train, out-of-fold) against valid MAE for every candidate: the diagonal is "CV predicted valid";
- every candidate of every cycle in one table: verdict and why (the gate checks it failed, each with its value
  and threshold), valid and CV MAE, p95 latency, its hyperparameter changes, per-dim MAE as heat cells
  (against the TF-IDF ridge), the gate's gain and bootstrap P against what it needed, wall time, links to its
  cycle's decision log and its W&B run (the offline run folder), its Weave evaluation, and the test split's
  record score of promoted champions beside the ridge's;
- grouped bars per dim: zero-shot base, champion, ridge, median constant, with their values;
- a banner when the last run stopped on a plateau;
- drift: the novelty profile of the validation split against the champion's training rows, and of a batch of
  requests a user points at (`--requests FILE`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from loop.plateau import PLATEAU_FILE
from tools.core.atomic import atomic_write_text
from tools.core.paths import cycle_dir, loop_dir, registry_dir
from tools.core.records import RecordError, read_champion, read_history

if TYPE_CHECKING:
    from tools.evaluation.metrics import EvalReport
    from tools.serving.drift import DriftReport

WIDTH, HEIGHT, PAD = 520, 230, 42
VERDICT_COLOURS = {"promoted": "#1b7f3b", "rejected": "#b3261e", "winner": "#d18f00"}
OTHER_COLOUR = "#9a9a9a"
CHAMPION_COLOUR = "#00798c"
BAR_COLOURS = {
    "zero-shot base": "#9a9a9a",
    "champion": CHAMPION_COLOUR,
    "tfidf-ridge": "#edae49",
    "train-median": "#6c5b7b",
}


def _figure(value: float) -> str:
    """A gate figure as a reader scans it: whole milliseconds, three significant digits below 100."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


class FailedCheck(BaseModel):
    """A gate check a candidate did not pass, as the report states it."""

    name: str
    value: float | None
    threshold: float | None
    detail: str = ""

    def text(self) -> str:
        if self.value is None or self.threshold is None:
            return f"{self.name}: {self.detail}" if self.detail else self.name
        return f"{self.name} {_figure(self.value)} (threshold {_figure(self.threshold)})"


class CandidateRow(BaseModel):
    cycle: int
    name: str
    description: str
    verdict: str
    note: str = ""
    failed_checks: list[FailedCheck] = []
    p95_latency_ms: float | None = None
    hparam_changes: list[str] = []
    wandb_run: str | None = None
    weave_evaluation: str | None = None
    valid_mae: float | None = None
    valid_mae_rounded: float | None = None
    cv_mae: float | None = None
    per_dim_mae: dict[str, float] = {}
    gain: float | None = None
    p_better: float | None = None
    p_needed: float | None = None
    wall_s: float | None = None
    eval_run_id: str | None = None
    test_mae_rounded: float | None = None


class CycleRow(BaseModel):
    cycle: int
    status: str
    wall_s: float | None
    champion_mae: float | None
    champion_mae_rounded: float | None
    decision_log: str | None
    candidates: list[CandidateRow]


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _report(path: Path) -> EvalReport | None:
    from tools.evaluation.metrics import EvalReport

    return EvalReport.model_validate_json(path.read_text()) if path.is_file() else None


def _link(path: Path, page: Path) -> str | None:
    """A link from the page to `path`, relative so the artifacts folder can be moved whole."""
    if not path.exists():
        return None
    return os.path.relpath(path, page.parent.resolve() if not page.parent.exists() else page.parent)


def _test_score(cycle: int, name: str) -> float | None:
    report = _report(registry_dir() / f"cycle_{cycle}" / name / "eval_test_record.json")
    return report.vector_mae_rounded if report else None


def cycle_rows(page: Path) -> list[CycleRow]:
    """One row per history line (crashed and interrupted ones too), each with all its candidates."""
    runs = _offline_run_folders()
    evaluations = _weave_evaluations()
    rows = []
    for entry in read_history():
        cycle = entry.cycle
        decision = (
            _read_json(cycle_dir(cycle) / "decision.json")
            if entry.status in ("promoted", "rejected")
            else None
        )
        detail = {c["name"]: c for c in decision["candidates"]} if decision else {}
        gate = decision["gate"]["candidates"] if decision else {}
        candidates = []
        for outcome in entry.candidates:
            name = outcome.name
            row = detail.get(name, {})
            checks = {c["name"]: c for c in gate.get(name, {}).get("checks", [])}
            registered = _read_json(registry_dir() / f"cycle_{cycle}" / name / "record.json")
            run_id = registered["record"]["eval_run_id"] if registered else None
            candidates.append(
                CandidateRow(
                    cycle=cycle,
                    name=name,
                    description=outcome.description,
                    verdict=row.get("status", outcome.status),
                    note=outcome.note,
                    failed_checks=[FailedCheck(**c) for c in checks.values() if not c["passed"]],
                    p95_latency_ms=(row.get("valid") or {}).get("p95_latency_ms") or _p95(cycle, name),
                    hparam_changes=[
                        f"{c['name']} {c['before']} → {c['after']}" for c in row.get("hparam_patch") or []
                    ],
                    wandb_run=_link(runs[run_id], page) if run_id in runs else None,
                    weave_evaluation=evaluations.get(run_id),
                    valid_mae=outcome.valid_mae,
                    valid_mae_rounded=outcome.valid_mae_rounded,
                    cv_mae=outcome.cv_mae,
                    per_dim_mae=(row.get("valid") or {}).get("per_dim_mae")
                    or (_per_dim(cycle, name) if cycle == 0 else {}),
                    gain=checks.get("mae_margin", {}).get("value"),
                    p_better=checks.get("bootstrap", {}).get("value"),
                    p_needed=checks.get("bootstrap", {}).get("threshold"),
                    wall_s=row.get("training_wall_s"),
                    eval_run_id=run_id,
                    test_mae_rounded=_test_score(cycle, name) if outcome.status == "promoted" else None,
                )
            )
        champion = (decision or {}).get("champion_after", {}).get("metrics", {})
        if cycle == 0:
            best = next((c for c in candidates if c.verdict == "promoted"), None)
            champion = (
                {"vector_mae": best.valid_mae, "vector_mae_rounded": best.valid_mae_rounded} if best else {}
            )
        rows.append(
            CycleRow(
                cycle=cycle,
                status=entry.status,
                wall_s=entry.wall_s,
                champion_mae=champion.get("vector_mae"),
                champion_mae_rounded=champion.get("vector_mae_rounded"),
                decision_log=_link(cycle_dir(cycle) / "decision_log.md", page) if cycle > 0 else None,
                candidates=candidates,
            )
        )
    return rows


def _p95(cycle: int, name: str) -> float | None:
    report = _report(registry_dir() / f"cycle_{cycle}" / name / "eval_valid.json")
    return report.p95_latency_ms if report else None


def _offline_run_folders() -> dict[str, Path]:
    """Run id -> its offline W&B run folder (what `kotone-publish` uploads)."""
    from tools.tracking.env import tracking_settings

    folder = tracking_settings().wandb_dir
    found = sorted(folder.glob("**/offline-run-*-*")) if folder.is_dir() else []
    return {path.name.rsplit("-", 1)[1]: path for path in found if path.is_dir()}


def _weave_evaluations() -> dict[str, str]:
    """W&B run id -> the id of the Weave evaluation (Evaluation.evaluate call) linked to it."""
    from tools.tracking.call_filters import CallFilters
    from tools.tracking.env import tracking_settings
    from tools.tracking.local_store import LocalTrackingStore

    settings = tracking_settings()
    if not settings.weave_db.is_file():
        return {}
    calls = LocalTrackingStore(settings).query_calls(
        CallFilters(op_name_contains="Evaluation.evaluate", trace_roots_only=True)
    )
    return {c.wb_run_id.rsplit("/", 1)[-1]: c.id for c in calls if c.wb_run_id}


def _per_dim(cycle: int, name: str) -> dict[str, float]:
    report = _report(registry_dir() / f"cycle_{cycle}" / name / "eval_valid.json")
    return report.per_dim_mae if report else {}


def baselines() -> dict[str, EvalReport]:
    found = {}
    for name in ("tfidf-ridge", "train-median"):
        report = _report(registry_dir() / "cycle_0" / name / "eval_valid.json")
        if report is not None:
            found[name] = report
    return found


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 × 10^k), never below 0: an MAE is not
    negative, and a tick at -0.01 only says the padding was computed, not measured."""
    low = max(0.0, low)
    span = high - low or max(abs(high), 1.0)
    raw = span / (count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = [round(start + k * step, 10) for k in range(int(math.ceil((high - start) / step)) + 1)]
    if ticks[-1] <= high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _decimals(ticks: list[float]) -> int:
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    return max(0, -math.floor(math.log10(step) + 1e-9))


def _side_by_side(dots: list[tuple[int, float, Any]], spread: float) -> list[tuple[int, float, Any, float]]:
    """Candidates of one cycle spread across `spread` (in x units of one cycle) so no two markers overlap."""
    by_cycle: dict[int, list[tuple[int, float, Any]]] = {}
    for dot in dots:
        by_cycle.setdefault(dot[0], []).append(dot)
    placed: list[tuple[int, float, Any, float]] = []
    for i, group in by_cycle.items():
        for n, (_, value, c) in enumerate(group):
            offset = 0.0 if len(group) == 1 else (n / (len(group) - 1) - 0.5) * spread
            placed.append((i, value, c, offset))
    return placed


def trend_chart(rows: list[CycleRow], references: dict[str, float], *, rounded: bool) -> str:
    """Champion step line + candidate dots by verdict + dashed baselines; x = the cycles that ran."""
    ran = [r for r in rows if r.champion_mae is not None]
    if not ran:
        return '<p class="empty">no finished cycles yet</p>'
    key = "valid_mae_rounded" if rounded else "valid_mae"
    champion = [(i, r.champion_mae_rounded if rounded else r.champion_mae) for i, r in enumerate(ran)]
    dots = [
        (i, getattr(c, key), c)
        for i, r in enumerate(ran)
        for c in r.candidates
        if getattr(c, key) is not None and not c.name.startswith("base-")
    ]
    values = [v for _, v in champion if v is not None] + [v for _, v, _ in dots] + list(references.values())
    ticks = nice_ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1]
    inset = 24  # room inside the axes for a cycle's candidates, side by side
    step = (WIDTH - 2 * PAD - 2 * inset) / max(len(ran) - 1, 1)
    dots = _side_by_side(dots, spread=min(step * 0.6, 2 * inset - 12) if len(ran) > 1 else 2 * inset)

    def sx(i: float) -> float:
        return PAD + inset + i * step if len(ran) > 1 else WIDTH / 2

    def sy(v: float) -> float:
        return HEIGHT - PAD - (v - low) / (high - low) * (HEIGHT - 2 * PAD)

    label = "rounded" if rounded else "raw"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="validation MAE per cycle, {label}">'
    ]
    parts.append(
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
    )
    parts.append(f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>')
    for i, r in enumerate(ran):
        parts.append(
            f'<text x="{sx(i):.1f}" y="{HEIGHT - PAD + 15}" class="tick" text-anchor="middle">{r.cycle}</text>'
        )
    for v in ticks:
        parts.append(
            f'<text x="{PAD - 5}" y="{sy(v) + 3:.1f}" class="tick" text-anchor="end">{v:.{_decimals(ticks)}f}</text>'
        )
    for n, (name, value) in enumerate(references.items()):
        x, anchor = (WIDTH - PAD, "end") if n % 2 == 0 else (PAD + 4, "start")
        parts.append(
            f'<line x1="{PAD}" y1="{sy(value):.1f}" x2="{WIDTH - PAD}" y2="{sy(value):.1f}" class="baseline"/>'
            f'<text x="{x}" y="{sy(value) - 3:.1f}" class="tick" text-anchor="{anchor}">{name} {value:.3f}</text>'
        )
    points = [(i, v) for i, v in champion if v is not None]
    path = []
    for n, (i, v) in enumerate(points):
        if n:
            path.append(f"{sx(i):.1f},{sy(points[n - 1][1]):.1f}")
        path.append(f"{sx(i):.1f},{sy(v):.1f}")
    parts.append(
        f'<polyline points="{" ".join(path)}" fill="none" stroke="{CHAMPION_COLOUR}" stroke-width="2.5" class="series"/>'
    )
    for i, value, c, offset in dots:
        colour = VERDICT_COLOURS.get(c.verdict, OTHER_COLOUR)
        parts.append(
            f'<circle cx="{sx(i) + offset:.1f}" cy="{sy(value):.1f}" r="4.5" fill="{colour}" class="dot">'
            f"<title>cycle {c.cycle} {c.name} ({c.verdict}): {value:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def cv_vs_valid(rows: list[CycleRow]) -> str:
    """Every trained candidate's CV MAE (out-of-fold on train) against its valid MAE; the diagonal is where
    the CV estimate predicted valid exactly. Points far above it were flattered by CV."""
    points = [
        (c.cv_mae, c.valid_mae, c)
        for r in rows
        for c in r.candidates
        if c.cv_mae is not None and c.valid_mae is not None
    ]
    if not points:
        return '<p class="empty">no candidate has both a CV and a valid MAE yet</p>'
    size, pad = 300, 42
    values = [v for x, y, _ in points for v in (x, y)]
    ticks = nice_ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1]

    def scale(v: float, flip: bool) -> float:
        at = (v - low) / (high - low) * (size - 2 * pad)
        return size - pad - at if flip else pad + at

    decimals = _decimals(ticks)
    parts = [
        f'<svg class="chart" viewBox="0 0 {size} {size}" role="img" aria-label="CV MAE against valid MAE">'
    ]
    parts.append(f'<line x1="{pad}" y1="{size - pad}" x2="{size - pad}" y2="{size - pad}" class="axis"/>')
    parts.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{size - pad}" class="axis"/>')
    parts.append(
        f'<line x1="{scale(low, False):.1f}" y1="{scale(low, True):.1f}" x2="{scale(high, False):.1f}" '
        f'y2="{scale(high, True):.1f}" class="baseline"/>'
    )
    for v in ticks:
        parts.append(
            f'<text x="{scale(v, False):.1f}" y="{size - pad + 14}" class="tick" text-anchor="middle">{v:.{decimals}f}</text>'
            f'<text x="{pad - 5}" y="{scale(v, True) + 3:.1f}" class="tick" text-anchor="end">{v:.{decimals}f}</text>'
        )
    parts.append(
        f'<text x="{size / 2}" y="{size - 6}" class="tick" text-anchor="middle">CV MAE (train, out-of-fold)</text>'
    )
    parts.append(
        f'<text x="12" y="{size / 2}" class="tick" text-anchor="middle" transform="rotate(-90 12 {size / 2})">valid MAE</text>'
    )
    for x, y, c in points:
        colour = VERDICT_COLOURS.get(c.verdict, OTHER_COLOUR)
        parts.append(
            f'<circle cx="{scale(x, False):.1f}" cy="{scale(y, True):.1f}" r="4.5" fill="{colour}" '
            f'fill-opacity="0.8" class="cvdot"><title>cycle {c.cycle} {c.name} ({c.verdict}): CV {x:.3f}, '
            f"valid {y:.3f}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def dim_bars(profiles: dict[str, dict[str, float]]) -> str:
    from tools.core.schema import DIMS

    """Grouped bars per dim with their values; a bar far above the others is cut and marked."""
    if not profiles:
        return '<p class="empty">no evaluations yet</p>'
    width, height, pad = 760, 260, 36
    others = [v for name, p in profiles.items() if name != "zero-shot base" for v in p.values()]
    top = 1.25 * max(others or [v for p in profiles.values() for v in p.values()] or [1.0])
    group = (width - 2 * pad) / len(DIMS)
    bar = group * 0.8 / len(profiles)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="per-dim MAE bars">']
    parts.append(
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" class="axis"/>'
    )
    for d, dim in enumerate(DIMS):
        x0 = pad + d * group + group * 0.1
        parts.append(
            f'<text x="{pad + (d + 0.5) * group:.1f}" y="{height - pad + 15}" class="tick" text-anchor="middle">{dim}</text>'
        )
        for n, (name, profile) in enumerate(profiles.items()):
            value = profile.get(dim)
            if value is None:
                continue
            shown = min(value, top)
            h = shown / top * (height - 2 * pad)
            x, y = x0 + n * bar, height - pad - h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" fill="{BAR_COLOURS.get(name, OTHER_COLOUR)}" class="bar">'
                f"<title>{name} {dim}: {value:.3f}</title></rect>"
                f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" class="value" text-anchor="middle">{value:.2f}{"↑" if value > top else ""}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def heat(value: float | None, reference: float | None) -> str:
    """Cell background: green where better than the ridge on that dim, red where worse."""
    if value is None or not reference:
        return ""
    ratio = value / reference
    hue = 130 if ratio <= 1 else 0
    strength = min(abs(ratio - 1) * 1.6, 1.0)
    return f"background: hsla({hue}, 60%, 50%, {0.12 + 0.5 * strength:.2f})"


def drift(requests: list[str] | None = None) -> DriftReport | None:
    """The champion's novelty profile of valid (and of `requests`); None without a champion."""
    from tools.serving.champion import ChampionUnavailable
    from tools.serving.drift import drift_report

    try:
        return drift_report(requests)
    except ChampionUnavailable:
        return None


def build_page(out_path: Path, requests: list[str] | None = None) -> Path:
    from loop.report_steering import steering_view

    rows = cycle_rows(out_path)
    refs = baselines()
    champion_record = read_champion()
    champion_report = (
        _report(
            registry_dir() / f"cycle_{champion_record.cycle}" / champion_record.candidate / "eval_valid.json"
        )
        if champion_record
        else None
    )
    base_reports = [
        r
        for p in sorted((registry_dir() / "cycle_0").glob("base-*/eval_valid.json"))
        if (r := _report(p)) and r.vector_mae is not None
    ]
    # A decoder stopped early (cycle 0) was scored on part of the rows: not a profile to compare.
    full_rows = {r.data_hash for r in refs.values()}
    base_reports = [r for r in base_reports if not full_rows or r.data_hash in full_rows]
    best_base = min(base_reports, key=lambda r: r.vector_mae or float("inf"), default=None)
    profiles: dict[str, dict[str, float]] = {}
    if best_base:
        profiles["zero-shot base"] = best_base.per_dim_mae
    if champion_report:
        profiles["champion"] = champion_report.per_dim_mae
    for name, report in refs.items():
        profiles[name] = report.per_dim_mae
    ridge = refs.get("tfidf-ridge")
    from tools.core.prompting import render

    html = render(
        "report.html.j2",
        rows=rows,
        champion=champion_record,
        champion_report=champion_report,
        champion_test=_test_score(champion_record.cycle, champion_record.candidate)
        if champion_record
        else None,
        ridge_test=_test_score(0, "tfidf-ridge"),
        refs=refs,
        best_base=best_base,
        raw_svg=trend_chart(
            rows, {n: r.vector_mae for n, r in refs.items() if r.vector_mae is not None}, rounded=False
        ),
        rounded_svg=trend_chart(
            rows,
            {n: r.vector_mae_rounded for n, r in refs.items() if r.vector_mae_rounded is not None},
            rounded=True,
        ),
        bars_svg=dim_bars(profiles),
        cv_svg=cv_vs_valid(rows),
        plateau=_read_json(loop_dir() / PLATEAU_FILE),
        ridge_per_dim=ridge.per_dim_mae if ridge else {},
        heat=heat,
        bar_colours=BAR_COLOURS,
        drift=drift(requests),
        steering=steering_view(),
    )
    atomic_write_text(out_path, html)
    return out_path


def main(argv: list[str] | None = None) -> int:
    from tools.core.cli import command_parser

    parser = command_parser("loop.report", "kotone-report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="HTML file (default artifacts/loop/report.html)"
    )
    parser.add_argument(
        "--requests",
        type=Path,
        default=None,
        help="JSONL file of requests (rows with request_text): show their novelty against the champion",
    )
    args = parser.parse_args(argv)
    requests = None
    if args.requests:
        from tools.serving.champion import RequestFileError, read_requests

        try:
            batch = read_requests(args.requests)
        except RequestFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for problem in batch.problems:
            print(f"error: {problem}", file=sys.stderr)
        if batch.problems:
            return 2
        requests = [row["request_text"] for row in batch.rows]
    try:
        path = build_page(args.out or loop_dir() / "report.html", requests)
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
