"""The time a bench run has left, and the lines that say where it is.

The time left is the plan's estimate (:mod:`bench.harness.plan`) of what is still to run,
times the correction the finished cases give (their actual time over their estimate:
:func:`correction`, :func:`time_left`). :class:`Progress` keeps the run's clock and count
in one process; :class:`RunContext` is the run's position a ``--bench-isolate`` parent
hands its group's worker (:data:`PROGRESS_ENV`). The texts: the live line
(:func:`status_text`, drawn by :mod:`bench.harness.liveline`) and a finished case's line
(:func:`case_line`). Standard library only; :mod:`bench.harness.progress` uses them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable

#: The run's position, handed by a ``--bench-isolate`` parent to its group's worker (JSON).
PROGRESS_ENV = "FASHION_BENCH_PROGRESS"
#: The correction of the estimates stays within these bounds (a first case that compiles
#: for long, or fails fast, says little about the rest).
CORRECTION_BOUNDS = (0.25, 4.0)


def format_clock(seconds: float) -> str:
    """A span for a status line: ``12s``, ``1m48s``, ``1h02m``."""
    whole = int(round(max(0.0, seconds)))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


# --- The time left -------------------------------------------------------------------

def correction(done_estimate: float, done_actual: float) -> float:
    """How far the plan missed so far: the finished cases' actual seconds over their
    estimated seconds, within :data:`CORRECTION_BOUNDS`; 1 before any case finished."""
    if not (done_estimate > 0 and done_actual > 0):
        return 1.0
    low, high = CORRECTION_BOUNDS
    return min(high, max(low, done_actual / done_estimate))


def time_left(pending: float, current: float = 0.0, current_spent: float = 0.0,
              ratio: float = 1.0, fixed: float = 0.0,
              budget_left: float | None = None) -> float:
    """Seconds the run has left.

    ``pending``: the estimates of the cases not started yet; ``current``: the running
    case's estimate, of which ``current_spent`` seconds are spent (a case past its
    estimate is counted as about to end); both scaled by ``ratio`` (:func:`correction`).
    ``fixed``: seconds that are no case's (the session's end: the second calibration, the
    result file). Under a budget the run ends about when it does (each case gets a share
    of what is left), so the answer is at most ``budget_left``.
    """
    left = ratio * pending + max(0.0, ratio * current - current_spent) + fixed
    if budget_left is not None:
        left = min(left, max(0.0, budget_left))
    return max(0.0, left)


def budget_text(budget_left: float | None) -> str:
    if budget_left is None:
        return ""
    if budget_left <= 0:
        return f"budget spent ({format_clock(-budget_left)} over)"
    return f"budget {format_clock(budget_left)} left"


def status_text(index: int, total: int, name: str, case_seconds: float, run_seconds: float,
                left: float, budget_left: float | None = None, width: int = 80,
                short: str | None = None) -> str:
    """The live line, at most ``width - 1`` characters (the last column would wrap):
    ``[3/20] test_train_epoch[mlp-cpu-b128-fp32-xla] | case 12s | run 1m48s | ~2m10s left
    | budget 42s left``. ``short``: the case's shorter name (``train mlp-cpu-b128-...``).
    Where the line does not fit, the test's name gives way to the short one, then the
    run's time goes, then the budget, then the name is shortened in the middle, then the
    end is cut."""
    head = f"[{index}/{total}] "
    short = short or _case_id(name)
    case, run = f"case {format_clock(case_seconds)}", f"run {format_clock(run_seconds)}"
    left_text, budget = f"~{format_clock(left)} left", budget_text(budget_left)
    room = width - 1
    tails = [[case, run, left_text, budget], [case, left_text, budget], [case, left_text]]
    for tail in tails:
        rest = "".join(f" | {field}" for field in tail if field)
        for label in (name, short):
            if len(head) + len(label) + len(rest) <= room:
                return head + label + rest
    rest = "".join(f" | {field}" for field in tails[-1])
    space = room - len(head) - len(rest)
    if space >= 12:
        return head + _shorten(short, space) + rest
    return (head + short + rest)[:room]


def _case_id(name: str) -> str:
    """``test_train_epoch[mlp-cpu-b128-fp32-xla]`` -> ``mlp-cpu-b128-fp32-xla``."""
    return name[name.index("[") + 1:-1] if "[" in name and name.endswith("]") else name


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 3
    return text[:keep - keep // 2] + "..." + text[len(text) - keep // 2:]


def case_line(index: int, total: int, label: str, outcome: str, case_seconds: float,
              run_seconds: float, left: float, budget_left: float | None = None) -> str:
    """The line a finished case gets where there is no live line:
    ``fashion-bench [3/20] train mlp-cpu-b128-fp32-xla: 2.31 s/epoch, 26.0k samples/s,
    ±1.2% (99%), 5 rounds, converged; case 14s, run 1m48s, ~2m10s left``."""
    clock = [f"case {format_clock(case_seconds)}", f"run {format_clock(run_seconds)}",
             f"~{format_clock(left)} left"]
    budget = budget_text(budget_left)
    return (f"fashion-bench [{index}/{total}] {label}: {outcome}; " + ", ".join(clock)
            + (f", {budget}" if budget else ""))


# --- The run's position ----------------------------------------------------------------

@dataclasses.dataclass
class RunContext:
    """Where one process's cases sit in the run; a ``--bench-isolate`` worker gets it from
    its parent (:data:`PROGRESS_ENV`), a process that runs the whole matrix makes its own.

    Times are in seconds; ``started`` is the wall clock (``time.time()``) of the run's
    start, the one clock two processes share.
    """

    offset: int = 0  # cases of the run finished before this process's first
    total: int | None = None  # cases in the run (None: this process's own count)
    started: float | None = None  # the run's start, time.time()
    budget: float | None = None  # the run's budget (--bench-budget)
    later: float = 0.0  # estimated seconds of the cases after this process's
    later_fixed: float = 0.0  # seconds after them that are no case's (start-ups, the end)
    done_estimate: float = 0.0  # estimated seconds of the cases finished before
    done_actual: float = 0.0  # their actual seconds

    def to_env(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_env(cls, environ=None) -> RunContext | None:
        """The context in :data:`PROGRESS_ENV`; None where it is unset or unreadable (the
        worker then counts its own cases only)."""
        text = (os.environ if environ is None else environ).get(PROGRESS_ENV)
        if not text:
            return None
        try:
            fields = json.loads(text)
            return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls)
                          if f.name in fields})
        except (ValueError, TypeError):
            return None


class Progress:
    """The run's clock and count: cases finished, their estimates against their actual
    time, the case running. All times on ``clock`` (monotonic)."""

    def __init__(self, expected: dict[str, float], started: float,
                 context: RunContext | None = None, fixed_end: float = 0.0,
                 budget: float | None = None, labels: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        context = context or RunContext()
        self.clock = clock
        self.expected = dict(expected)  # nodeid -> estimated seconds (the plan's)
        self.labels = labels or {}  # nodeid -> "train mlp-cpu-b128-fp32-xla"
        self.started = started
        self.budget = budget if context.budget is None else context.budget
        self.offset = context.offset
        self.total = context.total or len(self.expected)
        self.later = context.later
        self.fixed = fixed_end + context.later_fixed
        self.done_estimate = context.done_estimate
        self.done_actual = context.done_actual
        self.finished: set[str] = set()
        self.current: str | None = None
        self.current_started = 0.0

    def counts(self, nodeid: str) -> bool:
        return nodeid in self.expected

    @property
    def index(self) -> int:
        """The running case's number (1-based), or the last finished one's."""
        return min(self.total, self.offset + len(self.finished)
                   + (1 if self.current is not None else 0))

    def start(self, nodeid: str) -> None:
        self.current, self.current_started = nodeid, self.clock()

    def finish(self, nodeid: str, timed: bool) -> float:
        """``nodeid`` is over; ``timed``: it measured (its time corrects the estimates).
        Returns the seconds it took."""
        seconds = self.clock() - self.current_started if nodeid == self.current else 0.0
        if nodeid in self.expected and nodeid not in self.finished:
            self.finished.add(nodeid)
            if timed and seconds > 0:
                self.done_estimate += self.expected[nodeid]
                self.done_actual += seconds
        if nodeid == self.current:
            self.current = None
        return seconds

    def run_seconds(self) -> float:
        return self.clock() - self.started

    def case_seconds(self) -> float:
        return self.clock() - self.current_started if self.current is not None else 0.0

    def budget_left(self) -> float | None:
        return None if self.budget is None else self.budget - self.run_seconds()

    def left(self) -> float:
        pending = self.later + sum(seconds for nodeid, seconds in self.expected.items()
                                   if nodeid not in self.finished and nodeid != self.current)
        current = self.expected.get(self.current, 0.0) if self.current is not None else 0.0
        return time_left(pending, current, self.case_seconds(),
                         correction(self.done_estimate, self.done_actual), self.fixed,
                         self.budget_left())

    def status(self, width: int) -> str:
        name = (self.current or "").rsplit("::", 1)[-1]
        return status_text(self.index, self.total, name, self.case_seconds(),
                           self.run_seconds(), self.left(), self.budget_left(), width,
                           self.labels.get(self.current))
