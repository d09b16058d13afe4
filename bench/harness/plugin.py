"""The harness's pytest plugin: its hooks, each handing the work to the module that does it.

``bench/conftest.py`` only loads this module (everything in :data:`__all__`: the hooks
and fixtures pytest must see, and the backend's name). Run ``pytest bench
--benchmark-only``; ``pytest bench --help`` lists the options under "fashion-bench".

- :mod:`bench.harness.options`: the options, their parsers, whether a session times;
- :mod:`bench.harness.startup`: the session's start, its steps in their order;
- :mod:`bench.harness.children`: the ``--bench-repeat`` runs and ``--bench-isolate`` workers
  (the processes a run starts are named in :mod:`bench.harness.command`);
- :mod:`bench.harness.collect`: the suites' parametrization and the run's plan;
- :mod:`bench.harness.fixtures`: the suites' fixtures;
- :mod:`bench.harness.outcomes`: a case's start and outcome;
- :mod:`bench.harness.summary`: the session's end and its closing lines;
- :mod:`bench.harness.progress`: the progress shown and the closing table (a plugin of
  its own, registered at the start).

The session's state and its result file are in :mod:`bench.harness.session`, what a run
will cost in :mod:`bench.harness.plan`, when a case has measured enough in
:mod:`bench.harness.stopping`.
"""

from __future__ import annotations

import pytest

import fashion_core  # noqa: F401 (picks the Keras backend when KERAS_BACKEND is unset)
from fashion_core.logs import quiet_tensorflow_log

# TensorFlow's C++ start-up log stays off the terminal unless TF_CPP_MIN_LOG_LEVEL is set
# (README, "TensorFlow's log"); before anything below imports TensorFlow.
quiet_tensorflow_log()
from bench.harness import children, collect, options, outcomes, startup, summary
from bench.harness.fixtures import bench_state, dataset, trained_for, trainer_for
from bench.harness.session import BACKEND

#: What ``from bench.harness.plugin import *`` gives ``bench/conftest.py``: the hooks, the
#: fixtures, and BACKEND (suites import it from ``bench.conftest``). A hook added here must
#: be added to this list too; no other name that starts with ``pytest_`` may be (pytest
#: would take it for a hook).
__all__ = [
    "BACKEND",
    "pytest_addoption", "pytest_cmdline_main", "pytest_configure", "pytest_sessionstart",
    "pytest_runtestloop",
    "pytest_collection_modifyitems", "pytest_collection_finish", "pytest_generate_tests",
    "pytest_runtest_setup", "pytest_runtest_makereport",
    "pytest_benchmark_update_machine_info", "pytest_benchmark_generate_commit_info",
    "pytest_sessionfinish", "pytest_terminal_summary",
    "bench_state", "dataset", "trainer_for", "trained_for",
]


def pytest_addoption(parser):
    options.add_options(parser)


def pytest_cmdline_main(config):
    """``--bench-repeat N``: N runs, each a process of its own (children.run_repeats)."""
    return children.run_repeats(config)


def pytest_configure(config):
    """The session's state, settings, checks and machine, in order (startup.configure)."""
    startup.configure(config)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    """``--bench-plan --json``: before pytest's header, its lines silenced (collect)."""
    collect.quiet_for_json(session)


def pytest_runtestloop(session):
    """``--bench-isolate``: each group of cases in a worker process (children.run_groups)."""
    return children.run_groups(session)


def pytest_collection_modifyitems(session, config, items):
    """The run's plan: what fits the budget; the rest left out (collect.make_plan)."""
    collect.make_plan(config, items)


def pytest_collection_finish(session):
    """Print the plan before the first case."""
    collect.show_plan(session)


def pytest_generate_tests(metafunc):
    """Parametrize each suite's test with its cases; absent devices are skipped."""
    collect.parametrize(metafunc)


def pytest_runtest_setup(item):
    """A case starts: its budget share, clock and memory window (outcomes.start_case)."""
    outcomes.start_case(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record a failed case with its reason; the rest of the matrix goes on."""
    outcome = yield
    outcomes.after_report(item, call, outcome.get_result())


def pytest_benchmark_update_machine_info(config, machine_info):
    summary.machine_info(config, machine_info)


@pytest.hookimpl(tryfirst=True)
def pytest_benchmark_generate_commit_info(config):
    """The commit measured where no git checkout says it: ``$FASHION_BENCH_COMMIT`` (the
    device kit sets it from its bundle); None lets pytest-benchmark ask git."""
    return summary.commit_from_env(config)


def pytest_sessionfinish(session, exitstatus):
    """Write this run's result file; let the journal and the lock go (summary.finish)."""
    summary.finish(session, exitstatus)


def pytest_terminal_summary(terminalreporter, config):
    summary.summary(terminalreporter, config)
