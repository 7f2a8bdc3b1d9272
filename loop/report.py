"""`python -m loop.report`: one self-contained HTML page (inline SVG, no network) to review the loop.

Metric trends across cycles, a per-dim MAE radar of champion vs base, every gate verdict, and a link to
each cycle's decision log.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from pydantic import BaseModel

from tools.core.atomic import atomic_write_text
from tools.core.paths import cycle_dir, loop_dir, registry_dir
from tools.core.prompting import render
from tools.core.schema import DIMS
from tools.evaluation.metrics import EvalReport

WIDTH, HEIGHT, PAD = 560, 240, 40


class CycleRow(BaseModel):
    cycle: int
    status: str
    champion_mae: float | None
    candidate_mae: float | None
    candidate_mae_rounded: float | None
    failed_checks: list[str]
    description: str
    decision_log: str | None


def _line_chart(series: dict[str, list[tuple[int, float]]], baselines: dict[str, float]) -> str:
    points = [p for values in series.values() for p in values]
    if not points:
        return '<p class="empty">no cycles yet</p>'
    xs = [x for x, _ in points] or [0]
    ys = [y for _, y in points] + list(baselines.values())
    x_min, x_max = min(xs), max(max(xs), min(xs) + 1)
    y_min, y_max = min(ys) * 0.95, max(ys) * 1.05
    sx = lambda x: PAD + (x - x_min) / (x_max - x_min) * (WIDTH - 2 * PAD)  # noqa: E731
    sy = lambda y: HEIGHT - PAD - (y - y_min) / (y_max - y_min or 1) * (HEIGHT - 2 * PAD)  # noqa: E731
    colours = ["#d1495b", "#00798c", "#edae49", "#30638e"]
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="MAE per cycle">']
    parts.append(
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
    )
    parts.append(f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>')
    for tick in range(x_min, x_max + 1):
        parts.append(f'<text x="{sx(tick):.1f}" y="{HEIGHT - PAD + 16}" class="tick">{tick}</text>')
    for i in range(5):
        y = y_min + (y_max - y_min) * i / 4
        parts.append(f'<text x="{PAD - 6}" y="{sy(y) + 4:.1f}" class="tick" text-anchor="end">{y:.2f}</text>')
    for i, (name, value) in enumerate(baselines.items()):
        label_x, anchor = (
            (WIDTH - PAD, "end") if i % 2 == 0 else (PAD + 6, "start")
        )  # labels must not overlap
        parts.append(
            f'<line x1="{PAD}" y1="{sy(value):.1f}" x2="{WIDTH - PAD}" y2="{sy(value):.1f}" class="baseline"/>'
            f'<text x="{label_x}" y="{sy(value) - 4:.1f}" class="tick" text-anchor="{anchor}">{name} {value:.3f}</text>'
        )
    for (name, values), colour in zip(series.items(), colours, strict=False):
        if not values:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" class="series"/>'
        )
        for x, y in values:
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{colour}"><title>{name} cycle {x}: {y:.3f}</title></circle>'
            )
    legend = "".join(
        f'<tspan fill="{c}" dx="12">● {n}</tspan>' for n, c in zip(series, colours, strict=False)
    )
    parts.append(f'<text x="{PAD}" y="{PAD - 14}" class="legend">{legend}</text></svg>')
    return "".join(parts)


def _radar(profiles: dict[str, dict[str, float]]) -> str:
    size, centre, radius = 300, 150, 110
    peak = max((v for p in profiles.values() for v in p.values()), default=1.0) or 1.0
    parts = [
        f'<svg class="chart radar" viewBox="0 0 {size} {size}" role="img" aria-label="per-dim MAE radar">'
    ]
    for ring in (0.25, 0.5, 0.75, 1.0):
        ring_pts = " ".join(
            f"{centre + radius * ring * math.sin(2 * math.pi * i / len(DIMS)):.1f},"
            f"{centre - radius * ring * math.cos(2 * math.pi * i / len(DIMS)):.1f}"
            for i in range(len(DIMS))
        )
        parts.append(f'<polygon points="{ring_pts}" class="ring"/>')
    for i, dim in enumerate(DIMS):
        angle = 2 * math.pi * i / len(DIMS)
        x, y = centre + (radius + 18) * math.sin(angle), centre - (radius + 18) * math.cos(angle)
        parts.append(f'<text x="{x:.1f}" y="{y:.1f}" class="tick" text-anchor="middle">{dim}</text>')
    for (name, profile), colour in zip(profiles.items(), ["#999999", "#00798c"], strict=False):
        pts = " ".join(
            f"{centre + radius * profile.get(d, 0) / peak * math.sin(2 * math.pi * i / len(DIMS)):.1f},"
            f"{centre - radius * profile.get(d, 0) / peak * math.cos(2 * math.pi * i / len(DIMS)):.1f}"
            for i, d in enumerate(DIMS)
        )
        parts.append(
            f'<polygon points="{pts}" fill="{colour}" fill-opacity="0.25" stroke="{colour}" stroke-width="2" class="series"><title>{name}</title></polygon>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _read_report(path: Path) -> EvalReport | None:
    return EvalReport.model_validate_json(path.read_text()) if path.exists() else None


def build_page(out_path: Path) -> Path:
    history_path = loop_dir() / "history.jsonl"
    entries = (
        [json.loads(line) for line in history_path.read_text().splitlines()] if history_path.exists() else []
    )
    rows = []
    for e in entries:
        log_path = cycle_dir(e["cycle"]) / "decision_log.md"
        rows.append(
            CycleRow(
                cycle=e["cycle"],
                status=e["status"],
                champion_mae=e.get("champion_mae"),
                candidate_mae=e.get("candidate_mae"),
                candidate_mae_rounded=e.get("candidate_mae_rounded"),
                failed_checks=e.get("gate_failed_checks", []),
                description=e.get("description", ""),
                decision_log=str(log_path.relative_to(out_path.parent))
                if log_path.exists() and log_path.is_relative_to(out_path.parent)
                else (str(log_path) if log_path.exists() else None),
            )
        )
    finished = [r for r in rows if r.status != "crashed"]
    champion_series = []
    for r in finished:
        if r.status in ("baseline", "promoted"):
            champion_series.append((r.cycle, r.candidate_mae))
        elif r.champion_mae is not None:
            champion_series.append((r.cycle, r.champion_mae))
    # The zero-shot base model is usually far off the scale of trained students: keep cycle 0 out of the
    # chart once later cycles exist, and name its figure in the heading instead.
    trained = any(r.cycle > 0 for r in finished)
    base_mae = next((r.candidate_mae for r in finished if r.cycle == 0), None)
    series = {
        "champion MAE": [(x, y) for x, y in champion_series if y is not None and (x > 0 or not trained)],
        "candidate MAE": [
            (r.cycle, r.candidate_mae) for r in finished if r.candidate_mae is not None and r.cycle > 0
        ],
        "candidate MAE (rounded)": [
            (r.cycle, r.candidate_mae_rounded)
            for r in finished
            if r.candidate_mae_rounded is not None and r.cycle > 0
        ],
    }
    baselines = {}
    for path in sorted(cycle_dir(0).glob("eval_baseline_*.json")):
        report = _read_report(path)
        if report and report.vector_mae is not None:
            baselines[report.predictor] = report.vector_mae
    base = _read_report(registry_dir() / "cycle_0" / "eval_valid.json")
    champion_path = registry_dir() / "champion.json"
    champion_cycle = json.loads(champion_path.read_text())["cycle"] if champion_path.exists() else None
    champion = (
        _read_report(registry_dir() / f"cycle_{champion_cycle}" / "eval_valid.json")
        if champion_cycle is not None
        else None
    )
    profiles = {}
    if base:
        profiles["base"] = base.per_dim_mae
    if champion and champion_cycle:
        profiles[f"champion (cycle {champion_cycle})"] = champion.per_dim_mae
    html = render(
        "report.html.j2",
        rows=rows,
        trend_svg=_line_chart(series, baselines),
        radar_svg=_radar(profiles) if profiles else '<p class="empty">no evaluations yet</p>',
        profiles=profiles,
        baselines=baselines,
        champion_cycle=champion_cycle,
        base_mae=base_mae if trained else None,
    )
    atomic_write_text(out_path, html)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loop.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="HTML file (default artifacts/loop/report.html)"
    )
    args = parser.parse_args(argv)
    path = build_page(args.out or loop_dir() / "report.html")
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
