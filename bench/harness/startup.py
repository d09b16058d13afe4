"""The session's start (``pytest_configure``): its settings, the checks that turn a bad
command line into a usage error before anything slow, and what this process is in a run.

:func:`configure` runs its steps in an order that matters: its docstring says which and why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import fashion_core
from bench.harness import cases as matrix
from bench.harness import progress
from bench.harness.options import timing
from bench.harness.session import (
    BACKEND,
    CONCURRENT_ENV,
    WORKER_JOURNAL_ENV,
    BenchState,
    check_writable,
    open_journal,
    results_root,
    take_machine_lock,
    tf_config,
)
from bench.harness.turns import ENV_FOLDER as TURNS_ENV_FOLDER
from bench.harness.turns import Turns
from bench.measure.contention import wait_for_quiet
from bench.store.journal import Journal, recover_orphans


def configure(config) -> None:
    """Set the session up, in this order:

    1. The session's state on ``config`` (every session: the hooks read it); nothing more
       where the plugin's options are absent.
    2. The progress plugin (:mod:`bench.harness.progress`) registered.
    3. The settings, every bad value a usage error before anything slow starts: the
       backend choice, then the options and the matrix's defaults (the default budget not
       for an A/B side, ``FASHION_BENCH_TURNS``), then the calibration time.
    4. TensorFlow's logical CPUs for the scaling cases: TensorFlow accepts them only
       before it starts, which step 5 (or anything later) does.
    5. The devices ``--bench-device`` names, resolved: this starts the framework.
    6. Nothing more for a session that times nothing (collect-only, ``--bench-plan``).
    7. An isolated group's worker (``FASHION_BENCH_WORKER_JOURNAL``) writes into its
       parent's journal, under its parent's lock (``FASHION_BENCH_CONCURRENT``: whether
       the parent runs beside another session): nothing more.
    8. A session that saves: its results folder writable, and any journal a dead run left
       there published.
    9. The machine: an A/B side (``FASHION_BENCH_TURNS``) takes its turn, any other
       session the machine lock (``--bench-allow-concurrent``: or runs beside its holder).
    10. The wait for a quiet machine, with the machine held: no bench session starts in
        between.
    11. The journal, for a session that saves: writing its header calibrates the CPU, so
        last, on the quiet machine.
    """
    state = config._fashion_bench = BenchState()  # 1
    if not hasattr(config.option, "bench_matrix"):
        return
    config.pluginmanager.register(progress.ProgressPlugin(config, state), progress.PLUGIN_NAME)  # 2
    _check_backend(state)  # 3
    _read_settings(config, state)
    _check_calibration_time()
    if BACKEND == "tensorflow":  # 4
        _tensorflow_logical_cpus(config)
    _check_devices(config, state)  # 5
    if not timing(config):  # 6
        return
    if os.environ.get(WORKER_JOURNAL_ENV):  # 7
        _attach_to_parent(state)
        return
    saving = not config.getoption("--bench-no-save")
    if saving:  # 8
        _prepare_results(config, state)
    _take_machine(config, state)  # 9
    _wait_for_quiet(config, state)  # 10
    if saving:  # 11
        open_journal(config, state)


def _check_backend(state: BenchState) -> None:
    from fashion_core.backends import BackendError

    try:
        fashion_core.BACKEND_CHOICE.check()
    except BackendError as error:
        raise pytest.UsageError(str(error)) from None
    if fashion_core.BACKEND_CHOICE.automatic:
        state.notes.append(f"backend {fashion_core.BACKEND_CHOICE.describe()}")


def _read_settings(config, state: BenchState) -> None:
    """The options, with the matrix's defaults where they are not given."""
    state.max_contention = config.getoption("--bench-max-contention")
    defaults = matrix.matrix_defaults(config.getoption("--bench-matrix"))
    state.round_seconds = config.getoption("--bench-round-time") or defaults["round_time"]
    state.case_time = config.getoption("--bench-case-time") or defaults["case_time"]
    # The matrix's default budget, as if given; not in an A/B pair taking turns, whose
    # wall clock also runs through the other side's rounds.
    if (config.option.bench_budget is None and defaults["budget"] is not None
            and not os.environ.get(TURNS_ENV_FOLDER)):
        config.option.bench_budget = defaults["budget"]
    from bench.harness.stopping import StoppingRule

    try:
        state.stopping = StoppingRule(precision=config.getoption("--bench-precision-target"),
                                      min_rounds=config.getoption("--bench-min-rounds"),
                                      max_rounds=config.getoption("--bench-max-rounds")
                                      or defaults["max_rounds"])
    except ValueError as error:
        raise pytest.UsageError(f"--bench-min-rounds/--bench-max-rounds: {error}") from None
    if config.option.bench_isolate is None:  # the matrix's default, where it can apply
        # (workers are started with --bench-no-isolate, so never None there)
        config.option.bench_isolate = bool(
            defaults["isolate"] and not config.getoption("--bench-no-save")
            and not os.environ.get(TURNS_ENV_FOLDER))
    if config.getoption("--bench-data") == "synthetic":
        state.data_source = "synthetic"
    _read_shard_settings(config, state)


def _read_shard_settings(config, state: BenchState) -> None:
    """``--bench-shard``, ``--bench-shards``, ``--json`` and ``--bench-run-group``: the
    combinations that mean something (:mod:`bench.harness.shards`)."""
    state.shard = config.getoption("--bench-shard")
    planning = config.getoption("--bench-plan")
    if config.getoption("--bench-shards") and not planning:
        raise pytest.UsageError("--bench-shards N shows the plan in N shards: use it with "
                                "--bench-plan (to run one shard: --bench-shard I/N)")
    if config.getoption("bench_json") and not planning:
        raise pytest.UsageError("--json prints the plan: use it with --bench-plan")
    if (config.getoption("--bench-shards") and state.shard
            and config.getoption("--bench-shards") != state.shard[1]):
        raise pytest.UsageError(f"--bench-shards {config.getoption('--bench-shards')} and "
                                f"--bench-shard {state.shard[0]}/{state.shard[1]} disagree")
    if state.shard and getattr(config.option, "bench_repeat", 1) > 1:
        raise pytest.UsageError("--bench-shard runs one part of one run; --bench-repeat "
                                "makes several runs: run each shard's repeats as jobs of "
                                "their own instead")
    state.run_group = config.getoption("--bench-run-group")


def _check_calibration_time() -> None:
    from fashion_core.calibration import calibration_seconds

    try:
        calibration_seconds()  # a bad value is a usage error now, not a failed calibration
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def _tensorflow_logical_cpus(config) -> None:
    """Scaling cases on a CPU-only machine need logical CPU devices, which TensorFlow
    accepts only before it starts: set up as many as the matrix's largest case uses."""
    cases = matrix.build_matrix(config.option.bench_matrix, ["cpu"], BACKEND)
    most = max((c.replicas or 1 for c in cases if c.suite == "scaling"), default=1)
    if most > 1 and tf_config() is None:
        # Also on a GPU host: the cpu-...-rN cases run on logical CPU devices there too.
        from fashion_core.backends.tf_distributed import ensure_logical_cpus

        ensure_logical_cpus(most)


def _check_devices(config, state: BenchState) -> None:
    """A device asked for by name must be there: one line, before any case runs.

    ``auto`` means the first GPU, else the CPU. The resolved names are kept for
    :func:`bench.harness.collect.parametrize`.
    """
    wanted = matrix.parse_list(config.getoption("--bench-device"))
    if not wanted:
        return
    from fashion_core.backends import DeviceError, resolve_device

    devices = state.backend.list_devices()
    resolved = []
    for name in wanted:
        try:
            resolved.append(resolve_device(name, devices).name)
        except DeviceError as error:
            raise pytest.UsageError(f"--bench-device: {error} (on the {BACKEND} backend)") \
                from None
    state.wanted_devices = list(dict.fromkeys(resolved))



def _attach_to_parent(state: BenchState) -> None:
    """A ``--bench-isolate`` worker: the parent holds the lock and the journal."""
    state.journal = Journal.attach(Path(os.environ[WORKER_JOURNAL_ENV]))
    state.concurrent = os.environ.get(CONCURRENT_ENV) == "1"


def _prepare_results(config, state: BenchState) -> None:
    root = results_root(config, state)
    check_writable(root)
    for path in recover_orphans([root], log=state.notes.append):
        print(f"fashion-bench: published {path} from the journal of a run that died",
              flush=True)


def _take_machine(config, state: BenchState) -> None:
    state.turns = Turns.from_environment()
    if state.turns is not None:
        # One side of an interleaved A/B pair: bench.ab holds the machine lock for both,
        # and this session runs only while it has the turn (from here to its end).
        if config.getoption("--bench-isolate") or config.getoption("--bench-repeat") > 1:
            raise pytest.UsageError("--bench-isolate and --bench-repeat cannot be used in "
                                    "an interleaved A/B run (python -m bench.ab)")
        state.turns.start()
    else:
        take_machine_lock(config, state)


def _wait_for_quiet(config, state: BenchState) -> None:
    wait = config.getoption("--bench-quiet-wait")
    if wait > 0:
        seen = wait_for_quiet(state.max_contention, wait,
                              say=lambda text: print(text, flush=True))
        if seen > state.max_contention:
            state.notes.append(f"the machine was busy when timing began (other processes "
                               f"used {seen:.0%} of the usable cores); contended rows are "
                               f"marked")
