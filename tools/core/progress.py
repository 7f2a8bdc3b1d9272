"""Progress that reads well in a terminal and in a log file.

On a terminal: a tqdm bar. Anywhere else (`make run > log`, the MCP server's stderr, CI): no bar, no
carriage-return redraws, but one plain line every `every` steps and one at the end. `TQDM_DISABLE=1`
turns the bars off everywhere (tqdm's own switch: it is honoured, never overridden). The Hugging Face bars
(model loading) follow the same rule (`tools.student.base_model`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

DEFAULT_EVERY = 25


def _env_disables_bars() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes", "on")


def bars_wanted(stream: TextIO | None = None) -> bool:
    """A bar is drawn only on a terminal, and never when TQDM_DISABLE is set."""
    stream = sys.stderr if stream is None else stream
    return not _env_disables_bars() and stream.isatty()


def progress_every(default: int = DEFAULT_EVERY) -> int:
    """Steps between plain progress lines: `KOTONE_PROGRESS_EVERY` when set, else `default`."""
    raw = os.environ.get("KOTONE_PROGRESS_EVERY", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


class Progress:
    """`update(n, loss=...)` per step; a bar on a terminal, else a line every `every` steps and at the end.

    `enabled=False` shows nothing at all (callers that print their own summary).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "step",
        initial: int = 0,
        enabled: bool = True,
        every: int | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.done = total, desc, unit, initial
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.every = progress_every(every or DEFAULT_EVERY)
        self.postfix: dict[str, str] = {}
        self.started = time.perf_counter()
        self._bar = None
        if enabled and bars_wanted(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, file=self.stream, leave=False
            )

    def update(self, n: int = 1, **postfix: object) -> None:
        before = self.done
        self.done += n
        self.postfix = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in postfix.items()}
        if self._bar is not None:
            self._bar.update(n)
            if self.postfix:
                self._bar.set_postfix(self.postfix)
        elif self.enabled and (self.done // self.every > before // self.every or self.done == self.total):
            self._line()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.started
        extra = "".join(f" {k} {v}" for k, v in self.postfix.items())
        print(
            f"{self.desc}: {self.unit} {self.done}/{self.total}{extra} ({elapsed:.0f}s)",
            file=self.stream,
            flush=True,
        )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
