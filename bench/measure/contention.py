"""The contention guard: how much of this process's cores other processes took.

A benchmark shares its machine. During every timed round the harness measures the CPU
time that *other* processes took on the cores this process may use (system-wide busy
time of those cores, from ``/proc/stat`` via psutil, minus this process's own CPU time),
as a share of those cores' capacity over the round. Rounds shorter than
:data:`MIN_WINDOW_SECONDS` are pooled with their neighbours into windows of at least that
length, since the kernel counts CPU time in 10 ms ticks. A row records the worst window
(``contention``, 0..1) and ``contended`` when it is above the session's
``--bench-max-contention``; on a GPU, other processes that NVML lists on the device mark
the row contended too. Before timing begins, :func:`wait_for_quiet` waits for the machine
to go quiet (``--bench-quiet-wait``). :class:`RoundMonitor` samples the rounds of
:func:`bench.measure.rounds.timed_rounds`.
"""

from __future__ import annotations

import os
import time

import psutil

#: Shortest span over which contention is judged (CPU time comes in 10 ms ticks).
MIN_WINDOW_SECONDS = 0.5


def usable_cpus() -> list[int]:
    """The CPU numbers this process may run on (its affinity mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return list(range(psutil.cpu_count() or 1))


def _busy_seconds(times) -> float:
    """CPU time a core spent on anything but idling (iowait counts as idle)."""
    return sum(getattr(times, field, 0.0) for field in
               ("user", "nice", "system", "irq", "softirq", "steal"))


class CpuSample:
    """Wall clock, busy time of the usable cores, this process's CPU time, energy."""

    __slots__ = ("wall", "busy", "own", "joules")

    def __init__(self, cpus: list[int], meter=None) -> None:
        per_cpu = psutil.cpu_times(percpu=True)
        own = psutil.Process().cpu_times()
        self.wall = time.perf_counter()
        self.busy = sum(_busy_seconds(per_cpu[i]) for i in cpus if i < len(per_cpu))
        self.own = own.user + own.system + own.children_user + own.children_system
        self.joules = meter.read() if meter is not None else None


    def shifted(self, offset: CpuSample | None) -> CpuSample:
        """This sample with ``offset`` (time spent off the clock) taken away."""
        if offset is None:
            return self
        moved = object.__new__(CpuSample)
        moved.wall, moved.busy, moved.own = (self.wall - offset.wall, self.busy - offset.busy,
                                             self.own - offset.own)
        moved.joules = (self.joules - (offset.joules or 0.0) if self.joules is not None
                        else None)
        return moved


def _off_clock(before: CpuSample, after: CpuSample, earlier: CpuSample | None) -> CpuSample:
    """The span from ``before`` to ``after`` added to an earlier off-clock total."""
    total = object.__new__(CpuSample)
    total.wall = after.wall - before.wall + (earlier.wall if earlier else 0.0)
    total.busy = after.busy - before.busy + (earlier.busy if earlier else 0.0)
    total.own = after.own - before.own + (earlier.own if earlier else 0.0)
    total.joules = (after.joules - before.joules + ((earlier.joules or 0.0) if earlier else 0.0)
                    if after.joules is not None and before.joules is not None else None)
    return total


def contention_between(first: CpuSample, last: CpuSample, cores: int) -> float:
    """Share (0..1) of ``cores`` cores' time that other processes used from first to last."""
    wall = last.wall - first.wall
    if wall <= 0:
        return 0.0
    other = (last.busy - first.busy) - (last.own - first.own)
    return min(1.0, max(0.0, other / (wall * cores)))


def windowed_contention(samples: list[CpuSample], cores: int,
                        min_seconds: float = MIN_WINDOW_SECONDS) -> float | None:
    """The worst contention over consecutive windows of at least ``min_seconds``.

    ``samples`` are taken at round boundaries; consecutive rounds are pooled until a
    window is long enough (the last, short remainder joins the window before it). None
    with fewer than two samples.
    """
    if len(samples) < 2:
        return None
    bounds = [0]
    for i in range(1, len(samples)):
        if samples[i].wall - samples[bounds[-1]].wall >= min_seconds:
            bounds.append(i)
    if bounds[-1] != len(samples) - 1:
        if len(bounds) > 1:
            bounds[-1] = len(samples) - 1
        else:
            bounds.append(len(samples) - 1)
    return max(contention_between(samples[a], samples[b], cores)
               for a, b in zip(bounds[:-1], bounds[1:], strict=True))


def wait_for_quiet(max_contention: float, timeout: float, say=print,
                   window: float = 1.0) -> float:
    """Wait up to ``timeout`` seconds for a quiet machine; return the last contention seen.

    Measures other processes' share of the usable cores over ``window``-second spans;
    returns as soon as one is at most ``max_contention``. Says so once when it waits.
    """
    cpus = usable_cpus()
    deadline = time.monotonic() + timeout
    said = False
    while True:
        first = CpuSample(cpus)
        time.sleep(window)
        seen = contention_between(first, CpuSample(cpus), len(cpus))
        if seen <= max_contention or time.monotonic() >= deadline:
            return seen
        if not said:
            say(f"fashion-bench: other processes use {seen:.0%} of the {len(cpus)} usable "
                f"core(s); waiting up to {timeout:.0f} s for a quiet machine "
                f"(--bench-quiet-wait)")
            said = True


class RoundMonitor:
    """Samples CPU time (and energy, where a meter reads it) at every round boundary."""

    def __init__(self, device: str, warmup_rounds: int, meter=None) -> None:
        self.device = device
        self.cpus = usable_cpus()
        self.warmup_rounds = warmup_rounds
        self.meter = meter
        self.samples: list[CpuSample] = []
        self.gpu_foreign: list[int] = []
        self.off_clock: CpuSample | None = None  # time spent waiting for a turn

    def sample(self) -> None:
        self.samples.append(CpuSample(self.cpus, self.meter).shifted(self.off_clock))

    def hand_over(self, turns) -> None:
        """Let the other session of an interleaved A/B run (bench.harness.turns) have its round.

        The wait is taken off the clock of every later sample: the other side's round is
        not contention of ours, and its energy is not ours either.
        """
        before = CpuSample(self.cpus, self.meter)
        turns.hand_over()
        self.off_clock = _off_clock(before, CpuSample(self.cpus, self.meter), self.off_clock)

    def check_gpu(self) -> None:
        if self.device.startswith("gpu"):
            from bench.measure.energy import foreign_gpu_processes

            count = foreign_gpu_processes(self.device)
            if count is not None:
                self.gpu_foreign.append(count)

    @property
    def timed(self) -> list[CpuSample]:
        """Samples from the start of the first timed round to the end of the last."""
        return self.samples[self.warmup_rounds:]

    def figures(self, max_contention: float) -> dict:
        """``contention``, ``contended``, ``gpu_foreign_processes`` and average ``watts``."""
        contention = windowed_contention(self.timed, len(self.cpus))
        foreign = max(self.gpu_foreign) if self.gpu_foreign else None
        contended = bool((contention is not None and contention > max_contention)
                         or (foreign or 0) > 0)
        figures = {"contention": contention, "contended": contended,
                   "gpu_foreign_processes": foreign, "watts": None,
                   "energy_source": getattr(self.meter, "source", "unavailable")}
        timed = self.timed
        if (self.meter is not None and len(timed) >= 2 and timed[0].joules is not None
                and timed[-1].joules is not None and timed[-1].wall > timed[0].wall):
            # Energy over all timed rounds together: a meter that refreshes slowly says
            # little about one short round, much about their sum.
            figures["watts"] = (timed[-1].joules - timed[0].joules) / (
                timed[-1].wall - timed[0].wall)
        else:
            figures["energy_source"] = "unavailable"
        return figures
