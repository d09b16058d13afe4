"""Where a bench run is while it runs, and the figures it found when it ends.

A full matrix runs for half an hour and more, and pytest alone shows a dot per case. During
``pytest bench --benchmark-only`` this module adds:

- **On a terminal, a live status line**, redrawn in place twice a second while a case
  runs: the case i of N and its name, the time spent in the case and in the run, the time
  left and, under a budget, the budget left. The time left is the plan's estimate
  (:mod:`bench.harness.plan`) of what is still to run, times the correction the finished cases
  give (their actual time over their estimate: :func:`correction`, :func:`time_left`).
  The line is drawn on a line of its own below pytest's and erased, the cursor put back
  where pytest left it, before pytest writes anything (:class:`LiveLine`), so the dots,
  ``PASSED`` lines and warnings stay as pytest draws them.
- **Elsewhere (CI, a pipe), one line per finished case**: its headline figure, its 99%
  interval, rounds and stop reason, i/N, the run's time spent and left
  (:func:`case_line`). Also where a live line would be overwritten by other output:
  ``-s``/``--capture=tee-sys``, live logging, ``--benchmark-verbose``, ``TERM=dumb``.
- **At the end, a compact table** of the figures people read (:mod:`bench.harness.figures`), in
  place of pytest-benchmark's 250-column one in microseconds; ``--bench-benchmark-table``
  or any of pytest-benchmark's display options bring its table back.

Nothing is shown in xdist workers (nor by their controller: pytest-benchmark times
nothing under xdist) or at ``-qq``. Under ``--bench-isolate`` each group of cases runs in
a worker process of its own: the parent passes it the run's position in
:data:`PROGRESS_ENV` (:class:`RunContext`: cases done before the group, the run's start
and budget, what the later groups are expected to take, the correction so far), so the
worker's line and lines count over the whole run; the parent says at the start of each
group where the run stands, from the cases the workers journaled, and prints the closing
table from the journal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Callable

import pytest

from bench.harness import figures

#: The run's position, handed by a ``--bench-isolate`` parent to its group's worker (JSON).
PROGRESS_ENV = "FASHION_BENCH_PROGRESS"
PLUGIN_NAME = "fashion-bench-progress"
#: Seconds between redraws of the live line (it shows whole seconds).
REDRAW_SECONDS = 0.5
#: The correction of the estimates stays within these bounds (a first case that compiles
#: for long, or fails fast, says little about the rest).
CORRECTION_BOUNDS = (0.25, 4.0)


def add_options(group) -> None:
    """The ``--bench-*`` options of this module (in plugin.py's "fashion-bench" group)."""
    group.addoption("--bench-benchmark-table", action="store_true",
                    help="at the end, also print pytest-benchmark's own table (every "
                         "statistic, in one time unit for all rows) after fashion-bench's "
                         "compact one (the median per unit and per sample, the 99%% "
                         "interval, rounds, why they stopped); shown too when any of "
                         + ", ".join(figures.BENCHMARK_TABLE_OPTIONS) + " is given")


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


def _budget_text(budget_left: float | None) -> str:
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
    left_text, budget = f"~{format_clock(left)} left", _budget_text(budget_left)
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
    budget = _budget_text(budget_left)
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


# --- The live line ---------------------------------------------------------------------

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


class ProgressPlugin:
    """The pytest hooks of this module, registered by :mod:`bench.harness.plugin`: the live line or
    the per-case lines during the run, the parent's per-group position under
    ``--bench-isolate``, and the closing table."""

    def __init__(self, config, state) -> None:
        self.config = config
        self.state = state
        self.mode: str | None = None
        self.progress: Progress | None = None
        self.live: LiveLine | None = None
        self._fd: int | None = None
        self.worker_rows: list[dict] = []  # rows the --bench-isolate workers journaled
        self._seen_rows: set[tuple] = set()
        self._by_group: dict[str, list[str]] = {}
        self._by_key: dict[tuple[str, str], str] = {}

    # Which mode, and the count of cases.
    def _reporter(self):
        return self.config.pluginmanager.get_plugin("terminalreporter")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session) -> None:
        from bench.harness.session import group_of

        state, config = self.state, self.config
        plan = state.plan
        if plan is None or self._reporter() is None or config.option.collectonly or (
                getattr(config.option, "bench_plan", False)):
            return
        planned = {e.case: plan.expected(e) for e in plan.estimates}
        expected: dict[str, float] = {}
        labels: dict[str, str] = {}
        for item in session.items:
            case = getattr(item, "callspec", None) and item.callspec.params.get("case")
            if case in planned and not item.get_closest_marker("skip"):
                expected[item.nodeid] = planned[case]
                labels[item.nodeid] = f"{case.suite} {case.id}"
                self._by_group.setdefault(group_of(case), []).append(item.nodeid)
                self._by_key[(case.suite, case.id)] = item.nodeid
        if not expected:
            return
        context = RunContext.from_env()
        started = state.started
        if context is not None and context.started is not None:
            started = time.monotonic() - (time.time() - context.started)
        self.progress = Progress(expected, started, context, fixed_end=plan.overhead / 2,
                                 budget=plan.budget, labels=labels)
        self.mode = self._mode()
        if self.mode == "live" and not state.isolating and not getattr(
                config.option, "bench_isolate", False):
            self._start_live()

    def _mode(self) -> str | None:
        config = self.config
        option = config.option
        try:
            isatty = sys.stdout.isatty()
        except (AttributeError, ValueError):
            isatty = False
        xdist = hasattr(config, "workerinput") or getattr(option, "dist", "no") != "no" or (
            bool(getattr(option, "numprocesses", None)))
        return choose_mode(isatty=isatty, term=os.environ.get("TERM"),
                           verbosity=option.verbose, capture=getattr(option, "capture", "no"),
                           xdist=xdist, log_cli=bool(config.getini("log_cli")),
                           benchmark_verbose=bool(getattr(option, "benchmark_verbose", False)))

    def _start_live(self) -> None:
        reporter = self._reporter()
        if _column(reporter) is None:
            self.mode = "lines"  # a terminal reporter of another make: no cursor to return to
            return
        writer = reporter._tw
        try:
            self._fd = os.dup(sys.stdout.fileno())
        except (AttributeError, ValueError, OSError):
            self.mode = "lines"
            return
        progress = self.progress
        self.live = LiveLine(self._fd, progress.status, lambda: writer.fullwidth,
                             lambda: writer.width_of_current_line,
                             encoding=getattr(sys.stdout, "encoding", None) or "utf-8")

    # During the run.
    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logstart(self, nodeid, location) -> None:
        if self.progress is not None and self.progress.counts(nodeid):
            self.progress.start(nodeid)
            if self.live is not None:
                self.live.show()

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_logreport(self, report):
        if self.live is not None:
            self.live.hide()
        yield
        if (self.live is not None and report.when == "setup" and report.passed
                and self.progress is not None and self.progress.current == report.nodeid):
            self.live.show()  # pytest wrote nothing for a setup that passed; the case runs

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        progress = self.progress
        if progress is None or not progress.counts(nodeid):
            return
        if self.live is not None:
            self.live.hide()
        row, failure, skipped = self._outcome(nodeid)
        seconds = progress.finish(nodeid, timed=row is not None)
        if self.mode != "lines":
            return
        if row is not None:
            label, outcome = figures.row_label(row), figures.outcome_text(row)
        else:
            label = progress.labels.get(nodeid, nodeid.rsplit("::", 1)[-1])
            outcome = (f"FAILED ({failure})" if failure
                       else f"skipped ({skipped})" if skipped else "no figure")
        reporter = self._reporter()
        # A line of its own, pytest's left as it was: it goes on with its dots and [nn%].
        where = reporter.currentfspath
        if _column(reporter) != 0:
            reporter.write("\n")
        reporter.currentfspath = None
        reporter.write_line(case_line(progress.offset + len(progress.finished),
                                      progress.total, label, outcome, seconds,
                                      progress.run_seconds(), progress.left(),
                                      progress.budget_left()))
        reporter.currentfspath = where

    def _outcome(self, nodeid: str) -> tuple[dict | None, str | None, str | None]:
        """(the case's row, or why it failed, or why it was skipped)."""
        for failure in self.state.failures:
            if failure.get("fullname") == nodeid:
                return None, failure.get("error"), None
        for entry in self.state.not_run[::-1]:
            key = self._by_key.get((entry.get("suite"), entry.get("case")))
            if key == nodeid:
                return None, None, entry.get("reason")
        for bench in getattr(getattr(self.config, "_benchmarksession", None), "benchmarks", []):
            if (bench and bench.fullname == nodeid and not bench.has_error
                    and bench.extra_info.get("status", "ok") == "ok"):
                return bench.as_dict(include_data=False), None, None
        return None, None, None

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.close()
            self.live = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo) -> None:
        self._stop_live()

    @pytest.hookimpl(tryfirst=True)
    def pytest_internalerror(self, excrepr, excinfo) -> None:
        self._stop_live()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus) -> None:
        self._stop_live()

    def pytest_unconfigure(self, config) -> None:
        self._stop_live()

    # --bench-isolate: the parent's view of its workers.
    def group_starting(self, index: int, groups: list[str], journal) -> dict[str, str]:
        """``--bench-isolate``: group ``index`` (1-based) of ``groups`` is about to start in
        its worker. Says so, with where the run stands (cases, time spent and left, from
        the plan and what the earlier groups' workers journaled in ``journal``); returns
        the environment that tells the worker the same (:data:`PROGRESS_ENV`)."""
        group, later = groups[index - 1], groups[index:]
        say = f"\nfashion-bench: group {index} of {len(groups)}: {group} (worker process)"
        progress = self.progress
        if progress is None:
            print(say, flush=True)
            return {}
        self.collect(journal)
        for earlier in groups[:index - 1]:  # finished, failed or left out: done
            progress.finished.update(self._by_group.get(earlier, []))
        mine = self._by_group.get(group, [])
        later_cases = sum(progress.expected[n] for g in later for n in self._by_group.get(g, []))
        # The plan's overhead: the parent's start and end, and each worker's (bench.harness.plugin).
        per_group = self.state.plan.overhead / (1 + len(self._by_group))
        done = progress.offset + len(progress.finished)
        left = time_left(sum(progress.expected[n] for n in mine) + later_cases,
                         ratio=correction(progress.done_estimate, progress.done_actual),
                         fixed=per_group * (len(later) + 1.5),
                         budget_left=progress.budget_left())
        budget = _budget_text(progress.budget_left())
        if mine:
            cases = (f"case {done + 1}" if len(mine) == 1
                     else f"cases {done + 1}-{done + len(mine)}")
            say += (f"; {cases} of {progress.total}, run {format_clock(progress.run_seconds())}"
                    f", ~{format_clock(left)} left" + (f", {budget}" if budget else ""))
        print(say, flush=True)
        context = RunContext(offset=done, total=progress.total,
                             started=time.time() - progress.run_seconds(),
                             budget=progress.budget, later=later_cases,
                             later_fixed=per_group * (len(later) + 0.5),
                             done_estimate=progress.done_estimate,
                             done_actual=progress.done_actual)
        return {PROGRESS_ENV: context.to_env()}

    def collect(self, journal) -> None:
        """Read the rows the workers journaled so far: for the closing table, and, where
        the plan estimated the case, to correct the estimates by their actual time."""
        from bench.store.journal import read_journal

        if journal is None or not journal.path.exists():
            return
        try:
            rows = read_journal(journal.path)["benchmarks"]
        except (OSError, ValueError):
            return
        for row in rows:
            info = row.get("extra_info") or {}
            key = (info.get("suite"), info.get("case"), row.get("fullname"))
            if key in self._seen_rows:
                continue
            self._seen_rows.add(key)
            self.worker_rows.append(row)
            nodeid = self._by_key.get(key[:2])
            seconds = info.get("case_seconds")
            if self.progress and nodeid and isinstance(seconds, (int, float)) and seconds > 0:
                self.progress.done_estimate += self.progress.expected[nodeid]
                self.progress.done_actual += seconds

    # The closing table (bench.harness.figures).
    def pytest_sessionstart(self, session) -> None:
        bs = getattr(self.config, "_benchmarksession", None)
        if bs is not None and not figures.wants_benchmark_table(self.config):
            figures.hide_benchmark_table(bs)

    def rows(self) -> list[dict]:
        """This session's rows (its own cases', then its workers'), as in the result file."""
        bs = getattr(self.config, "_benchmarksession", None)
        failed = {f.get("fullname") for f in self.state.failures}
        own = [b.as_dict(include_data=False) for b in getattr(bs, "benchmarks", [])
               if b and not b.has_error and b.fullname not in failed
               and b.extra_info.get("status", "ok") == "ok"]
        return own + self.worker_rows

    def pytest_terminal_summary(self, terminalreporter, config) -> None:
        from bench.harness.session import WORKER_JOURNAL_ENV

        bs = getattr(config, "_benchmarksession", None)
        if os.environ.get(WORKER_JOURNAL_ENV) or getattr(bs, "quiet", False):
            return  # an isolated group: its parent prints the whole run's table
        lines = figures.summary_table(self.rows())
        if not lines:
            return
        terminalreporter.write_sep("-", "fashion-bench: the figures")
        for line in lines:
            terminalreporter.write_line(line)
        shown = figures.wants_benchmark_table(config)  # then pytest-benchmark's follows
        for line in figures.LEGEND[:1] if shown else figures.LEGEND:
            terminalreporter.write_line(line)


def _column(reporter) -> int | None:
    """Where pytest's cursor is on its current line (None: this reporter does not say)."""
    writer = getattr(reporter, "_tw", None)
    return getattr(writer, "width_of_current_line", None)


def plugin_of(config) -> ProgressPlugin | None:
    return config.pluginmanager.get_plugin(PLUGIN_NAME)
