"""Speed and memory figures of kotone-loop on this machine (run by hand; results go in docs/BENCHMARKS.md).

    python scripts/benchmark.py all              # every section, each in its own process (peak RSS per section)
    python scripts/benchmark.py decode --rows 20 # one section

Sections: decode (single-request p50/p95 per decoder + batched eval throughput, base model),
train-lora (generative LoRA s/step, tokens/s, peak RSS), train-regression (regression student: cache +
epoch time, peak RSS), serve-regression (regression student p50/p95), mcp (stdio server start, per call).
Figures print as markdown table rows; threads = torch.get_num_threads().
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.data.dataset import REAL_DATA_DIR, load_dataset  # noqa: E402

SECTIONS = ("decode", "train-lora", "train-regression", "serve-regression", "mcp")


def _rows(limit: int):
    data = load_dataset("real" if REAL_DATA_DIR.exists() else "shipped")
    return data, data.valid[:limit]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pcts(values: list[float]) -> str:
    return f"p50 {np.percentile(values, 50):.0f} ms / p95 {np.percentile(values, 95):.0f} ms"


def bench_decode(rows_limit: int) -> list[str]:
    from tools.student.generative import GenerativeStudent

    data, rows = _rows(rows_limit)
    student = GenerativeStudent.load("bundled")
    lines = []
    for decoder, n in (("skeleton", rows_limit), ("skeleton_ev", rows_limit), ("free", min(5, rows_limit))):
        student.predict_one(rows[0].request_text, decoder=decoder)  # warm-up
        latencies = [student.predict_one(r.request_text, decoder=decoder).latency_ms for r in rows[:n]]
        lines.append(
            f"| single request, `{decoder}` decoder, {n} {data.name} valid rows | {_pcts(latencies)} |"
        )
    start = time.perf_counter()
    student.predict_batch([r.request_text for r in rows], decoder="skeleton_ev", batch_size=8)
    per_row = (time.perf_counter() - start) / len(rows)
    lines.append(
        f"| eval throughput, `skeleton_ev`, batch 8 | {1 / per_row:.2f} rows/s ({per_row * 1000:.0f} ms/row) |"
    )
    lines.append(f"| peak RSS (decode section) | {_peak_rss_mb():.0f} MB |")
    return lines


def bench_train_lora(steps: int) -> list[str]:
    from tools.student.generative_training import TrainConfig, train_lora

    data, _ = _rows(1)
    rows = data.train[: steps * 8]
    with tempfile.TemporaryDirectory() as out:
        result = train_lora(TrainConfig(batch_size=8, epochs=1.0), rows, "bundled", Path(out), progress=False)
    return [
        f"| generative LoRA r16, all layers, batch 8, {result.steps} steps | {result.wall_s / result.steps:.1f} s/step, "
        f"{result.tokens_per_s:.0f} tokens/s, peak RSS {result.peak_rss_mb:.0f} MB |"
    ]


def bench_train_regression(epochs: float) -> list[str]:
    from tools.student.regression import RegressionConfig
    from tools.student.regression_training import train_regression

    data, _ = _rows(1)
    with tempfile.TemporaryDirectory() as out:
        result = train_regression(
            RegressionConfig(epochs=epochs), list(data.train), "bundled", Path(out), progress=False
        )
    return [
        f"| regression student (defaults), {len(data.train)} rows × {epochs:g} epochs | cache {result.cache_s:.0f} s, "
        f"total {result.wall_s:.0f} s, peak RSS {result.peak_rss_mb:.0f} MB |"
    ]


def bench_serve_regression(rows_limit: int) -> list[str]:
    from tools.student.regression import RegressionConfig, RegressionStudent
    from tools.student.regression_training import train_regression

    data, rows = _rows(rows_limit)
    with tempfile.TemporaryDirectory() as out:
        train_regression(RegressionConfig(epochs=0.1), list(data.train), "bundled", Path(out), progress=False)
        student = RegressionStudent.load("bundled", Path(out))
        student.predict_one(rows[0].request_text)
        latencies = [student.predict_one(r.request_text).latency_ms for r in rows]
    return [f"| regression student, single request, {len(rows)} valid rows | {_pcts(latencies)} |"]


def bench_mcp(calls: int) -> list[str]:
    from agent.mcp_client import McpEndpoint, open_session

    async def measure() -> tuple[float, list[float]]:
        with tempfile.TemporaryDirectory() as artifacts:
            env = McpEndpoint.local_stdio().env | {"KOTONE_ARTIFACTS": artifacts}
            start = time.perf_counter()
            async with open_session(McpEndpoint.local_stdio(env=env)) as session:
                await session.list_tools()
                started = time.perf_counter() - start
                latencies = [
                    (await session.call_tool("get_cycle_history_tool", {})).latency_ms for _ in range(calls)
                ]
        return started, latencies

    started, latencies = asyncio.run(measure())
    return [
        f"| MCP stdio server: spawn + initialize + tools/list | {started * 1000:.0f} ms |",
        f"| MCP tools/call `get_cycle_history_tool`, {calls} calls | {_pcts(latencies)} |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=(*SECTIONS, "all"))
    parser.add_argument("--rows", type=int, default=20, help="validation rows for latency sections")
    parser.add_argument("--steps", type=int, default=5, help="LoRA steps for train-lora")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs for train-regression")
    args = parser.parse_args(argv)
    if args.section == "all":
        import torch

        print(f"| figure ({torch.get_num_threads()} threads) | value |\n|---|---|", flush=True)
        for section in SECTIONS:
            extra = ["--rows", str(args.rows), "--steps", str(args.steps), "--epochs", str(args.epochs)]
            subprocess.run([sys.executable, __file__, section, *extra], check=True)
        return 0
    handlers = {
        "decode": lambda: bench_decode(args.rows),
        "train-lora": lambda: bench_train_lora(args.steps),
        "train-regression": lambda: bench_train_regression(args.epochs),
        "serve-regression": lambda: bench_serve_regression(args.rows),
        "mcp": lambda: bench_mcp(30),
    }
    for line in handlers[args.section]():
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
