"""The benchmark harness's pytest plumbing: options, the matrix, fixtures, result files.

Run ``pytest bench --benchmark-only``; ``pytest bench --help`` lists the ``--bench-*``
options under "fashion-bench".
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

import fashion_core  # picks the Keras backend when KERAS_BACKEND is unset
from bench import cases as matrix
from bench import machine
from bench.journal import STATUS_COMPLETE, STATUS_INTERRUPTED, Journal, recover_orphans
from bench.lock import MachineLock
from bench.measure import wait_for_quiet
from bench.results import save_run
from bench.turns import Turns

BACKEND = fashion_core.BACKEND_CHOICE.name or "tensorflow"
# Set by ``--bench-repeat N`` for each of the N runs it starts (see pytest_cmdline_main).
RUN_GROUP_ENV = "FASHION_BENCH_RUN_GROUP"
REPEAT_ENV = "FASHION_BENCH_REPEAT"
# Set by ``--bench-isolate`` for each worker process: the group of cases it runs
# (model/device/precision) and the journal of the session it works for.
GROUP_ENV = "FASHION_BENCH_GROUP"
WORKER_JOURNAL_ENV = "FASHION_BENCH_WORKER_JOURNAL"
CONCURRENT_ENV = "FASHION_BENCH_CONCURRENT"


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
    group.addoption("--bench-isolate", action="store_true",
                    help="run each group of cases (one model, device and precision) in a "
                         "worker process of its own, so no case inherits another's memory "
                         "or crashes the rest; results still land in one result file. Costs "
                         "a framework start and a calibration per group (README, \"Bounded "
                         "memory\")")
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
    group.addoption("--bench-allow-concurrent", action="store_true",
                    help="run even while another bench session holds this machine's lock; "
                         "the rows are marked 'concurrent' (their times are not the "
                         "machine's own)")


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


def _fraction(text: str) -> float:
    raw = text.strip()
    value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


class BenchState:
    """Per-session state: failures, calibrations, the journal, the machine lock."""

    def __init__(self) -> None:
        self.failures: list[dict] = []
        # calibration[device][dtype] = GFLOP/s (None: that dtype could not be timed there)
        self.calibration: dict[str, dict[str, float | None]] = {}
        self.calibration_rounds: dict[str, dict[str, list[float]]] = {}
        self.saved: Path | None = None
        self.max_contention = 0.10
        self.concurrent = False  # another bench session held the lock when this one began
        self.journal: Journal | None = None
        self.journaled: set[int] = set()  # ids of benchmark entries already journaled
        self.lock: MachineLock | None = None
        self.turns: Turns | None = None  # an interleaved A/B session (bench.ab, bench.turns)
        self.data_source = "fashion-mnist"
        self.wanted_devices: list[str] | None = None  # --bench-device, resolved
        self.worker_failures: list[dict] = []  # --bench-isolate workers that died
        self.isolating = False  # this process runs its cases in --bench-isolate workers
        self.rss_window: tuple[int, str] | None = None  # (RSS at case start, peak scope)
        self.notes: list[str] = []  # said in the terminal summary
        self._backend = None
        self._meters: dict = {}

    @property
    def backend(self):
        if self._backend is None:
            from fashion_core import backends

            self._backend = backends.current()
        return self._backend

    def device_names(self) -> list[str]:
        return [d.name for d in self.backend.list_devices()]

    def _measure(self, device: str, dtype: str) -> float | None:
        try:
            rate = self.backend.matmul_gflops(device, dtype=dtype)
        except Exception as error:  # a dtype the device or framework cannot multiply in
            self.notes.append(f"calibration of {device} in {dtype} failed: "
                              f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
            return None
        return round(rate, 2) if rate else None

    def gflops(self, device: str, dtype: str = "float32") -> float | None:
        """The device's calibrated matmul GFLOP/s in ``dtype``, measured at its first use.

        The denominator of every "share of peak" of a row computing in that dtype.
        """
        rates = self.calibration.setdefault(device, {})
        if dtype not in rates:
            rates[dtype] = self._measure(device, dtype)
            self.calibration_rounds.setdefault(device, {})[dtype] = (
                [rates[dtype]] if rates[dtype] else [])
            if self.journal and rates[dtype]:
                self.journal.add_calibration(device, dtype, rates[dtype])
        return rates[dtype]

    def recalibrate(self) -> None:
        """Measure every calibrated (device, dtype) once more at the end of the session.

        A machine busy with other work at either moment reads low, so the higher of
        the two is the session's figure; both are kept (``calibration_rounds``) so a
        reader can see how far apart they were. Call :meth:`rescale_peak_fractions`
        afterwards so every row divides by the final figure.
        """
        for device, rates in self.calibration.items():
            for dtype, rate in rates.items():
                rounds = self.calibration_rounds[device][dtype]
                if rate and len(rounds) == 1:
                    again = self._measure(device, dtype)
                    if again:
                        rounds.append(again)
                        rates[dtype] = max(rounds)

    def rescale_peak_fractions(self, infos) -> None:
        """Recompute each row's share of peak (``extra_info`` dicts) against the final
        calibration of its dtype."""
        for info in infos:
            peak = self.calibration.get(info.get("device"), {}).get(info.get("compute_dtype"))
            if info.get("gflops") is not None and peak:
                info["peak_gflops"] = peak
                info["peak_fraction"] = info["gflops"] / peak

    def calibration_by_dtype(self) -> dict[str, dict[str, float]]:
        return {device: {dtype: rate for dtype, rate in rates.items() if rate}
                for device, rates in self.calibration.items()}

    def energy_meter(self, device: str):
        """The energy meter of ``device`` (one per device a session)."""
        if device not in self._meters:
            from bench.energy import EnergyMeter

            self._meters[device] = EnergyMeter.for_device(device)
        return self._meters[device]


def _tf_config() -> dict | None:
    from fashion_core.config import ConfigError, tf_config

    try:
        return tf_config()
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_cmdline_main(config):
    """``--bench-repeat N``: run the whole session N times, each in its own process.

    The run (one process) is the unit of evidence: runs of unchanged code differ far more
    than the rounds inside one run. Each repeat is a plain pytest process with the same
    arguments, writing its own result file; the runs share a ``run_group`` id.
    """
    repeat = getattr(config.option, "bench_repeat", 1)
    if repeat <= 1 or os.environ.get(REPEAT_ENV):
        return None
    args = _without_repeat(list(config.invocation_params.args))
    group = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    worst = 0
    for index in range(1, repeat + 1):
        print(f"fashion-bench: run {index} of {repeat} (run group {group})", flush=True)
        env = dict(os.environ, **{RUN_GROUP_ENV: group, REPEAT_ENV: f"{index}/{repeat}"})
        code = subprocess.call([sys.executable, "-m", "pytest", *args],
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
                or getattr(option, "benchmark_skip", False))


def _results_root(config, state: BenchState) -> Path:
    root = Path(config.getoption("--bench-results"))
    if not root.is_absolute():
        root = Path(config.invocation_params.dir) / root
    return root / "synthetic" if state.data_source == "synthetic" else root


def _check_writable(folder: Path) -> None:
    """Create ``folder`` and write a file in it, or raise UsageError saying why."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise pytest.UsageError(
            f"cannot write result files to {folder}: {error.strerror or error}; choose "
            f"another folder with --bench-results DIR, or --bench-no-save") from None


def pytest_configure(config):
    state = config._fashion_bench = BenchState()
    if not hasattr(config.option, "bench_matrix"):
        return
    from fashion_core.backends import BackendError

    try:
        fashion_core.BACKEND_CHOICE.check()
    except BackendError as error:
        raise pytest.UsageError(str(error)) from None
    if fashion_core.BACKEND_CHOICE.automatic:
        state.notes.append(f"backend {fashion_core.BACKEND_CHOICE.describe()}")
    state.max_contention = config.getoption("--bench-max-contention")
    if config.getoption("--bench-data") == "synthetic":
        state.data_source = "synthetic"
    if BACKEND == "tensorflow":
        # Scaling cases on a CPU-only machine need logical CPU devices, which TensorFlow
        # accepts only before it starts: set up as many as the matrix's largest case uses.
        cases = matrix.build_matrix(config.option.bench_matrix, ["cpu"], BACKEND)
        most = max((c.replicas or 1 for c in cases if c.suite == "scaling"), default=1)
        if most > 1 and _tf_config() is None:
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
        root = _results_root(config, state)
        _check_writable(root)
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
        _take_machine_lock(config, state)
    wait = config.getoption("--bench-quiet-wait")
    if wait > 0:
        seen = wait_for_quiet(state.max_contention, wait,
                              say=lambda text: print(text, flush=True))
        if seen > state.max_contention:
            state.notes.append(f"the machine was busy when timing began (other processes "
                               f"used {seen:.0%} of the usable cores); contended rows are "
                               f"marked")
    if saving:
        _open_journal(config, state)


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


def _take_machine_lock(config, state: BenchState) -> None:
    from bench.lock import LockBusy

    lock = MachineLock()
    if config.getoption("--bench-allow-concurrent"):
        if lock.try_acquire():
            state.lock = lock
        else:
            state.concurrent = True
            state.notes.append(f"ran beside another bench session ({lock.holder()}): "
                               f"rows are marked 'concurrent'")
        return
    try:
        lock.acquire(config.getoption("--bench-lock-timeout"),
                     say=lambda text: print(text, flush=True))
    except LockBusy as error:
        raise pytest.UsageError(str(error)) from None
    state.lock = lock


def _fashion_bench_info(state: BenchState) -> dict:
    """The ``machine_info.fashion_bench`` block (also the journal's header)."""
    state.gflops("cpu")  # always calibrate the CPU, so every file has a reference
    info = machine.capture(state.backend, {d: r["float32"] for d, r in
                                           state.calibration_by_dtype().items()
                                           if "float32" in r})
    info["calibration_gflops_by_dtype"] = state.calibration_by_dtype()
    info["calibration_rounds"] = {d: {t: list(v) for t, v in rates.items()}
                                  for d, rates in state.calibration_rounds.items()}
    group = os.environ.get(RUN_GROUP_ENV)
    repeat = os.environ.get(REPEAT_ENV)
    info.update({"data": state.data_source, "run_group": group,
                 "repeat": [int(x) for x in repeat.split("/")] if repeat else None,
                 "max_contention": state.max_contention,
                 "concurrent": state.concurrent})
    return info


def _open_journal(config, state: BenchState) -> None:
    from datetime import datetime, timezone

    from pytest_benchmark import __version__

    info = _fashion_bench_info(state)
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    folder = _results_root(config, state) / info["machine_id"]
    state.journal = Journal(folder, {
        "machine_info": {"fashion_bench": info}, "commit_info": commit_info,
        "datetime": datetime.now(timezone.utc).isoformat(), "version": __version__})


def _state(config) -> BenchState:
    return config._fashion_bench


def _group(case: matrix.Case) -> str:
    """The isolation group of a case: its model, device and precision."""
    return f"{case.model}/{case.device}/{case.precision}"


def pytest_runtestloop(session):
    """``--bench-isolate``: each group of cases runs in a worker process of its own.

    The workers append their cases to this session's journal; this process writes the
    result file from it at the end. A worker that dies takes only its own group's
    unfinished cases with it: they are recorded as failed, and the next group runs.
    """
    config = session.config
    state = _state(config)
    if (not getattr(config.option, "bench_isolate", False) or not _timing(config)
            or os.environ.get(WORKER_JOURNAL_ENV) or session.config.option.collectonly):
        return None
    if state.journal is None:
        raise pytest.UsageError("--bench-isolate needs a result file: drop --bench-no-save")
    groups = list(dict.fromkeys(
        _group(item.callspec.params["case"]) for item in session.items
        if getattr(item, "callspec", None) and "case" in item.callspec.params
        and not item.get_closest_marker("skip")))
    state.isolating = True
    args = [a for a in config.invocation_params.args if a != "--bench-isolate"]
    for index, group in enumerate(groups, 1):
        print(f"\nfashion-bench: group {index} of {len(groups)}: {group} (worker process)",
              flush=True)
        env = dict(os.environ, **{GROUP_ENV: group, WORKER_JOURNAL_ENV: str(state.journal.path),
                                  CONCURRENT_ENV: "1" if state.concurrent else "0"})
        code = subprocess.call([sys.executable, "-m", "pytest", *args, "--bench-no-save",
                                "--bench-quiet-wait", "0"],
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
    worker_failures = len(_worker_results(state)["fashion_bench_failures"])
    session.testsfailed += worker_failures + len(state.worker_failures)
    return True


def pytest_generate_tests(metafunc):
    """Parametrize each suite's test with its cases; absent devices are skipped."""
    if "case" not in metafunc.fixturenames:
        return
    suite = metafunc.module.SUITE
    option = metafunc.config.getoption
    state = _state(metafunc.config)
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
        cases = [c for c in cases if _group(c) == os.environ[GROUP_ENV]]
    cluster = _tf_config()
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
    return _state(request.config)


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
    accuracy reaches the case's bar (:data:`bench.cases.MIN_ACCURACY`), at least one
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
    """Each case's host-memory peak counts that case only (see measure.reset_peak_rss)."""
    if getattr(item, "callspec", None) and "case" in item.callspec.params:
        from bench.measure import reset_peak_rss

        _state(item.config).rss_window = reset_peak_rss()


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
    state = _state(item.config)
    state.failures.append(failure)
    if state.journal:
        state.journal.add_failure(failure)


def _journal_finished(item) -> None:
    """Journal the case's benchmark as soon as the case is over (after its teardown)."""
    state = _state(item.config)
    bs = getattr(item.config, "_benchmarksession", None)
    if not (state.journal and bs) or item.nodeid in {f["fullname"] for f in state.failures}:
        return
    for bench in bs.benchmarks:
        if (bench and id(bench) not in state.journaled and bench.fullname == item.nodeid
                and not bench.has_error):
            state.journal.add_benchmark(bench.as_dict(include_data=True))
            state.journaled.add(id(bench))


def pytest_benchmark_update_machine_info(config, machine_info):
    state = _state(config)
    state.recalibrate()
    machine_info["fashion_bench"] = _fashion_bench_info(state)


def pytest_sessionfinish(session, exitstatus):
    """Write this run's result file (benchmarks that passed, plus recorded failures).

    The journal (every case as it finished) is deleted once the file holds it all; a run
    cut short by Ctrl-C is saved as ``interrupted``.
    """
    config = session.config
    state = _state(config)
    try:
        _save(config, state, exitstatus)
    finally:
        if state.journal:
            state.journal.close(delete=state.saved is not None)
        if state.lock:
            state.lock.release()
        # An A/B side (state.turns) hands over no more: its process's end is the signal
        # (bench.ab writes <side>.done once it has reaped it, and a waiting side also
        # sees the pid gone), so the framework's teardown at exit, seconds of CPU for
        # TensorFlow, never overlaps the other side's rounds.


def _save(config, state: BenchState, exitstatus) -> None:
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or bs.disabled or config.getoption("--bench-no-save"):
        return
    cluster = _tf_config()
    if cluster and cluster.get("task", {}).get("index", 0) != 0:
        return  # in a multi-worker run only the chief (worker 0) writes the result file
    failed = {f["fullname"] for f in state.failures}
    # A case cut short (Ctrl-C mid-case) has timings but no recorded row: not a result.
    benchmarks = [b for b in bs.benchmarks if b and b.fullname not in failed
                  and (not (b.params or {}).get("case") or b.extra_info.get("status") == "ok")]
    workers = _worker_results(state)
    failures = state.failures + workers["fashion_bench_failures"] + state.worker_failures
    if not benchmarks and not workers["benchmarks"] and not failures:
        return
    machine_info = bs.get_machine_info()  # recalibrates: see BenchState.recalibrate
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    output = config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=benchmarks, include_data=True,
        machine_info=machine_info, commit_info=commit_info)
    output["benchmarks"] += workers["benchmarks"]
    state.rescale_peak_fractions([b["extra_info"] for b in output["benchmarks"]])
    output["fashion_bench_failures"] = failures
    output["fashion_bench_status"] = (STATUS_INTERRUPTED
                                      if exitstatus == pytest.ExitCode.INTERRUPTED
                                      else STATUS_COMPLETE)
    state.saved = save_run(output, _results_root(config, state),
                           machine_info["fashion_bench"]["machine_id"])


def _worker_results(state: BenchState) -> dict:
    """What ``--bench-isolate`` workers appended to this session's journal.

    Under isolation this process runs no case itself, so every benchmark and failure in
    its journal is a worker's. The workers' calibrations join this session's (and are
    measured again at the end, as its own are).
    """
    from bench.journal import read_journal

    if not (state.isolating and state.journal and state.journal.path.exists()):
        return {"benchmarks": [], "fashion_bench_failures": []}
    document = read_journal(state.journal.path)
    for device, rates in document["machine_info"]["fashion_bench"].get(
            "calibration_gflops_by_dtype", {}).items():
        for dtype, rate in rates.items():
            known = state.calibration.setdefault(device, {})
            if not known.get(dtype):
                known[dtype] = rate
                state.calibration_rounds.setdefault(device, {})[dtype] = [rate]
    return document


def pytest_terminal_summary(terminalreporter, config):
    state = _state(config)
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
    if state.saved:
        terminalreporter.write_line(f"fashion-bench: results saved to {state.saved}")
    elif state.journal and state.journal.path.exists():
        terminalreporter.write_line(f"fashion-bench: no result file written; the finished "
                                    f"cases are in {state.journal.path}")
