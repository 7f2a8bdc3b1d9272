"""Resume state of a cycle (which stages finished) and the single-run lock's edges."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from loop.stages.progress import STAGES, CycleState
from loop.state import LoopLocked, RunLock, now_iso


@pytest.fixture
def live_pid():
    """A process of ours that stays alive (so no test hands its own pid, or pid 1, to code that signals it).
    It restores the default action of SIGHUP (a run started under nohup ignores it)."""
    code = "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_DFL); print('ready', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    yield holder
    holder.kill()
    holder.wait()


def test_a_new_cycle_starts_at_the_first_stage(tmp_path):
    state = CycleState.load_or_new(tmp_path, 4)
    assert (state.cycle, state.completed, state.finished_at, state.resumed) == (4, [], None, 0)
    assert state.started_at and state.next_stage() == "snapshot"
    assert not (tmp_path / "state.json").exists()  # nothing written until a stage finishes


def test_each_finished_stage_is_saved_once_and_the_next_is_the_first_unfinished(tmp_path):
    state = CycleState.load_or_new(tmp_path, 4)
    state.mark_done("snapshot", tmp_path)
    state.mark_done("snapshot", tmp_path)
    state.mark_done("plan", tmp_path)
    again = CycleState.load_or_new(tmp_path, 4)
    assert again == state
    assert again.completed == ["snapshot", "plan"]
    assert again.next_stage() == "diagnose"
    assert json.loads((tmp_path / "state.json").read_text())["completed"] == ["snapshot", "plan"]


def test_the_cycle_is_finished_only_when_its_last_stage_is(tmp_path):
    state = CycleState.load_or_new(tmp_path, 1)
    for stage in STAGES[:-1]:
        state.mark_done(stage, tmp_path)
        assert state.finished_at is None
    assert state.next_stage() == STAGES[-1] == "log"
    state.mark_done("log", tmp_path)
    assert state.next_stage() is None
    assert CycleState.load_or_new(tmp_path, 1).finished_at == state.finished_at is not None


def test_a_saved_state_is_read_back_whatever_cycle_is_asked(tmp_path):
    CycleState(cycle=2, started_at="then", completed=["snapshot"], resumed=3).save(tmp_path)
    loaded = CycleState.load_or_new(tmp_path, 9)
    assert (loaded.cycle, loaded.started_at, loaded.completed, loaded.resumed) == (2, "then", ["snapshot"], 3)


def test_releasing_the_lock_removes_its_files_and_a_second_release_is_harmless(tmp_path):
    lock = tmp_path / "loop" / ".lock"
    held = RunLock(lock)
    held.__exit__()  # never entered: nothing to release
    with held:
        assert lock.read_text() == str(os.getpid())
        assert json.loads(RunLock.token_path(lock).read_text()) == {"pid": os.getpid(), "token": held.token}
    assert not lock.exists() and not RunLock.token_path(lock).exists()
    assert held.token is None
    held.__exit__()
    assert RunLock.token_path(lock) == tmp_path / "loop" / ".lock.token"


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        json.dumps({"pid": 0, "token": "abc"}),
        json.dumps({"token": "abc"}),
        json.dumps({"pid": "LIVE", "token": 5}),
    ],
)
def test_a_token_file_that_names_no_live_holder_and_string_token_is_no_token(tmp_path, content, live_pid):
    lock = tmp_path / ".lock"
    RunLock.token_path(lock).write_text(content.replace('"LIVE"', str(live_pid.pid)))
    assert RunLock.current_token(lock) is None


def test_a_token_file_of_a_live_holder_is_its_token(tmp_path, live_pid):
    lock = tmp_path / ".lock"
    RunLock.token_path(lock).write_text(json.dumps({"pid": live_pid.pid, "token": "abc"}))
    assert RunLock.current_token(lock) == "abc"
    # A pid no process can have (not one that exited: its number could be reused by anyone's process).
    never = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    RunLock.token_path(lock).write_text(json.dumps({"pid": never, "token": "abc"}))
    assert RunLock.current_token(lock) is None


def test_a_holder_that_has_not_written_its_pid_yet_is_named_unknown(tmp_path):
    lock = tmp_path / ".lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(
            LoopLocked, match=r"^another kotone-loop run \(pid unknown\) is using .*; wait for it"
        ):
            RunLock(lock).__enter__()
    finally:
        os.close(fd)
    assert not RunLock.token_path(lock).exists()


def test_times_are_utc_to_the_second():
    stamp = now_iso()
    assert stamp.endswith("+00:00") and datetime.fromisoformat(stamp).microsecond == 0


def test_the_lock_file_is_created_with_its_folders_readable_and_the_token_is_128_bits(tmp_path):
    lock = tmp_path / "artifacts" / "loop" / ".lock"
    held = RunLock(lock)
    assert held.token is None
    with held:
        assert (lock.stat().st_mode & 0o777) == 0o644
        assert len(held.token) == 32 and int(held.token, 16) >= 0


def test_a_release_after_the_lock_files_were_removed_is_clean(tmp_path):
    lock = tmp_path / ".lock"
    with RunLock(lock):
        lock.unlink()
        RunLock.token_path(lock).unlink()
    assert not lock.exists()


def test_the_holders_pid_is_waited_for_briefly_then_named(tmp_path):
    lock = tmp_path / ".lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        threading.Timer(0.1, lambda: os.write(fd, b"4242")).start()
        started = time.monotonic()
        with pytest.raises(LoopLocked, match=r"\(pid 4242\)"):
            RunLock(lock).__enter__()
        assert time.monotonic() - started < 0.6
    finally:
        os.close(fd)


def test_a_holder_that_never_writes_its_pid_is_named_unknown_after_about_a_second(tmp_path):
    lock = tmp_path / ".lock"
    assert RunLock(tmp_path / "missing")._holder_waiting(wait_s=0.05) == "unknown"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        with pytest.raises(LoopLocked, match=r"\(pid unknown\)"):
            RunLock(lock).__enter__()
        assert 0.9 <= time.monotonic() - started < 1.9
    finally:
        os.close(fd)


def test_asking_for_the_token_does_not_disturb_a_live_holder(tmp_path, live_pid):
    lock = tmp_path / ".lock"
    RunLock.token_path(lock).write_text(json.dumps({"pid": live_pid.pid, "token": "abc"}))
    assert RunLock.current_token(lock) == "abc"
    time.sleep(0.2)
    assert live_pid.poll() is None


def test_pid_1_and_a_process_of_another_user_count_as_live(tmp_path, monkeypatch):
    """os.kill is replaced: a test never signals pid 1 (the machine's init), even under mutation testing."""
    lock = tmp_path / ".lock"
    asked = []
    monkeypatch.setattr(os, "kill", lambda pid, signal: asked.append((pid, signal)))
    RunLock.token_path(lock).write_text(json.dumps({"pid": 1, "token": "in-a-container"}))
    assert RunLock.current_token(lock) == "in-a-container" and asked == [(1, 0)]

    def not_permitted(pid, signal):
        raise PermissionError(pid)

    monkeypatch.setattr(os, "kill", not_permitted)
    RunLock.token_path(lock).write_text(json.dumps({"pid": 4242, "token": "other-user"}))
    assert RunLock.current_token(lock) == "other-user"
