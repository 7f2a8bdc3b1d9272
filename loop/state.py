"""The single-run lock (one `loop.run` at a time, its token proves who acts) and the clock its records use."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LoopLocked(RuntimeError):
    """Another kotone-loop run holds the lock."""


class RunLock:
    """The single-run lock: an exclusive `flock` on the lock file, which names the holder's pid.

    The kernel releases the lock when its holder dies (kill -9 included), so there is no stale lock to
    judge. The holder also gets a random `token`, written to `<lock>.token` (mode 0600) for the lock's
    lifetime: a process that must prove it acts for the run holding the lock (the loop's action tools)
    compares what it was given with `RunLock.current_token(path)`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.token: str | None = None
        self._fd: int | None = None

    @staticmethod
    def token_path(path: Path) -> Path:
        return path.with_name(path.name + ".token")

    @classmethod
    def current_token(cls, path: Path) -> str | None:
        """The token of the run holding the lock at `path`; None when no live run holds it."""
        try:
            held = json.loads(cls.token_path(path).read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(held, dict) or not _alive(int(held.get("pid", 0))):
            return None
        token = held.get("token")
        return token if isinstance(token, str) else None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LoopLocked(
                    f"another kotone-loop run (pid {self._holder_waiting()}) is using {self.path.parent}; "
                    "wait for it to finish"
                ) from None
            # A holder unlinks the file on release: the inode we locked may no longer be the path's.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.token = secrets.token_hex(16)
        token_file = self.token_path(self.path)
        token_file.unlink(missing_ok=True)
        token_fd = os.open(token_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(token_fd, "w") as handle:
            json.dump({"pid": os.getpid(), "token": self.token}, handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        self.token_path(self.path).unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)  # still locked: a waiter that opened it sees another inode
        os.close(self._fd)
        self._fd = None
        self.token = None

    def _holder_waiting(self, wait_s: float = 1.0) -> str:
        """The holder's pid; it writes it just after locking, so an empty file is read again briefly."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                text = self.path.read_text().strip()
            except FileNotFoundError:
                text = ""
            if text.isdigit() or time.monotonic() >= deadline:
                return text or "unknown"
            time.sleep(0.01)


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
