"""Single-request latency that the machine's load cannot move: the candidate and the champion timed
interleaved, in the same process and thread, in the same window.

Wall-clock time per request doubles when another process takes the core; the CPU time the calling thread
spends on the request (`time.thread_time`) does not, and its minimum over a few repeats drops the cache and
scheduler noise that remains. So the gate's figure is the p95 over requests of each request's minimum thread
CPU time (torch runs single requests on the calling thread at one thread). The wall-clock figures, the
champion's in the same window, their ratio, and the 1-minute load average before and after are recorded
beside it, so a reader can see what the machine was doing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel

Request = Callable[[str], object]


class LatencyProbe(BaseModel):
    """One interleaved measurement (milliseconds): p50/p95 over requests of each request's minimum."""

    requests: int
    repeats: int
    cpu_p50_ms: float
    cpu_p95_ms: float
    wall_p50_ms: float
    wall_p95_ms: float
    champion_cpu_p95_ms: float | None = None
    champion_wall_p95_ms: float | None = None
    load_before: float
    load_after: float

    @property
    def ratio_to_champion(self) -> float | None:
        if not self.champion_cpu_p95_ms:
            return None
        return self.cpu_p95_ms / self.champion_cpu_p95_ms

    def describe(self) -> str:
        text = (
            f"thread CPU per request p50 {self.cpu_p50_ms:.1f} ms, p95 {self.cpu_p95_ms:.1f} ms; wall p95 "
            f"{self.wall_p95_ms:.1f} ms (minimum of {self.repeats} per request, {self.requests} requests)"
        )
        if self.ratio_to_champion is not None:
            text += (
                f"; champion in the same window p95 {self.champion_cpu_p95_ms:.1f} ms CPU / "
                f"{self.champion_wall_p95_ms:.1f} ms wall (ratio {self.ratio_to_champion:.2f})"
            )
        return text + f"; load average {self.load_before:.2f} -> {self.load_after:.2f}"


def _timed(request: Request, text: str) -> tuple[float, float]:
    cpu, wall = time.thread_time(), time.perf_counter()
    request(text)
    return (time.thread_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000


def _percentiles(per_request: list[float]) -> tuple[float, float]:
    return float(np.percentile(per_request, 50)), float(np.percentile(per_request, 95))


def interleaved_latency(
    candidate: Request, texts: Sequence[str], *, repeats: int, champion: Request | None = None
) -> LatencyProbe:
    """Time `candidate(text)` (and `champion(text)` right after it) `repeats` times per text."""
    load_before = os.getloadavg()[0]
    mine: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    for text in texts:
        own, other = [], []
        for _ in range(repeats):
            own.append(_timed(candidate, text))
            if champion is not None:
                other.append(_timed(champion, text))
        mine.append((min(c for c, _ in own), min(w for _, w in own)))
        if other:
            theirs.append((min(c for c, _ in other), min(w for _, w in other)))
    cpu_p50, cpu_p95 = _percentiles([c for c, _ in mine])
    wall_p50, wall_p95 = _percentiles([w for _, w in mine])
    return LatencyProbe(
        requests=len(texts),
        repeats=repeats,
        cpu_p50_ms=cpu_p50,
        cpu_p95_ms=cpu_p95,
        wall_p50_ms=wall_p50,
        wall_p95_ms=wall_p95,
        champion_cpu_p95_ms=_percentiles([c for c, _ in theirs])[1] if theirs else None,
        champion_wall_p95_ms=_percentiles([w for _, w in theirs])[1] if theirs else None,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )
