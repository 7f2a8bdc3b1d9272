"""Ctrl-C and SIGTERM stop a run within seconds: the cycle is recorded as interrupted, the lock released."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable


def run_until_signal(run: Callable[[], Awaitable[int]]) -> int:
    """`run()`, stopped within seconds by Ctrl-C (SIGINT) or SIGTERM: the cycle is recorded as interrupted,
    the MCP server and its workers are shut down, the lock is released; `--resume` continues."""

    async def supervised() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        try:
            return await run()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(supervised())
    except asyncio.CancelledError:
        print("interrupted; continue with: python -m loop.run --resume", file=sys.stderr)
        return 130
