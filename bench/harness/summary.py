"""The session's end: the machine information, the result file written, the journal and
the lock let go, and the closing lines.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone

import pytest

from bench.harness.options import timing
from bench.harness.session import (
    WORKER_JOURNAL_ENV,
    fashion_bench_info,
    save,
    state_of,
)


def machine_info(config, machine_info: dict) -> None:
    """pytest-benchmark's ``machine_info`` gets the ``fashion_bench`` block, once every
    calibrated device has been measured a second time (the session's end)."""
    state = state_of(config)
    state.recalibrate()
    machine_info["fashion_bench"] = fashion_bench_info(state)


#: The commit measured, for a copy of the project without git (the device kit's bundle,
#: a CI artifact): its id, and optionally its time (ISO 8601 or seconds since the epoch)
#: and whether the files differ from it ("1").
COMMIT_ENV, COMMIT_TIME_ENV, COMMIT_DIRTY_ENV = (
    "FASHION_BENCH_COMMIT", "FASHION_BENCH_COMMIT_TIME", "FASHION_BENCH_COMMIT_DIRTY")


def commit_from_env(config) -> dict | None:
    """pytest-benchmark's ``commit_info`` from :data:`COMMIT_ENV` and its companions, or
    None where it is unset (pytest-benchmark then asks git, else says "unversioned")."""
    commit = os.environ.get(COMMIT_ENV, "").strip()
    if not commit:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        raise pytest.UsageError(f"${COMMIT_ENV}={commit!r} is not a commit id (7 to 64 hex "
                                f"digits): set it to the commit measured, or unset it")
    when = os.environ.get(COMMIT_TIME_ENV, "").strip() or None
    if when and re.fullmatch(r"\d+(\.\d+)?", when):
        when = datetime.fromtimestamp(float(when), timezone.utc).isoformat()
    elif when:
        try:
            datetime.fromisoformat(when)
        except ValueError:
            raise pytest.UsageError(f"${COMMIT_TIME_ENV}={when!r} is neither ISO 8601 nor "
                                    f"seconds since the epoch") from None
    return {"id": commit.lower(), "time": when, "author_time": when,
            "dirty": os.environ.get(COMMIT_DIRTY_ENV, "").strip() == "1",
            "project": "fashion-bench", "branch": "(unknown)", "source": COMMIT_ENV}


def finish(session, exitstatus) -> None:
    """Write this run's result file (benchmarks that passed, plus recorded failures).

    The journal (every case as it finished) is deleted once the file holds it all; a run
    cut short by Ctrl-C is saved as ``interrupted``.
    """
    config = session.config
    state = state_of(config)
    try:
        save(config, state, exitstatus)
    finally:
        if state.journal:
            state.journal.close(delete=state.saved is not None)
        if state.lock:
            state.lock.release()
        # An A/B side (state.turns) hands over no more: its process's end is the signal
        # (bench.ab writes <side>.done once it has reaped it, and a waiting side also
        # sees the pid gone), so the framework's teardown at exit, seconds of CPU for
        # TensorFlow, never overlaps the other side's rounds.


def summary(terminalreporter, config) -> None:
    """The closing lines: failed cases, notes, contended rows, the plan against the time
    the run took, where the results are."""
    state = state_of(config)
    if state.failures:
        terminalreporter.write_line(f"fashion-bench: {len(state.failures)} case(s) failed:")
        for failure in state.failures:
            terminalreporter.write_line(f"  {failure['suite']} {failure['case']}: "
                                        f"{failure['error']}")
    for note in state.notes:
        terminalreporter.write_line(f"fashion-bench: {note}")
    contended = [b for b in getattr(getattr(config, "_benchmarksession", None), "benchmarks",
                                    []) if b and b.extra_info.get("contended")]
    if contended:
        terminalreporter.write_line(
            f"fashion-bench: {len(contended)} row(s) contended (other processes took more "
            f"than {state.max_contention:.0%} of the cores while they were timed): "
            + ", ".join(b.extra_info.get("case", b.name) for b in contended[:10])
            + (" ..." if len(contended) > 10 else ""))
    if state.plan is not None and timing(config):
        from bench.harness.plan import format_duration

        took = time.monotonic() - state.started
        terminalreporter.write_line(
            f"fashion-bench: the plan estimated {format_duration(state.plan.total)}; the run "
            f"took {format_duration(took)} ({took / max(state.plan.total, 1e-9):.2f}x)"
            + (f"; {len(state.not_run)} case(s) left out (listed in the result file)"
               if state.not_run else ""))
    if state.saved:
        terminalreporter.write_line(f"fashion-bench: results saved to {state.saved}")
    elif os.environ.get(WORKER_JOURNAL_ENV):  # an isolated group: the parent writes the file
        terminalreporter.write_line("fashion-bench: this group's cases are in the session's "
                                    "journal; the parent writes the result file")
    elif state.journal and state.journal.path.exists():
        terminalreporter.write_line(f"fashion-bench: no result file written; the finished "
                                    f"cases are in {state.journal.path}")
