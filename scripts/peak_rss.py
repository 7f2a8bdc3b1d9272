"""Peak memory of a whole command: the resident memory of its process tree (Ray workers included), sampled.

    python scripts/peak_rss.py -- .venv/bin/python -m loop.run --data real --candidates 4

`/usr/bin/time -v` reports the largest single process; a cycle runs the loop, its MCP server, Ray's head
processes and one worker per candidate at once, so the figure that matters is their sum. Ray's head
processes are not children of the command's process tree only when the loop connects to an existing
cluster; a local instance is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import psutil


def tree_rss_mb(root: psutil.Process) -> float:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    began = time.perf_counter()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak = 0.0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss_mb(root))
        except psutil.NoSuchProcess:
            break
        time.sleep(args.every)
    print(
        f"peak RSS of the process tree: {peak:.0f} MB; wall {time.perf_counter() - began:.0f} s; exit {child.returncode}"
    )
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
