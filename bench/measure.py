"""Helpers the suites share: the figures every row carries and the checks of real work."""

from __future__ import annotations

import math
import resource
import sys

import numpy as np
import psutil


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (psutil where it reports a peak)."""
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows
    if peak:
        return int(peak)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is kilobytes on Linux, bytes on macOS; never below the current RSS.
    return int(max(info.rss, maxrss if sys.platform == "darwin" else maxrss * 1024))


def round_times(benchmark) -> list[float]:
    """Every timed round's seconds, as pytest-benchmark kept them."""
    return list(benchmark.stats.stats.data)


def median_seconds(benchmark) -> float:
    return float(benchmark.stats.stats.median)


def record(benchmark, case, trainer=None, **figures) -> None:
    """Fill ``extra_info`` with the case's fields, the figures and the memory peaks."""
    info = benchmark.extra_info
    info.update(case.fields())
    if trainer is not None:
        info["device_kind"] = trainer.device.kind
        info["device_name"] = trainer.device.model
        info["device_peak_bytes"] = trainer.device_peak_bytes()
    info.update(figures)
    info["peak_rss_bytes"] = peak_rss_bytes()
    info["status"] = "ok"


def check_finite_and_falling(losses: list[float], what: str) -> None:
    """The work was real: every loss finite, and the last below the first."""
    assert all(math.isfinite(x) for x in losses), f"{what}: non-finite loss in {losses}"
    assert losses[-1] < losses[0], f"{what}: loss did not fall: {losses[0]:.4f} -> {losses[-1]:.4f}"


def check_predictions(predictions: np.ndarray, count: int) -> None:
    """Predictions are one class index in 0-9 per image."""
    assert predictions.shape == (count,), f"predictions shaped {predictions.shape}, not ({count},)"
    assert predictions.min() >= 0 and predictions.max() <= 9, "class index outside 0-9"
