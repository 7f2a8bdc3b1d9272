"""`python -m loop.report`: one self-contained HTML page (inline SVG, no script, no network) to review the loop.

- trend: the champion's validation MAE as a step line over the cycles that ran, every candidate as a dot
  coloured by its verdict, the reference baselines as dashed lines, raw and rounded on their own panels;
- every candidate of every cycle in one table: verdict, valid and CV MAE, per-dim MAE as heat cells (against
  the TF-IDF ridge), the gate's gain and bootstrap P against what it needed, wall time, W&B run ids, and the
  test split's record score of promoted champions beside the ridge's;
- grouped bars per dim: zero-shot base, champion, ridge, median constant, with their values;
- a banner when the last run stopped on a plateau.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from tools.core.atomic import atomic_write_text
from tools.core.paths import cycle_dir, loop_dir, registry_dir

if TYPE_CHECKING:
    from tools.evaluation.metrics import EvalReport

PLATEAU_FILE = "plateau.json"
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


class CandidateRow(BaseModel):
    cycle: int
    name: str
    description: str
    verdict: str
    note: str = ""
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


def _history() -> list[dict]:
    path = loop_dir() / "history.jsonl"
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def _link(path: Path, page: Path) -> str | None:
    if not path.exists():
        return None
    return str(path.relative_to(page.parent)) if path.is_relative_to(page.parent) else path.as_uri()


def _test_score(cycle: int, name: str) -> float | None:
    report = _report(registry_dir() / f"cycle_{cycle}" / name / "eval_test_record.json")
    return report.vector_mae_rounded if report else None


def cycle_rows(page: Path) -> list[CycleRow]:
    """One row per history line (crashed and interrupted ones too), each with all its candidates."""
    rows = []
    for entry in _history():
        cycle = entry["cycle"]
        decision = (
            _read_json(cycle_dir(cycle) / "decision.json")
            if entry["status"] in ("promoted", "rejected")
            else None
        )
        detail = {c["name"]: c for c in decision["candidates"]} if decision else {}
        gate = decision["gate"]["candidates"] if decision else {}
        candidates = []
        for outcome in entry.get("candidates", []):
            name = outcome["name"]
            row = detail.get(name, {})
            checks = {c["name"]: c for c in gate.get(name, {}).get("checks", [])}
            registered = _read_json(registry_dir() / f"cycle_{cycle}" / name / "record.json")
            candidates.append(
                CandidateRow(
                    cycle=cycle,
                    name=name,
                    description=outcome["description"],
                    verdict=row.get("status", outcome["status"]),
                    note=outcome.get("note", ""),
                    valid_mae=outcome.get("valid_mae"),
                    valid_mae_rounded=outcome.get("valid_mae_rounded"),
                    cv_mae=outcome.get("cv_mae"),
                    per_dim_mae=(row.get("valid") or {}).get("per_dim_mae")
                    or (_per_dim(cycle, name) if cycle == 0 else {}),
                    gain=checks.get("mae_margin", {}).get("value"),
                    p_better=checks.get("bootstrap", {}).get("value"),
                    p_needed=checks.get("bootstrap", {}).get("threshold"),
                    wall_s=row.get("training_wall_s"),
                    eval_run_id=registered["record"]["eval_run_id"] if registered else None,
                    test_mae_rounded=_test_score(cycle, name) if outcome["status"] == "promoted" else None,
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
                status=entry["status"],
                wall_s=entry.get("wall_s"),
                champion_mae=champion.get("vector_mae"),
                champion_mae_rounded=champion.get("vector_mae_rounded"),
                decision_log=_link(cycle_dir(cycle) / "decision_log.md", page) if cycle > 0 else None,
                candidates=candidates,
            )
        )
    return rows


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
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    low, high = low - 0.08 * span, high + 0.08 * span
    step = (WIDTH - 2 * PAD) / max(len(ran) - 1, 1)

    def sx(i: float) -> float:
        return PAD + i * step if len(ran) > 1 else WIDTH / 2

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
    for k in range(5):
        v = low + (high - low) * k / 4
        parts.append(f'<text x="{PAD - 5}" y="{sy(v) + 3:.1f}" class="tick" text-anchor="end">{v:.2f}</text>')
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
    for i, value, c in dots:
        colour = VERDICT_COLOURS.get(c.verdict, OTHER_COLOUR)
        parts.append(
            f'<circle cx="{sx(i):.1f}" cy="{sy(value):.1f}" r="4.5" fill="{colour}" class="dot">'
            f"<title>cycle {c.cycle} {c.name} ({c.verdict}): {value:.3f}</title></circle>"
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


def build_page(out_path: Path) -> Path:
    rows = cycle_rows(out_path)
    refs = baselines()
    champion_record = _read_json(registry_dir() / "champion.json")
    champion_report = (
        _report(
            registry_dir()
            / f"cycle_{champion_record['cycle']}"
            / champion_record["candidate"]
            / "eval_valid.json"
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
        champion_test=_test_score(champion_record["cycle"], champion_record["candidate"])
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
        plateau=_read_json(loop_dir() / PLATEAU_FILE),
        ridge_per_dim=ridge.per_dim_mae if ridge else {},
        heat=heat,
        bar_colours=BAR_COLOURS,
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
