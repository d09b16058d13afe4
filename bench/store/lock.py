"""One bench session at a time on a machine: two sessions timing at once spoil each other.

The lock is an advisory ``flock`` on a file in the system's temporary folder (or
``$FASHION_BENCH_LOCK``), so every user and checkout on the machine shares it, and the
kernel releases it when its holder dies: a killed run never leaves the machine locked.
The holder writes its pid and command line into the file, so whoever waits is told who.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path

LOCK_ENV = "FASHION_BENCH_LOCK"


def default_path() -> Path:
    return Path(os.environ.get(LOCK_ENV) or Path(tempfile.gettempdir()) / "fashion-bench.lock")


class LockBusy(RuntimeError):
    """The lock stayed taken for the whole wait; the message says by whom."""


class MachineLock:
    """``acquire(timeout)`` waits for the lock; ``release()`` (or process exit) frees it."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8").strip() or "another process"
        except OSError:
            return "another process"

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode())
        self._fd = fd
        return True

    def acquire(self, timeout: float, say=print, poll: float = 1.0) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; LockBusy when it stays taken."""
        if self.try_acquire():
            return
        say(f"fashion-bench: another bench session is timing on this machine "
            f"({self.holder()}); waiting up to {timeout:.0f} s (--bench-lock-timeout)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
            if self.try_acquire():
                return
        raise LockBusy(
            f"another bench session is still timing on this machine after {timeout:.0f} s "
            f"({self.holder()}; lock file {self.path}); wait for it to end, or pass "
            f"--bench-allow-concurrent to run anyway with the rows marked 'concurrent'")

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
