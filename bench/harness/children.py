"""The child processes a bench session starts (:mod:`bench.harness.command` names the
roles): the ``--bench-repeat`` runs, one after another, and the ``--bench-isolate``
workers, one per group of cases, each with its share of the budget.

Each is a pytest session of its own, started with :func:`bench.harness.command.bench_command`
and this session's own arguments; the environment tells it its role
(:mod:`bench.harness.session`: ``FASHION_BENCH_REPEAT``, ``FASHION_BENCH_GROUP``,
``FASHION_BENCH_WORKER_JOURNAL``).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from bench.harness import cases as matrix
from bench.harness import progress
from bench.harness.command import bench_command
from bench.harness.options import timing
from bench.harness.session import (
    CONCURRENT_ENV,
    GROUP_ENV,
    REPEAT_ENV,
    RUN_GROUP_ENV,
    WORKER_JOURNAL_ENV,
    BenchState,
    group_of,
    state_of,
    worker_results,
)


def run_repeats(config) -> int | None:
    """``--bench-repeat N``: run the whole session N times, each in its own process.

    The run (one process) is the unit of evidence: runs of unchanged code differ far more
    than the rounds inside one run. Each repeat is a plain pytest process with the same
    arguments, writing its own result file; the runs share a ``run_group`` id. A
    ``--bench-budget`` is for all the runs together: each gets an equal share of what is
    left when it starts. Returns the exit status of the whole (the first failing run's),
    or None: this session is a run itself.
    """
    repeat = getattr(config.option, "bench_repeat", 1)
    if repeat <= 1 or os.environ.get(REPEAT_ENV):
        return None
    args = _without_repeat(list(config.invocation_params.args))
    group = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    budget = getattr(config.option, "bench_budget", None)
    started = time.monotonic()
    worst = 0
    for index in range(1, repeat + 1):
        print(f"fashion-bench: run {index} of {repeat} (run group {group})", flush=True)
        env = dict(os.environ, **{RUN_GROUP_ENV: group, REPEAT_ENV: f"{index}/{repeat}"})
        share = []
        if budget is not None:  # the last --bench-budget on the command line wins
            left = budget - (time.monotonic() - started)
            share = ["--bench-budget", f"{max(1.0, left / (repeat - index + 1)):.1f}s"]
        code = subprocess.call(bench_command([*args, *share], target=None),
                               cwd=config.invocation_params.dir, env=env)
        if code in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.USAGE_ERROR):
            return code  # Ctrl-C, or an argument no run can accept: stop here
        worst = worst or code
    return worst


def _without_repeat(args: list[str]) -> list[str]:
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--bench-repeat":
            skip = True
        elif not arg.startswith("--bench-repeat="):
            kept.append(arg)
    return kept


def run_groups(session) -> bool | None:
    """``--bench-isolate``: each group of cases runs in a worker process of its own.

    The workers append their cases to this session's journal; this process writes the
    result file from it at the end. A worker that dies takes only its own group's
    unfinished cases with it: they are recorded as failed, and the next group runs.
    Returns True where this session's test loop is done (the workers ran it, or
    ``--bench-plan`` runs nothing), None where pytest runs the cases here.
    """
    config = session.config
    state = state_of(config)
    if getattr(config.option, "bench_plan", False):
        return True  # --bench-plan: the plan is printed; nothing runs
    if (not getattr(config.option, "bench_isolate", False) or not timing(config)
            or os.environ.get(WORKER_JOURNAL_ENV) or session.config.option.collectonly):
        return None
    if state.journal is None:
        raise pytest.UsageError("--bench-isolate needs a result file: drop --bench-no-save")
    groups = list(dict.fromkeys(
        group_of(item.callspec.params["case"]) for item in session.items
        if getattr(item, "callspec", None) and "case" in item.callspec.params
        and not item.get_closest_marker("skip")))
    state.isolating = True
    args = [a for a in config.invocation_params.args
            if a not in ("--bench-isolate", "--bench-no-isolate")] + ["--bench-no-isolate"]
    tracker = progress.plugin_of(config)  # where the run is, said here and told the worker
    for index, group in enumerate(groups, 1):
        position = tracker.group_starting(index, groups, state.journal)
        env = dict(os.environ, **{GROUP_ENV: group, WORKER_JOURNAL_ENV: str(state.journal.path),
                                  CONCURRENT_ENV: "1" if state.concurrent else "0"}, **position)
        share = _group_budget(state, group)
        if share is not None and share <= 0:
            for case in _group_cases(state, group):
                state.leave_out(case, "the budget was spent before its group began")
            continue
        budget = ["--bench-budget", f"{share:.1f}s"] if share is not None else []
        code = subprocess.call(bench_command([*args, "--bench-no-save",
                                               "--bench-quiet-wait", "0", *budget], target=None),
                               cwd=config.invocation_params.dir, env=env)
        if code == pytest.ExitCode.INTERRUPTED:
            raise KeyboardInterrupt
        if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED,
                        pytest.ExitCode.NO_TESTS_COLLECTED):
            state.worker_failures.append({
                "case": group, "suite": "*", "name": group, "fullname": f"worker {group}",
                "phase": "worker", "error": f"the worker process of group {group} ended "
                                            f"with exit status {code}; its unfinished "
                                            f"cases are missing", "trace": ""})
    tracker.collect(state.journal)  # the last group's rows, for the closing table
    worker_failures = len(worker_results(state)["fashion_bench_failures"])
    session.testsfailed += worker_failures + len(state.worker_failures)
    return True


def _group_cases(state: BenchState, group: str) -> list[matrix.Case]:
    return [e.case for e in (state.plan.estimates if state.plan else [])
            if group_of(e.case) == group]


def _group_budget(state: BenchState, group: str) -> float | None:
    """Under --bench-isolate and a budget: a group's share of what is left, in proportion
    to its cases' estimates among the groups still to run (None: no budget)."""
    if state.budget is None or state.plan.budget is None:
        return None
    remaining = state.budget.remaining()
    pending = state.budget.pending()
    mine = sum(state.plan.expected(e) for e in pending if group_of(e.case) == group)
    total = sum(state.plan.expected(e) for e in pending)
    for e in [e for e in pending if group_of(e.case) == group]:
        state.budget.start(e.case)  # the worker's own budget takes it from here
    return remaining * mine / total if total > 0 else remaining
