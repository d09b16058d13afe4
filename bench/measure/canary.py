"""The canary: a short fixed kernel timed before every timed round.

Whatever slows a shared machine (a neighbour on the host, memory bandwidth, the clock)
may not show in ``/proc/stat``, which only sees this machine's own processes. The canary
is a fixed piece of work, the same in every round of every run: if its time moves with
the rounds' times, the machine itself was slow, not the code under test. The harness
records its time before each timed round (``Row.canary_seconds``) and the spread
(``Row.canary_spread``); what the canary tells, measured, is in docs/noise.md.

The kernel is numpy only (no framework), single-threaded, a few milliseconds: arithmetic
on an array that stays in the core's cache, plus a copy through memory larger than the
caches, since either the cores or the memory bus may be what a neighbour takes. No BLAS
call: OpenBLAS's threads sleep between calls and their wake-up alone moved a small
product from 0.7 to 10 ms here, noise of the canary's own.
"""

from __future__ import annotations

import time

import numpy as np

_CACHED = 64 * 1024  # float32 elements (256 KiB: in L2)
_PASSES = 8
_COPY_BYTES = 32 * 2**20  # past the last-level cache of the machines seen


class Canary:
    """A fixed kernel; :meth:`time` runs it once and returns its seconds."""

    def __init__(self) -> None:
        self._x = np.linspace(-1.0, 1.0, _CACHED, dtype=np.float32)
        self._y = np.empty_like(self._x)
        self._src = np.ones(_COPY_BYTES // 4, dtype=np.float32)
        self._dst = np.empty_like(self._src)
        self.time()  # first use pages the buffers in

    def time(self) -> float:
        begin = time.perf_counter()
        for _ in range(_PASSES):
            np.exp(self._x, out=self._y)
            np.multiply(self._y, self._x, out=self._y)
        np.copyto(self._dst, self._src)
        return time.perf_counter() - begin


def spread(seconds: list[float]) -> float | None:
    """Slowest canary over the fastest, minus 1 (0.25: the slowest took 25% longer)."""
    if len(seconds) < 2 or min(seconds) <= 0:
        return None
    return max(seconds) / min(seconds) - 1
