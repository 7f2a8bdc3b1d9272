"""Issue 12.3: the single-run lock holds under a race, and its holder carries a token others can check."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loop.state import LoopLocked, RunLock
from tools.core.paths import PROJECT_ROOT

RACER = """
import os, sys, time
from pathlib import Path
from loop.state import LoopLocked, RunLock

lock, marker, start_at, rounds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
while time.time() < start_at:
    pass
held = overlaps = 0
for _ in range(rounds):
    try:
        with RunLock(lock):
            held += 1
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                overlaps += 1
                continue
            os.close(fd)
            time.sleep(0.0005)
            marker.unlink()
    except LoopLocked:
        pass
print(held, overlaps)
"""


def test_four_racing_processes_never_hold_the_lock_together(tmp_path):
    lock, marker = tmp_path / ".lock", tmp_path / "holder"
    start_at = time.time() + 2.0
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(lock), str(marker), str(start_at), "400"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
        )
        for _ in range(4)
    ]
    counts = [tuple(map(int, racer.communicate(timeout=120)[0].split())) for racer in racers]
    assert sum(overlaps for _, overlaps in counts) == 0, counts
    assert sum(held for held, _ in counts) >= 20, counts  # the race really happened, many times


def start_holder(lock: Path) -> subprocess.Popen:
    """Another process that takes the lock, says "held" and keeps it for a minute."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from loop.state import RunLock\n"
            "with RunLock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )


def test_a_second_run_is_refused_naming_the_holders_pid(tmp_path):
    lock = tmp_path / ".lock"
    holder = start_holder(lock)
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(LoopLocked, match=f"another kotone-loop run \\(pid {holder.pid}\\)"),
            RunLock(lock),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with RunLock(lock):  # the kernel released the killed holder's lock
        assert lock.read_text() == str(os.getpid())


def test_the_holder_gets_a_token_that_lives_exactly_as_long_as_the_lock(tmp_path):
    lock = tmp_path / ".lock"
    assert RunLock.current_token(lock) is None
    with RunLock(lock) as held:
        assert held.token and len(held.token) >= 32
        assert RunLock.current_token(lock) == held.token
        assert (RunLock.token_path(lock).stat().st_mode & 0o777) == 0o600
        first = held.token
    assert RunLock.current_token(lock) is None
    with RunLock(lock) as again:
        assert again.token != first


def test_a_token_left_by_a_killed_run_is_not_current(tmp_path):
    lock = tmp_path / ".lock"
    killed = start_holder(lock)
    assert killed.stdout.readline().strip() == "held"
    assert RunLock.current_token(lock) is not None
    killed.kill()
    killed.wait()
    assert RunLock.current_token(lock) is None
