"""A case's start and its outcome: its share of the budget and its clock when it starts,
a failure recorded with its reason, a finished case journaled at once (a run cut short
keeps it).
"""

from __future__ import annotations

import time
import traceback

import pytest

from bench.harness.options import timing
from bench.harness.session import state_of


def start_case(item) -> None:
    """A case starts: its share of the budget (or it is left out, with the reason), its
    clock, and its host-memory peak counting this case only (measure.reset_peak_rss)."""
    if getattr(item, "callspec", None) and "case" in item.callspec.params:
        from bench.measure.rounds import reset_peak_rss

        state = state_of(item.config)
        case = item.callspec.params["case"]
        state.case_started = time.perf_counter()
        state.case_allowance = state.case_time
        if state.budget is not None and timing(item.config):
            allowance, reason = state.budget.start(case)
            if reason:
                state.leave_out(case, reason)
                pytest.skip(f"left out: {reason}")
            if allowance is not None:
                state.case_allowance = min(allowance, state.case_allowance)
        state.rss_window = reset_peak_rss()


def after_report(item, call, report) -> None:
    """A phase of a case is over (``report``): a failure is recorded with its reason (the
    rest of the matrix goes on); a case that passed is journaled after its teardown."""
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    if case is None:
        return
    if not report.failed:
        if report.when == "teardown":
            _journal_finished(item)
        return
    error = call.excinfo.value if call.excinfo else None
    first_line = str(error).strip().splitlines()[0] if error and str(error).strip() else ""
    reason = f"{type(error).__name__}: {first_line}" if error else "failed"
    failure = {
        "case": case.id, "suite": case.suite, "name": item.name, "fullname": item.nodeid,
        "phase": report.when, "error": reason[:500],
        "trace": "".join(traceback.format_exception_only(type(error), error))[-2000:]
        if error else ""}
    state = state_of(item.config)
    state.failures.append(failure)
    if state.journal:
        state.journal.add_failure(failure)


def _journal_finished(item) -> None:
    """Journal the case's benchmark as soon as the case is over (after its teardown)."""
    state = state_of(item.config)
    bs = getattr(item.config, "_benchmarksession", None)
    if not (state.journal and bs) or item.nodeid in {f["fullname"] for f in state.failures}:
        return
    for bench in bs.benchmarks:
        if (bench and id(bench) not in state.journaled and bench.fullname == item.nodeid
                and not bench.has_error):
            state.journal.add_benchmark(bench.as_dict(include_data=True))
            state.journaled.add(id(bench))
