"""The live status line on a terminal, and whether a session shows it.

:class:`LiveLine` draws a line in place below pytest's and redraws it from a daemon thread
while a case runs; :func:`choose_mode` says whether a session gets it, a line per
finished case, or nothing. Standard library only; :mod:`bench.harness.progress` uses them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

#: Seconds between redraws of the live line (it shows whole seconds).
REDRAW_SECONDS = 0.5


class LiveLine:
    """A status line redrawn in place on a terminal by a daemon thread.

    pytest leaves its cursor at the end of its current line (a file name and dots, or a
    test's id waiting for ``PASSED``). The status line goes on the line below (or on the
    current one where pytest's is empty); :meth:`hide` erases it and moves the cursor back
    up to the column pytest left it at (ANSI ``ESC[A``, ``ESC[nG``), so pytest's next
    write lands where it would have without us. Writes go to ``fd``, a duplicate of the
    terminal's descriptor taken while pytest was not capturing: during a test, pytest
    points descriptor 1 at its capture file.
    """

    def __init__(self, fd: int, text: Callable[[int], str], width: Callable[[], int],
                 column: Callable[[], int], interval: float = REDRAW_SECONDS,
                 encoding: str = "utf-8") -> None:
        self._fd = fd
        self._text = text
        self._width = width
        self._column = column
        self._interval = interval
        self._encoding = encoding
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._showing = False
        self._below: int | None = None  # drawn: pytest's column (0: on pytest's own line)
        self._closed = False
        self._thread: threading.Thread | None = None

    def show(self) -> None:
        """Draw now, and every ``interval`` until :meth:`hide`."""
        with self._lock:
            if self._closed:
                return
            self._showing = True
            self._draw()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fashion-bench-progress",
                                            daemon=True)
            self._thread.start()

    def hide(self) -> None:
        """Erase the line and put the cursor back where pytest left it; draw no more until
        :meth:`show`. Call before pytest (or anything else) writes to the terminal."""
        with self._lock:
            self._showing = False
            self._erase()

    def close(self) -> None:
        """Erase the line and end the thread (idempotent)."""
        with self._lock:
            self._showing = False
            self._erase()
            self._closed = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            with self._lock:
                if self._showing and not self._closed:
                    self._draw()

    def _draw(self) -> None:
        try:
            width = max(20, int(self._width()))
            text = self._text(width)[:width - 1]
            if self._below is None:
                column = int(self._column())
                self._below = (column % width or width) if column > 0 else 0
                prefix = "\n" if self._below else "\r"
            else:
                prefix = "\r"
            self._write(prefix + text + "\x1b[K")
        except Exception:  # the line is a convenience: it never fails the run
            self._showing = False
            self._closed = True

    def _erase(self) -> None:
        if self._below is None:
            return
        below, self._below = self._below, None
        self._write("\r\x1b[K" + (f"\x1b[A\x1b[{below + 1}G" if below else ""))

    def _write(self, text: str) -> None:
        try:
            os.write(self._fd, text.encode(self._encoding, "replace"))
        except OSError:  # the terminal went away
            self._closed = True


def choose_mode(*, isatty: bool, term: str | None, verbosity: int, capture: str,
                xdist: bool, log_cli: bool, benchmark_verbose: bool) -> str | None:
    """How a session shows its progress: ``live`` (a status line on a terminal), ``lines``
    (a line per finished case) or None (nothing: xdist, ``-qq``).

    The live line needs a terminal that understands cursor movement, and no other output
    while a case runs: pytest's capture (``fd`` or ``sys``) holds the tests' own output;
    under ``-s``/``tee-sys``, live logging or ``--benchmark-verbose`` lines appear mid-case,
    so those get the per-case lines instead.
    """
    if xdist or verbosity <= -2:
        return None
    if (isatty and term != "dumb" and capture in ("fd", "sys") and not log_cli
            and not benchmark_verbose):
        return "live"
    return "lines"
