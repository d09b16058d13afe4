"""The matmul calibration: how fast a device multiplies matrices, the denominator of peak.

Every backend's ``matmul_gflops(device, dtype)`` builds its framework's product and hands
it to :func:`best_matmul_gflops`, which times it over the sizes :func:`calibration_sizes`
gives within the time :func:`calibration_seconds` allows. A row's share of peak divides
its GFLOP/s by the calibration in the dtype its matmuls compute in (:data:`COMPUTE_DTYPES`).

Imports no framework: the harness reads the calibration time from here before any backend
is loaded.
"""

from __future__ import annotations

import math
import os
import time

CALIBRATION_DTYPES = ("float32", "bfloat16", "float16")
#: Seconds one calibration may take (per device and dtype): $FASHION_BENCH_CALIBRATION_SECONDS,
#: default 3. The harness's own tests set it lower: their figures are not the point.
CALIBRATION_ENV = "FASHION_BENCH_CALIBRATION_SECONDS"
DEFAULT_CALIBRATION_SECONDS = 3.0


def calibration_seconds(environ=None) -> float:
    """How long a calibration may take: $FASHION_BENCH_CALIBRATION_SECONDS, else 3 s; a
    ValueError naming the variable where it is not a positive number."""
    text = (os.environ if environ is None else environ).get(CALIBRATION_ENV, "").strip()
    if not text:
        return DEFAULT_CALIBRATION_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{CALIBRATION_ENV}={text!r}: give a positive number of seconds, "
                         f"e.g. 3")
    return seconds


# Keras dtype policy -> the dtype its matmuls compute in (the calibration that applies).
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16",
                  "mixed_float16": "float16"}


class CalibrationUnsupported(RuntimeError):
    """The framework cannot multiply matrices in this dtype on this device.

    Raised by every backend's ``matmul_gflops``; the harness records the dtype's peak
    as unknown (None) for that device and goes on.
    """


def check_calibration_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`CALIBRATION_DTYPES`, else a ValueError naming them."""
    if dtype not in CALIBRATION_DTYPES:
        raise ValueError(f"unknown calibration dtype {dtype!r}; choose one of: "
                         f"{', '.join(CALIBRATION_DTYPES)}")
    return dtype


def calibration_sizes(device: str, dtype: str = "float32") -> tuple[int, ...]:
    """Matrix sizes the calibration matmul tries, smallest first: the fastest sets the figure.

    Frameworks peak at different sizes (on a 2-core AVX-512 CPU, TensorFlow's matmul
    rose from 370 GFLOP/s at 1024 to 478 at 4096 while JAX's fell from 375 to 91), so
    one fixed size would understate some of them. On a CPU, bfloat16 and float16 may be
    emulated at a few GFLOP/s, where one 1024 product would take seconds: they start
    with a 256 probe, whose rate tells :func:`best_matmul_gflops` which larger sizes fit
    its time budget.
    """
    if device == "cpu":
        return (1024, 2048, 4096) if dtype == "float32" else (256, 1024, 2048, 4096)
    return (4096, 8192) if dtype == "float32" else (1024, 4096, 8192)


def best_matmul_gflops(make_product, sizes, repeats: int = 10,
                       budget_seconds: float | None = None,
                       total_seconds: float | None = None) -> float:
    """A device's matmul rate in GFLOP/s: the fastest timed product over ``sizes``.

    ``make_product(size)`` returns a callable that multiplies two size x size matrices
    (in whatever dtype is being calibrated) and waits for the result (reads a value of
    it back to the host, or blocks until it is ready), so each timed call waits for the
    device. Sizes are tried smallest first; each
    gets one warm-up call (trace, compile), then up to ``repeats`` timed calls, fewer
    where they would take more than ``budget_seconds`` for that size or run past
    ``total_seconds`` for the whole calibration (at least two timed calls a size).
    ``total_seconds`` defaults to :func:`calibration_seconds` (3 s), ``budget_seconds``
    to two thirds of it.

    A size is skipped, with every larger one, when the rate measured so far says its
    warm-up and two timed calls would not fit in what is left of ``total_seconds``:
    that keeps an emulated dtype on a CPU (a few GFLOP/s) from taking minutes. So the
    whole call takes about ``total_seconds``, plus at most the smallest size's first
    three calls.

    Raises :class:`CalibrationUnsupported` when the smallest size cannot be built or run
    (the framework has no such matmul on the device); a failure at a larger size (out
    of memory, say) ends the climb and the best rate so far stands.
    """
    if total_seconds is None:
        total_seconds = calibration_seconds()
    if budget_seconds is None:
        budget_seconds = total_seconds * 2 / 3
    begin = time.perf_counter()
    deadline = begin + total_seconds
    best_rate = 0.0  # FLOP/s
    for position, size in enumerate(sorted(sizes)):
        flops = 2 * size**3
        if best_rate and 3 * flops / best_rate > deadline - time.perf_counter():
            break
        try:
            product = make_product(size)
            product()  # trace, compile and warm up
        except Exception as error:  # noqa: BLE001 - frameworks raise their own types
            if position == 0:
                text = str(error).strip().splitlines()
                raise CalibrationUnsupported(
                    f"{type(error).__name__}: {text[0] if text else ''}"[:300]) from error
            break
        spent, calls = 0.0, 0
        while calls < repeats:
            start = time.perf_counter()
            product()
            elapsed = max(time.perf_counter() - start, 1e-9)
            spent, calls = spent + elapsed, calls + 1
            best_rate = max(best_rate, flops / elapsed)
            if calls >= 2 and (spent >= budget_seconds
                               or time.perf_counter() + elapsed > deadline):
                break
    return best_rate / 1e9
