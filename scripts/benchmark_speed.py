"""Wall clock, per-cycle time, peak RSS and machine load of one loop run, for a speed comparison.

    python scripts/benchmark_speed.py --root /tmp/speed19-base --artifacts /tmp/b-art --out base.json -- --cycles 1
    python scripts/benchmark_speed.py --root . --artifacts /tmp/n-art --out new.json -- --cycles 1
    python scripts/benchmark_speed.py --compare base.json new.json

Runs `python -m loop.run ARGS` of the project at `--root` (its own code first on PYTHONPATH) with its own
artifacts folder, samples the resident memory of the whole process tree and the 1-minute load average every
`--every` seconds, then reads each cycle's wall time from the run's history. The machine is shared: the load
beside each figure says how much else ran; compare two versions measured in the same session, as ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil


def tree_rss_mb(root: psutil.Process) -> float:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def first_line_times(log: Path, started: float) -> dict[str, float]:
    """Seconds from the start until the console first showed cycle 0's champion (from the timed log)."""
    found: dict[str, float] = {}
    if not log.is_file():
        return found
    for line in log.read_text(errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        if "cycle 0: champion is" in text and "champion_shown_s" not in found:
            found["champion_shown_s"] = round(float(stamp) - started, 1)
    return found


def run(args: argparse.Namespace) -> dict:
    root = Path(args.root).resolve()
    artifacts = Path(args.artifacts).resolve()
    env = {**os.environ, "KOTONE_ARTIFACTS": str(artifacts), "PYTHONPATH": str(root)}
    command = [sys.executable, "-m", "loop.run", *args.loop_args]
    log = artifacts.parent / f"{artifacts.name}.console.log"
    artifacts.mkdir(parents=True, exist_ok=True)
    began = time.time()
    load_samples: list[float] = []
    peak = 0.0
    with log.open("w") as out:
        # Each console line gets a time stamp, so "when did the first champion show" is measurable.
        child = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        process = psutil.Process(child.pid)
        os.set_blocking(child.stdout.fileno(), False)  # type: ignore[union-attr]
        next_sample = 0.0
        while True:
            chunk = child.stdout.readline()  # type: ignore[union-attr]
            while chunk:
                out.write(f"{time.time():.3f} {chunk}")
                out.flush()
                chunk = child.stdout.readline()  # type: ignore[union-attr]
            if child.poll() is not None:
                break
            if time.time() >= next_sample:
                with contextlib.suppress(psutil.NoSuchProcess):
                    peak = max(peak, tree_rss_mb(process))
                load_samples.append(os.getloadavg()[0])
                next_sample = time.time() + args.every
            time.sleep(0.05)
        rest = child.stdout.read()  # type: ignore[union-attr]
        if rest:
            out.write("".join(f"{time.time():.3f} {line}\n" for line in rest.splitlines()))
    wall = time.time() - began
    history = artifacts / "loop" / "history.jsonl"
    cycles = (
        [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        if history.exists()
        else []
    )
    return {
        "root": str(root),
        "command": " ".join(command),
        "exit": child.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak),
        "load_1min_mean": round(sum(load_samples) / len(load_samples), 2) if load_samples else None,
        "load_1min_max": round(max(load_samples), 2) if load_samples else None,
        "cycles": [
            {
                "cycle": c["cycle"],
                "status": c["status"],
                "wall_s": c.get("wall_s"),
                "candidates": len(c.get("candidates", [])),
                "champion": next(
                    (x["name"] for x in c.get("candidates", []) if x["status"] == "promoted"), None
                ),
            }
            for c in cycles
        ],
        **first_line_times(log, began),
    }


def compare(base: dict, new: dict) -> str:
    lines = [f"{'figure':<34}{'base':>12}{'new':>12}{'new/base':>10}"]

    def row(name: str, a: float | None, b: float | None) -> None:
        ratio = f"{b / a:.2f}" if a and b is not None else "-"
        lines.append(
            f"{name:<34}{a if a is not None else '-':>12}{b if b is not None else '-':>12}{ratio:>10}"
        )

    row("wall s", base["wall_s"], new["wall_s"])
    for cb, cn in zip(base["cycles"], new["cycles"], strict=False):
        row(f"cycle {cb['cycle']} wall s", cb["wall_s"], cn["wall_s"])
        if cb["candidates"] and cb["cycle"] > 0:
            row(
                f"cycle {cb['cycle']} candidates/hour",
                3600 * cb["candidates"] / cb["wall_s"],
                3600 * cn["candidates"] / cn["wall_s"],
            )
    row("peak RSS MB", base["peak_rss_mb"], new["peak_rss_mb"])
    row("load (1 min, mean)", base["load_1min_mean"], new["load_1min_mean"])
    lines.append(
        "champions: base "
        + ", ".join(f"{c['cycle']}:{c['champion']}" for c in base["cycles"])
        + " / new "
        + ", ".join(f"{c['cycle']}:{c['champion']}" for c in new["cycles"])
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="project checkout whose loop runs")
    parser.add_argument("--artifacts", help="artifacts folder of this run (fresh: cycle 0 runs)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BASE", "NEW"), help="print ratios")
    parser.add_argument("loop_args", nargs=argparse.REMAINDER, help="arguments of loop.run, after --")
    args = parser.parse_args(argv)
    if args.compare:
        base, new = (json.loads(p.read_text()) for p in args.compare)
        print(compare(base, new))
        return 0
    if not args.artifacts:
        parser.error("--artifacts is needed for a run")
    args.loop_args = args.loop_args[1:] if args.loop_args[:1] == ["--"] else args.loop_args
    figures = run(args)
    text = json.dumps(figures, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0 if figures["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
