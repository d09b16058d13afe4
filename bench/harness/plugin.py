"""The harness's pytest plugin: the ``--bench-*`` options, the matrix, fixtures and hooks.

``bench/conftest.py`` only loads this module. Run ``pytest bench --benchmark-only``;
``pytest bench --help`` lists the options under "fashion-bench". The session's state and
its result file are in :mod:`bench.harness.session`, what a run will cost in
:mod:`bench.harness.plan`, when a case has measured enough in :mod:`bench.harness.stopping`,
the processes a run starts in :mod:`bench.harness.command`.
"""

from __future__ import annotations

import collections
import os
import subprocess
import time
import traceback
import uuid
from pathlib import Path

import pytest

import fashion_core  # picks the Keras backend when KERAS_BACKEND is unset
from fashion_core.logs import quiet_tensorflow_log

# TensorFlow's C++ start-up log stays off the terminal unless TF_CPP_MIN_LOG_LEVEL is set
# (README, "TensorFlow's log"); before anything below imports TensorFlow.
quiet_tensorflow_log()
from bench.harness import cases as matrix
from bench.harness import progress
from bench.harness.command import bench_command
from bench.harness.session import (
    BACKEND,
    CONCURRENT_ENV,
    GROUP_ENV,
    REPEAT_ENV,
    RUN_GROUP_ENV,
    WORKER_JOURNAL_ENV,
    BenchState,
    check_writable,
    fashion_bench_info,
    group_of,
    open_journal,
    results_root,
    save,
    state_of,
    take_machine_lock,
    tf_config,
    worker_results,
)
from bench.harness.turns import ENV_FOLDER as TURNS_ENV_FOLDER
from bench.harness.turns import Turns
from bench.measure.rounds import wait_for_quiet
from bench.store.journal import Journal, recover_orphans


def pytest_addoption(parser):
    group = parser.getgroup("fashion-bench", "fashion-bench benchmark matrix")
    group.addoption("--bench-matrix", default="quick", choices=matrix.MATRICES,
                    help="quick (default: every axis, under 10 minutes on 2 CPU cores), "
                         "full (every combination; hours on a CPU), tiny (2 cases, for "
                         "testing the harness) or ci (4 MLP cases on real data, about a "
                         "minute: CI's hardware comparison)")
    group.addoption("--bench-device", default=None, metavar="LIST",
                    help="devices to run on, comma-separated (cpu,gpu:0); default: the CPU, "
                         "every GPU found, and gpu:0 (skipped, with the reason, if absent)")
    group.addoption("--bench-batch", default=None, metavar="LIST",
                    help="keep only these batch sizes, e.g. 128,1024")
    group.addoption("--bench-precision", default=None, metavar="LIST",
                    help="keep only these precisions: fp32,fp16,bf16")
    group.addoption("--bench-model", default=None, metavar="LIST",
                    help="keep only these models: mlp,cnn")
    group.addoption("--bench-results", default="results", metavar="DIR",
                    help="folder for result files, one subfolder a machine "
                         "(default: results)")
    group.addoption("--bench-no-save", action="store_true",
                    help="do not write a result file")
    group.addoption("--bench-data", default=None, metavar="DIR|synthetic",
                    help="Fashion-MNIST folder (default: the usual look-up), or 'synthetic' "
                         "for random data of the same shape (harness tests only; its "
                         "results go to DIR/synthetic/, which the report leaves out)")
    group.addoption("--bench-repeat", type=_positive_int, default=1, metavar="N",
                    help="make N runs, one after another, each its own pytest process and "
                         "result file, grouped by a shared run_group id: the gate compares "
                         "runs, and needs several a side to tell a change from noise "
                         "(default: 1)")
    group.addoption("--bench-isolate", action="store_true", default=None,
                    help="run each group of cases (one model, device and precision) in a "
                         "worker process of its own, so no case inherits another's memory "
                         "or crashes the rest; results still land in one result file. Costs "
                         "a framework start and a calibration per group (README, \"Bounded "
                         "memory\"). The default for --bench-matrix full")
    group.addoption("--bench-no-isolate", action="store_false", dest="bench_isolate",
                    help="run every case in this one process, also on the full matrix")
    group.addoption("--bench-max-contention", type=_fraction, default=0.10, metavar="SHARE",
                    help="mark a row 'contended' when other processes took more than this "
                         "share of the usable cores during a timed round, e.g. 10%% or 0.1 "
                         "(default: 10%%); the report marks such rows and the gate leaves "
                         "them out")
    group.addoption("--bench-quiet-wait", type=_seconds, default=60.0, metavar="SECONDS",
                    help="before timing, wait up to this long for other processes to go "
                         "quiet (default: 60; 0 = do not wait)")
    group.addoption("--bench-lock-timeout", type=_seconds, default=600.0, metavar="SECONDS",
                    help="wait up to this long for another bench session on this machine "
                         "to finish, then refuse (default: 600)")
    group.addoption("--bench-round-time", type=_positive_seconds, default=None,
                    metavar="SECONDS",
                    help="a timed round lasts at least this long: train cases choose steps a "
                         "round (an epoch stays an epoch while it takes at most 4 of these), "
                         "inference cases passes a round (default: 0.5; 0.05 for the tiny "
                         "matrix, which tests the harness)")
    group.addoption("--bench-precision-target", type=_share, default=0.02, metavar="SHARE",
                    help="a case adds timed rounds until the 99%% confidence interval of "
                         "its figure (the geometric mean of its round times, t-interval on "
                         "their logs) is within this share of it, e.g. 2%% or 0.02 "
                         "(default: 2%%); or until its share of --bench-budget is spent, or "
                         "--bench-max-rounds. The row says which (stop_reason)")
    group.addoption("--bench-min-rounds", type=_positive_int, default=3, metavar="N",
                    help="timed rounds every case runs at the least (default: 3)")
    group.addoption("--bench-max-rounds", type=_positive_int, default=None, metavar="N",
                    help="timed rounds a case runs at the most (default: 20; 10 for the "
                         "quick matrix; latency cases count single calls: 300 at the least, "
                         "100x this at the most)")
    group.addoption("--bench-budget", type=_duration, default=None, metavar="DURATION",
                    help="fit the run into this much wall time, e.g. 45m, 1.5h, 600s: the "
                         "plan leaves out up front what does not fit even at the minimum "
                         "rounds (known-slow paths, time-to-accuracy, the far ends of batch "
                         "sweeps first, the most expensive first), each case gets a share "
                         "of what is left, and a case that would start past the budget is "
                         "left out; the report lists them under 'Not run'. Default: 2.5m "
                         "for the quick matrix, else none")
    group.addoption("--bench-case-time", type=_positive_seconds, default=None,
                    metavar="SECONDS",
                    help="a case adds no timed round past this much of its own time, once "
                         "its minimum rounds are done (stop_reason 'budget'), as asv's "
                         "timeout bounds a benchmark (default: 60; 12 for the quick matrix, "
                         "a first look in about 3 minutes on 2 cores)")
    group.addoption("--bench-plan", action="store_true",
                    help="print the plan (the cases by suite, the estimated time, what a "
                         "--bench-budget leaves out) and run nothing")
    group.addoption("--bench-allow-concurrent", action="store_true",
                    help="run even while another bench session holds this machine's lock; "
                         "the rows are marked 'concurrent' (their times are not the "
                         "machine's own)")
    progress.add_options(group)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _duration(text: str) -> float:
    from bench.harness.plan import parse_duration

    return parse_duration(text)


def _share(text: str) -> float:
    value = _fraction(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _fraction(text: str) -> float:
    raw = text.strip()
    value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


def pytest_cmdline_main(config):
    """``--bench-repeat N``: run the whole session N times, each in its own process.

    The run (one process) is the unit of evidence: runs of unchanged code differ far more
    than the rounds inside one run. Each repeat is a plain pytest process with the same
    arguments, writing its own result file; the runs share a ``run_group`` id. A
    ``--bench-budget`` is for all the runs together: each gets an equal share of what is
    left when it starts.
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


def _timing(config) -> bool:
    """Whether this session times anything (not collect-only, not benchmarks disabled)."""
    option = config.option
    return not (option.collectonly or getattr(option, "benchmark_disable", False)
                or getattr(option, "benchmark_skip", False)
                or getattr(option, "bench_plan", False))


def pytest_configure(config):
    state = config._fashion_bench = BenchState()
    if not hasattr(config.option, "bench_matrix"):
        return
    config.pluginmanager.register(progress.ProgressPlugin(config, state), progress.PLUGIN_NAME)
    from fashion_core.backends import BackendError

    try:
        fashion_core.BACKEND_CHOICE.check()
    except BackendError as error:
        raise pytest.UsageError(str(error)) from None
    if fashion_core.BACKEND_CHOICE.automatic:
        state.notes.append(f"backend {fashion_core.BACKEND_CHOICE.describe()}")
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
    from fashion_core.backends.base import calibration_seconds

    try:
        calibration_seconds()  # a bad value is a usage error now, not a failed calibration
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    if BACKEND == "tensorflow":
        # Scaling cases on a CPU-only machine need logical CPU devices, which TensorFlow
        # accepts only before it starts: set up as many as the matrix's largest case uses.
        cases = matrix.build_matrix(config.option.bench_matrix, ["cpu"], BACKEND)
        most = max((c.replicas or 1 for c in cases if c.suite == "scaling"), default=1)
        if most > 1 and tf_config() is None:
            # Also on a GPU host: the cpu-...-rN cases run on logical CPU devices there too.
            from fashion_core.distributed import ensure_logical_cpus

            ensure_logical_cpus(most)
    _check_devices(config, state)
    if not _timing(config):
        return
    if os.environ.get(WORKER_JOURNAL_ENV):  # a --bench-isolate worker: the parent holds
        state.journal = Journal.attach(Path(os.environ[WORKER_JOURNAL_ENV]))  # the lock
        state.concurrent = os.environ.get(CONCURRENT_ENV) == "1"
        return
    saving = not config.getoption("--bench-no-save")
    if saving:
        root = results_root(config, state)
        check_writable(root)
        for path in recover_orphans([root], log=state.notes.append):
            print(f"fashion-bench: published {path} from the journal of a run that died",
                  flush=True)
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
    wait = config.getoption("--bench-quiet-wait")
    if wait > 0:
        seen = wait_for_quiet(state.max_contention, wait,
                              say=lambda text: print(text, flush=True))
        if seen > state.max_contention:
            state.notes.append(f"the machine was busy when timing began (other processes "
                               f"used {seen:.0%} of the usable cores); contended rows are "
                               f"marked")
    if saving:
        open_journal(config, state)


def _check_devices(config, state: BenchState) -> None:
    """A device asked for by name must be there: one line, before any case runs.

    ``auto`` means the first GPU, else the CPU. The resolved names are kept for
    :func:`pytest_generate_tests`.
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


def pytest_runtestloop(session):
    """``--bench-isolate``: each group of cases runs in a worker process of its own.

    The workers append their cases to this session's journal; this process writes the
    result file from it at the end. A worker that dies takes only its own group's
    unfinished cases with it: they are recorded as failed, and the next group runs.
    """
    config = session.config
    state = state_of(config)
    if getattr(config.option, "bench_plan", False):
        return True  # --bench-plan: the plan is printed; nothing runs
    if (not getattr(config.option, "bench_isolate", False) or not _timing(config)
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


def pytest_collection_modifyitems(session, config, items):
    """Make the run's plan: estimate every case, fit the budget, leave out what does not
    fit (skipped, with the reason, and listed in the result file)."""
    state = state_of(config)
    if not hasattr(config.option, "bench_matrix") or not (
            _timing(config) or config.getoption("--bench-plan")):
        return
    from bench.harness import plan as planner
    from bench.store.machine import machine_id

    by_case: dict[matrix.Case, list] = {}
    for item in items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        if case is not None and not item.get_closest_marker("skip"):
            by_case.setdefault(case, []).append(item)
    if not by_case:
        return
    peaks = {device: state.gflops(device) or 100.0
             for device in dict.fromkeys(c.device for c in by_case)}
    folder = results_root(config, state) / machine_id(state.backend.list_devices())
    history = planner.history_seconds(folder)
    options = dict(round_seconds=state.round_seconds, min_rounds=state.stopping.min_rounds,
                   max_rounds=state.stopping.max_rounds, case_time=state.case_time)
    estimates = [planner.estimate_case(c, peaks[c.device], history=history, **options)
                 for c in by_case]
    scale = planner.model_scale(estimates, history, peaks, options)
    # The session's own time: what it took to get here (framework start, calibration),
    # about as much again at the end (the second calibration, the result file).
    overhead = 2 * (time.monotonic() - state.started)
    if getattr(config.option, "bench_isolate", False):  # each worker starts and ends alike
        overhead *= 1 + len({group_of(case) for case in by_case})
    plan = planner.make_plan(estimates, config.getoption("--bench-budget"), scale, overhead)
    for case, reason in plan.left_out:
        for item in by_case[case]:
            item.add_marker(pytest.mark.skip(reason=f"left out: {reason}"))
        state.leave_out(case, reason)
    state.plan = plan
    state.budget = planner.Budget(plan, started=state.started)


def pytest_collection_finish(session):
    """Print the plan before the first case."""
    state = state_of(session.config)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if state.plan is None or reporter is None:
        return
    reporter.write_line("fashion-bench: the plan")
    for line in state.plan.render():
        reporter.write_line(line)
    if getattr(session.config.option, "bench_isolate", False) and not os.environ.get(
            WORKER_JOURNAL_ENV):
        groups = len({group_of(e.case) for e in state.plan.estimates})
        reporter.write_line(f"  isolated: {groups} group(s) (model/device/precision), each "
                            f"in a process of its own (--bench-no-isolate: all in this one)")


def pytest_generate_tests(metafunc):
    """Parametrize each suite's test with its cases; absent devices are skipped."""
    if "case" not in metafunc.fixturenames:
        return
    suite = metafunc.module.SUITE
    option = metafunc.config.getoption
    state = state_of(metafunc.config)
    present = state.device_names()
    if state.wanted_devices:
        devices = state.wanted_devices
    else:
        devices = list(dict.fromkeys(present + ["gpu:0"]))
    cases = matrix.filter_cases(
        matrix.build_matrix(option("--bench-matrix"), devices, BACKEND),
        models=matrix.parse_list(option("--bench-model")),
        batches=matrix.parse_list(option("--bench-batch"), int),
        precisions=matrix.parse_list(option("--bench-precision")))
    cases = [c for c in cases if c.suite == suite]
    if os.environ.get(GROUP_ENV):  # a --bench-isolate worker runs one group only
        cases = [c for c in cases if group_of(c) == os.environ[GROUP_ENV]]
    cluster = tf_config()
    if suite == "scaling" and cluster:  # this process is one worker of several
        workers = len(cluster.get("cluster", {}).get("worker", [])) or 1
        cases = [c for d in dict.fromkeys(c.device for c in cases)
                 for c in matrix.multiworker_cases(d, workers)]
    gpus = sum(1 for name in present if name.startswith("gpu"))
    params = []
    for case in cases:
        marks = []
        if case.device not in present:
            marks.append(pytest.mark.skip(
                reason=f"device {case.device} is not there (found: {', '.join(present)})"))
        elif (case.strategy == "mirrored" and case.device.startswith("gpu")
              and case.replicas > gpus):
            marks.append(pytest.mark.skip(
                reason=f"{case.replicas} replicas need {case.replicas} GPUs; found {gpus}"))
        elif suite == "compile" and not case.compiles:
            marks.append(pytest.mark.skip(
                reason=f"nothing to compile: {BACKEND} without XLA/torch.compile runs the "
                       f"step op by op"))
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


@pytest.fixture(scope="session")
def bench_state(request) -> BenchState:
    return state_of(request.config)


@pytest.fixture(scope="session")
def dataset(request):
    from fashion_core import data

    source = request.config.getoption("--bench-data")
    if source == "synthetic":
        return data.synthetic(train_size=2048, test_size=512, seed=0)
    return data.load(source)


@pytest.fixture(scope="session")
def trainer_for(dataset):  # a generator fixture: closes the trainers it kept at the end
    """Build (and compile) a Trainer for a case; the last few are kept for reuse."""
    from fashion_core.config import TrainConfig
    from fashion_core.train import make_trainer

    cache: collections.OrderedDict = collections.OrderedDict()

    def get(case: matrix.Case, batch_size: int | None = None, fresh: bool = False):
        config = TrainConfig(model=case.model, batch_size=batch_size or case.batch_size,
                             precision=case.policy, device=case.device, jit=case.xla)
        if fresh:
            return make_trainer(config, dataset)
        if config not in cache:
            while len(cache) >= 3:  # bound the memory held by idle trainers
                cache.popitem(last=False)[1].close()  # released now, not when gc runs
            cache[config] = make_trainer(config, dataset)
        cache.move_to_end(config)
        return cache[config]

    yield get
    for trainer in cache.values():
        trainer.close()


#: Epochs a model for inference/latency may train to reach its accuracy bar.
MAX_TRAINING_EPOCHS = 5


@pytest.fixture(scope="session")
def trained_for(trainer_for, dataset):
    """A trainer (shared with ``trainer_for``) whose model has trained until its test
    accuracy reaches the case's bar (:data:`bench.harness.cases.MIN_ACCURACY`), at least one
    epoch and at most :data:`MAX_TRAINING_EPOCHS`: inference is timed on a real model."""
    import numpy as np

    from fashion_core.train import run_epoch

    def get(case: matrix.Case):
        trainer = trainer_for(case, batch_size=min(128, len(dataset.x_train)))
        epochs = getattr(trainer, "bench_epochs_trained", 0)
        rng = np.random.default_rng(epochs)
        while epochs < MAX_TRAINING_EPOCHS and (
                epochs == 0 or trainer.evaluate() < matrix.MIN_ACCURACY[case.model]):
            run_epoch(trainer, epochs + 1, rng.permutation(trainer.n_train))
            epochs += 1
            trainer.bench_epochs_trained = epochs
        return trainer

    return get


def pytest_runtest_setup(item):
    """A case starts: its share of the budget (or it is left out, with the reason), its
    clock, and its host-memory peak counting this case only (measure.reset_peak_rss)."""
    if getattr(item, "callspec", None) and "case" in item.callspec.params:
        from bench.measure.rounds import reset_peak_rss

        state = state_of(item.config)
        case = item.callspec.params["case"]
        state.case_started = time.perf_counter()
        state.case_allowance = state.case_time
        if state.budget is not None and _timing(item.config):
            allowance, reason = state.budget.start(case)
            if reason:
                state.leave_out(case, reason)
                pytest.skip(f"left out: {reason}")
            if allowance is not None:
                state.case_allowance = min(allowance, state.case_allowance)
        state.rss_window = reset_peak_rss()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record a failed case with its reason; the rest of the matrix goes on."""
    outcome = yield
    report = outcome.get_result()
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


def pytest_benchmark_update_machine_info(config, machine_info):
    state = state_of(config)
    state.recalibrate()
    machine_info["fashion_bench"] = fashion_bench_info(state)


def pytest_sessionfinish(session, exitstatus):
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


def pytest_terminal_summary(terminalreporter, config):
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
    if state.plan is not None and _timing(config):
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
