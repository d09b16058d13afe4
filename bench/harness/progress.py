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

Here: the pytest plugin object (:class:`ProgressPlugin`) and that hand-off. The time left
and the lines' texts are in :mod:`bench.harness.timeleft`, the live line and the choice
of mode in :mod:`bench.harness.liveline`; their names are importable from here too.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from bench.harness import figures
from bench.harness.liveline import REDRAW_SECONDS, LiveLine, choose_mode
from bench.harness.timeleft import (
    CORRECTION_BOUNDS,
    PROGRESS_ENV,
    Progress,
    RunContext,
    budget_text,
    case_line,
    correction,
    format_clock,
    status_text,
    time_left,
)

#: This module's own names, and those of the two it draws on, imported from here as before.
__all__ = [
    "CORRECTION_BOUNDS", "PLUGIN_NAME", "PROGRESS_ENV", "REDRAW_SECONDS", "LiveLine",
    "Progress", "ProgressPlugin", "RunContext", "add_options", "case_line", "choose_mode",
    "correction", "format_clock", "plugin_of", "status_text", "time_left",
]

PLUGIN_NAME = "fashion-bench-progress"


def add_options(group) -> None:
    """The ``--bench-*`` options of this module (in the "fashion-bench" group of
    :mod:`bench.harness.options`)."""
    group.addoption("--bench-benchmark-table", action="store_true",
                    help="at the end, also print pytest-benchmark's own table (every "
                         "statistic, in one time unit for all rows) after fashion-bench's "
                         "compact one (the median per unit and per sample, the 99%% "
                         "interval, rounds, why they stopped); shown too when any of "
                         + ", ".join(figures.BENCHMARK_TABLE_OPTIONS) + " is given")


class ProgressPlugin:
    """The pytest hooks of this module, registered by :mod:`bench.harness.startup`: the live
    line or the per-case lines during the run, the parent's per-group position under
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
        # The plan's overhead: the parent's start and end, and each worker's
        # (bench.harness.collect).
        per_group = self.state.plan.overhead / (1 + len(self._by_group))
        done = progress.offset + len(progress.finished)
        left = time_left(sum(progress.expected[n] for n in mine) + later_cases,
                         ratio=correction(progress.done_estimate, progress.done_actual),
                         fixed=per_group * (len(later) + 1.5),
                         budget_left=progress.budget_left())
        budget = budget_text(progress.budget_left())
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
