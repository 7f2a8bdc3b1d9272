"""The latency check cannot be flipped by the machine's load: it gates on each request's minimum thread CPU
time, timed interleaved with the champion in the same window, and records the load beside it. Run with
CPU-burning processes beside it, it gives the same verdicts as without."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from loop.gate import GateConfig, run_gate
from loop.stages.scoring import single_request_latency
from tools.core.schema import ParamVector, Prediction, SourceType, TrainingRow
from tools.evaluation.metrics import build_report, score_row

ROWS = [
    TrainingRow(
        request_text=f"request {i}",
        source_type=SourceType.request_text,
        target=ParamVector.from_list([5] * 6),
    )
    for i in range(12)
]


def burn(iterations: int) -> None:
    total = 0
    for i in range(iterations):
        total += i * i


class Busy:
    """A predictor whose every request costs a fixed amount of CPU work."""

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations

    def predict_one(self, text: str, decoder: str | None = None) -> Prediction:
        burn(self.iterations)
        return Prediction(values=[5.0] * 6, json_valid=True)


def calibrated_iterations(target_ms: float) -> int:
    """Loop iterations that take about `target_ms` of this thread's CPU time."""
    trial = 200_000
    began = time.thread_time()
    burn(trial)
    spent_ms = (time.thread_time() - began) * 1000
    return max(int(trial * target_ms / spent_ms), 1000)


def report_of(student: Busy, champion: Busy | None):
    results = [
        score_row(i, row, Prediction(values=[5.0] * 6, json_valid=True), "model")
        for i, row in enumerate(ROWS)
    ]
    report = build_report(results, predictor="p", decoder="d", dataset="x", data_hash="h")
    timing = single_request_latency(
        student, "d", ROWS, n=8, repeats=3, champion=(champion, "d") if champion else None
    )
    return report.model_copy(update=timing)


def verdicts(fast: Busy, slow: Busy, budget_ms: float) -> dict[str, bool]:
    config = GateConfig(max_p95_latency_ms=budget_ms, min_mae_improvement=0.0)
    champion = report_of(fast, None)
    out = {}
    for name, student in (("fast", fast), ("slow", slow)):
        result = run_gate(champion, report_of(student, fast), [], config)
        out[name] = result.check("latency").passed
    return out


@pytest.fixture
def burners():
    """Two busy processes (one per core of the reference machine), started and killed by this test."""
    started = []

    def start() -> None:
        started.extend(subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2))
        time.sleep(0.5)

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


def test_the_verdict_is_the_same_with_cpu_burners_beside_it(burners):
    unit = calibrated_iterations(5.0)
    fast, slow = Busy(unit), Busy(unit * 4)
    budget_ms = 5.0 * 2  # the fast one is well inside, the slow one well outside, in CPU time
    quiet = verdicts(fast, slow, budget_ms)
    burners()
    loaded = verdicts(fast, slow, budget_ms)
    assert quiet == loaded == {"fast": True, "slow": False}


def test_the_record_shows_wall_clock_the_champion_and_the_load():
    unit = calibrated_iterations(4.0)
    report = report_of(Busy(unit * 2), Busy(unit))
    probe = report.latency
    assert probe is not None and probe.requests == 8 and probe.repeats == 3
    assert report.p95_latency_ms == probe.cpu_p95_ms and report.p50_latency_ms == probe.cpu_p50_ms
    assert probe.champion_cpu_p95_ms is not None and 1.3 < probe.ratio_to_champion < 3.0
    assert probe.wall_p95_ms >= probe.cpu_p95_ms * 0.9 and probe.load_before >= 0
    detail = run_gate(report, report, [], GateConfig()).check("latency").detail
    assert "thread CPU per request" in detail and "champion in the same window" in detail
    assert "load average" in detail
