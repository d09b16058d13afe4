"""The benchmark harness's pytest plumbing: options, the matrix, fixtures, result files.

Run ``pytest bench --benchmark-only``; ``pytest bench --help`` lists the ``--bench-*``
options under "fashion-bench".
"""

from __future__ import annotations

import collections
import os
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from bench import cases as matrix
from bench import machine
from bench.results import save_run

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")


def pytest_addoption(parser):
    group = parser.getgroup("fashion-bench", "fashion-bench benchmark matrix")
    group.addoption("--bench-matrix", default="quick", choices=matrix.MATRICES,
                    help="quick (default: every axis, under 10 minutes on 2 CPU cores), "
                         "full (every combination; hours on a CPU), or tiny (2 cases, for "
                         "testing the harness)")
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
                         "for random data of the same shape (harness tests only)")


class BenchState:
    """Per-session state: failures to record, calibrations, trainers built."""

    def __init__(self) -> None:
        self.failures: list[dict] = []
        self.calibration: dict[str, float] = {}
        self.calibration_rounds: dict[str, list[float]] = {}
        self.saved: Path | None = None
        self._backend = None

    @property
    def backend(self):
        if self._backend is None:
            from fashion_core import backends

            self._backend = backends.current()
        return self._backend

    def device_names(self) -> list[str]:
        return [d.name for d in self.backend.list_devices()]

    def gflops(self, device: str) -> float:
        """The device's calibrated float32 matmul GFLOP/s, measured at its first use."""
        if device not in self.calibration:
            self.calibration[device] = round(self.backend.matmul_gflops(device), 2)
            self.calibration_rounds[device] = [self.calibration[device]]
        return self.calibration[device]

    def recalibrate(self) -> None:
        """Measure every calibrated device once more at the end of the session.

        A machine busy with other work at either moment reads low, so the higher of
        the two is the session's figure; both are kept (``calibration_rounds``) so a
        reader can see how far apart they were. Call :meth:`rescale_peak_fractions`
        afterwards so every row divides by the final figure.
        """
        for device in list(self.calibration):
            if len(self.calibration_rounds[device]) == 1:
                again = round(self.backend.matmul_gflops(device), 2)
                self.calibration_rounds[device].append(again)
                self.calibration[device] = max(self.calibration_rounds[device])

    def rescale_peak_fractions(self, benchmarks) -> None:
        """Recompute each row's ``peak_fraction`` against the final calibration."""
        for bench in benchmarks:
            info = bench.extra_info
            device = info.get("device")
            if info.get("gflops") is not None and device in self.calibration:
                info["peak_fraction"] = info["gflops"] / self.calibration[device]


def _tf_config() -> dict | None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    import json

    try:
        return json.loads(text)
    except ValueError as e:
        raise pytest.UsageError(f"TF_CONFIG is not valid JSON: {e}") from None


def pytest_configure(config):
    config._fashion_bench = BenchState()
    if BACKEND != "tensorflow" or not hasattr(config.option, "bench_matrix"):
        return
    # Scaling cases on a CPU-only machine need logical CPU devices, which TensorFlow
    # accepts only before it starts: set up as many as the matrix's largest case uses.
    cases = matrix.build_matrix(config.option.bench_matrix, ["cpu"], BACKEND)
    most = max((c.replicas or 1 for c in cases if c.suite == "scaling"), default=1)
    if most > 1 and _tf_config() is None:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            from fashion_core.distributed import ensure_logical_cpus

            ensure_logical_cpus(most)


def _state(config) -> BenchState:
    return config._fashion_bench


def pytest_generate_tests(metafunc):
    """Parametrize each suite's test with its cases; absent devices are skipped."""
    if "case" not in metafunc.fixturenames:
        return
    suite = metafunc.module.SUITE
    option = metafunc.config.getoption
    state = _state(metafunc.config)
    present = state.device_names()
    wanted = matrix.parse_list(option("--bench-device"))
    if wanted:
        from fashion_core.backends import parse_device

        devices = [parse_device(d) for d in wanted]
    else:
        devices = list(dict.fromkeys(present + ["gpu:0"]))
    cases = matrix.filter_cases(
        matrix.build_matrix(option("--bench-matrix"), devices, BACKEND),
        models=matrix.parse_list(option("--bench-model")),
        batches=matrix.parse_list(option("--bench-batch"), int),
        precisions=matrix.parse_list(option("--bench-precision")))
    cases = [c for c in cases if c.suite == suite]
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
def trainer_for(dataset):
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
                cache.popitem(last=False)
            cache[config] = make_trainer(config, dataset)
        cache.move_to_end(config)
        return cache[config]

    return get


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record a failed case with its reason; the rest of the matrix goes on."""
    outcome = yield
    report = outcome.get_result()
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    if case is None or not report.failed:
        return
    error = call.excinfo.value if call.excinfo else None
    first_line = str(error).strip().splitlines()[0] if error and str(error).strip() else ""
    reason = f"{type(error).__name__}: {first_line}" if error else "failed"
    _state(item.config).failures.append({
        "case": case.id, "suite": case.suite, "name": item.name, "fullname": item.nodeid,
        "phase": report.when, "error": reason[:500],
        "trace": "".join(traceback.format_exception_only(type(error), error))[-2000:]
        if error else ""})


def pytest_benchmark_update_machine_info(config, machine_info):
    state = _state(config)
    state.gflops("cpu")  # always calibrate the CPU, so every file has a reference
    state.recalibrate()
    info = machine.capture(state.backend, state.calibration)
    info["calibration_rounds"] = {d: list(v) for d, v in state.calibration_rounds.items()}
    machine_info["fashion_bench"] = info


def pytest_sessionfinish(session, exitstatus):
    """Write this run's result file (benchmarks that passed, plus recorded failures)."""
    config = session.config
    state = _state(config)
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or bs.disabled or config.getoption("--bench-no-save"):
        return
    cluster = _tf_config()
    if cluster and cluster.get("task", {}).get("index", 0) != 0:
        return  # in a multi-worker run only the chief (worker 0) writes the result file
    failed = {f["fullname"] for f in state.failures}
    benchmarks = [b for b in bs.benchmarks if b and b.fullname not in failed]
    if not benchmarks and not state.failures:
        return
    machine_info = bs.get_machine_info()  # recalibrates: see BenchState.recalibrate
    state.rescale_peak_fractions(benchmarks)
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    output = config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=benchmarks, include_data=True,
        machine_info=machine_info, commit_info=commit_info)
    output["fashion_bench_failures"] = state.failures
    root = Path(config.getoption("--bench-results"))
    if not root.is_absolute():
        root = Path(config.invocation_params.dir) / root
    state.saved = save_run(output, root, machine_info["fashion_bench"]["machine_id"])


def pytest_terminal_summary(terminalreporter, config):
    state = _state(config)
    if state.failures:
        terminalreporter.write_line(f"fashion-bench: {len(state.failures)} case(s) failed:")
        for failure in state.failures:
            terminalreporter.write_line(f"  {failure['suite']} {failure['case']}: "
                                        f"{failure['error']}")
    if state.saved:
        terminalreporter.write_line(f"fashion-bench: results saved to {state.saved}")
