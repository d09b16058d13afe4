"""Helpers the suites share: timing rounds (with the contention guard of
:mod:`bench.measure.contention`), the figures every row carries, and the checks that the
timed work was real.
"""

from __future__ import annotations

import math
import resource
import sys
import time

import numpy as np
import psutil

from bench.measure.contention import RoundMonitor
from bench.measure.contention import usable_cpus as usable_cpus  # bench.tools.hardware_check
from bench.store import schema


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (VmHWM, VmRSS) in bytes, where there is one."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int:
    """The process's peak resident memory since the last :func:`reset_peak_rss`."""
    peak = _status_bytes("VmHWM")
    if peak:
        return peak
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows
    if peak:
        return int(peak)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is kilobytes on Linux, bytes on macOS; never below the current RSS.
    return int(max(info.rss, maxrss if sys.platform == "darwin" else maxrss * 1024))


def reset_peak_rss() -> tuple[int, str]:
    """Start a new host-memory window: return (RSS now, scope of the coming peak).

    Linux resets the peak (VmHWM) when "5" is written to ``/proc/self/clear_refs``:
    the scope is then "window", the peak this case's own. Where that is refused the
    scope is "process" (the peak may be an earlier case's) and the baseline beside it
    says how much was held before the case began.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        scope = "window"
    except OSError:
        scope = "process"
    return int(psutil.Process().memory_info().rss), scope


def size_round(run, target: float, *, whole: int | None = None,
               whole_max: float | None = None, most: int | None = None) -> tuple[int, float]:
    """Choose the units of work a round does, so a round lasts at least ``target`` seconds.

    ``run(n)`` does ``n`` units (steps, calls) and returns its seconds. Starts from one
    unit and grows the count from the time measured (as pyperf and asv calibrate loops)
    until a run lasts ``target``, or ``most`` units are reached. Where ``whole`` is given
    (an epoch's steps) and ``whole`` units take at most ``whole_max`` seconds, the count
    is a multiple of ``whole``: an epoch stays an epoch. A unit longer than the target is
    one unit a round. Returns (units, seconds of the last run); that last run, at the
    chosen size, is the case's warm-up round.
    """
    n, seconds = 1, run(1)
    for _ in range(8):  # two or three runs settle it; bounded all the same
        per_unit = max(seconds, 1e-9) / n
        want = max(1, math.ceil(target * 1.05 / per_unit))
        if whole and per_unit * whole <= max(whole_max or 0.0, target):
            want = whole * math.ceil(want / whole)
        if most:
            want = min(want, most)
        if want <= n:  # this size lasts the target already, or may not grow
            return n, seconds
        n = want
        seconds = run(n)
        if seconds >= target:
            return n, seconds
    return n, seconds


def timed_rounds(benchmark, state, device: str, target, *, rule=None, warmup_rounds: int = 1,
                 setup=None, args: tuple = (), kwargs: dict | None = None,
                 round_seconds: float | None = None, rounds: int | None = None,
                 per_round: float = 1.0):
    """Time rounds of ``target`` until the figure is known (:mod:`bench.harness.stopping`).

    Each round: the suite's ``setup`` (untimed), in an interleaved A/B session
    (``state.turns``) the hand-over of the turn, off the clock; the canary
    (:mod:`bench.measure.canary`); a sample of the contention guard and energy meter; then the
    timed call of ``target``. After ``warmup_rounds`` untimed rounds, timed rounds run
    until ``rule`` (default: the session's, ``state.stopping``; ``rounds`` = exactly that
    many) says stop: converged, this case's share of the budget spent
    (``state.allowance()``), or its maximum count. Every timed round goes into
    pytest-benchmark's statistics, as ``benchmark.pedantic`` would put it. The rounds
    run, the interval reached, why it stopped, the contention, energy and canary go into
    ``benchmark.extra_info``. Returns the target's last result.
    """
    from bench.harness.stopping import StoppingRule
    from bench.measure.canary import spread

    kwargs = kwargs or {}
    rule = rule or getattr(state, "stopping", None) or StoppingRule()
    if rounds is not None:
        rule = rule.fixed(rounds)

    def arguments():
        made = setup() if setup else None
        return made if made else (args, kwargs)

    if benchmark.disabled:  # --benchmark-disable: run once, as pedantic does
        a, kw = arguments()
        return target(*a, **kw)
    if benchmark._mode:  # the same refusal as pytest-benchmark's
        from pytest_benchmark.fixture import FixtureAlreadyUsed

        raise FixtureAlreadyUsed(f"Fixture can only be used once. Previously it was used in "
                                 f"{benchmark._mode} mode.")
    benchmark._mode = "bench.measure.rounds.timed_rounds(...)"
    # pytest-benchmark's own statistics object, as pedantic makes it: the result file,
    # its comparison and its tables read every round from here.
    stats = benchmark._make_stats(1)
    monitor = RoundMonitor(device, warmup_rounds, state.energy_meter(device))
    monitor.check_gpu()
    turns = getattr(state, "turns", None)
    canary = state.canary() if hasattr(state, "canary") else None
    canary_seconds: list[float] = []
    times: list[float] = []
    started = getattr(state, "case_started", None) or time.perf_counter()
    allowance = state.allowance() if hasattr(state, "allowance") else None
    decision = None
    result = None
    try:
        done = 0
        while True:
            a, kw = arguments()
            if turns is not None:
                monitor.hand_over(turns)
            timed = done >= warmup_rounds
            if canary is not None and timed:
                canary_seconds.append(canary.time())
            monitor.sample()
            begin = time.perf_counter()
            result = target(*a, **kw)
            seconds = time.perf_counter() - begin
            done += 1
            if not timed:
                continue
            stats.update(seconds / per_round)
            times.append(seconds)
            decision = rule.decide(times, spent=time.perf_counter() - started,
                                   allowance=allowance)
            if decision.stop:
                break
    except Exception:
        benchmark.has_error = True
        raise
    monitor.sample()
    monitor.check_gpu()
    info = benchmark.extra_info
    info.update(monitor.figures(state.max_contention))
    info.update(rounds=len(times), stop_reason=decision.reason,
                ci_halfwidth=decision.halfwidth if math.isfinite(decision.halfwidth)
                else None,
                round_seconds_target=round_seconds,
                canary_seconds=[round(c, 6) for c in canary_seconds] or None,
                canary_spread=spread(canary_seconds))
    return result


def round_times(benchmark) -> list[float]:
    """Every timed round's seconds, as pytest-benchmark kept them."""
    return list(benchmark.stats.stats.data)


def median_seconds(benchmark) -> float:
    return float(benchmark.stats.stats.median)


def record(benchmark, case, trainer=None, *, state=None,
           energy_seconds: float | None = None, **figures) -> None:
    """Fill ``extra_info`` with the case's fields, the figures and the memory peaks.

    With ``state`` (the session's :class:`bench.harness.session.BenchState`), a ``gflops``
    figure gets its share of the device's calibrated peak *in the dtype the case computes
    in* (``peak_gflops``, ``peak_fraction``), and the row says whether it ran beside
    another bench session (``concurrent``). ``energy_seconds`` is the time the energy
    figure is for (an epoch, a pass over the test set): with the average ``watts`` that
    :func:`timed_rounds` measured it gives ``energy_joules`` and ``samples_per_joule``.
    """
    info = benchmark.extra_info
    info.update(case.fields())
    if trainer is not None:
        info["device_kind"] = trainer.device.kind
        info["device_name"] = trainer.device.model
        memory = trainer.device_memory()
        info["device_peak_bytes"] = memory.peak_bytes
        info["device_baseline_bytes"] = memory.baseline_bytes
        info["device_peak_scope"] = memory.scope
    info.update(figures)
    if state is not None:
        info["concurrent"] = state.concurrent
        if figures.get("gflops") is not None:
            peak = state.gflops(case.device, case.compute_dtype)
            info["peak_gflops"] = peak
            info["peak_fraction"] = figures["gflops"] / peak if peak else None
    watts = info.get("watts")
    info.setdefault("energy_source", "unavailable")
    info["energy_joules"] = watts * energy_seconds if watts and energy_seconds else None
    rate = info.get("samples_per_second")
    info["samples_per_joule"] = rate / watts if watts and rate else None
    info["peak_rss_bytes"] = peak_rss_bytes()
    if state is not None and state.rss_window:
        info["rss_baseline_bytes"], info["rss_peak_scope"] = state.rss_window
    started = getattr(state, "case_started", None) if state is not None else None
    if started is not None:
        info["case_seconds"] = time.perf_counter() - started
    if getattr(case, "note", None):
        info["note"] = case.note
    info["status"] = "ok"
    schema.check_row(info)  # every field declared in the one row schema, with its type


def check_finite_and_falling(losses: list[float], what: str) -> None:
    """The work was real: every loss finite, and the last below the first."""
    assert all(math.isfinite(x) for x in losses), f"{what}: non-finite loss in {losses}"
    assert losses[-1] < losses[0], f"{what}: loss did not fall: {losses[0]:.4f} -> {losses[-1]:.4f}"


def check_predictions(predictions: np.ndarray, labels: np.ndarray, min_accuracy: float,
                      what: str) -> float:
    """The timed predictions are right often enough: return their accuracy.

    One class per image, and at least ``min_accuracy`` of them correct: a model that is
    fast because it is broken (untrained, zeroed, NaN weights) fails here.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    assert predictions.shape == labels.shape, \
        f"{what}: predictions shaped {predictions.shape}, labels {labels.shape}"
    accuracy = float(np.mean(predictions == labels))
    assert accuracy >= min_accuracy, (
        f"{what}: test accuracy of the timed predictions is {accuracy:.3f}, below "
        f"{min_accuracy}: the model timed is broken or untrained")
    return accuracy
