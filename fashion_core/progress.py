"""A small progress bar for a terminal: redraws one line on stderr, silent elsewhere."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """Call with (epoch, steps done, steps total); ``clear()`` before printing a line."""

    def __init__(self, epochs: int, stream=None, width: int = 30) -> None:
        self.epochs = epochs
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._start = time.perf_counter()
        self._epoch = None

    def __call__(self, epoch: int, done: int, total: int) -> None:
        if not self.enabled:
            return
        if epoch != self._epoch:  # elapsed time counts from the epoch's first report
            self._epoch, self._start = epoch, time.perf_counter()
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self._start
        self.stream.write(f"\repoch {epoch}/{self.epochs} [{bar}] {done}/{total} steps "
                          f"{elapsed:5.1f}s")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * (self.width + 50) + "\r")
            self.stream.flush()
