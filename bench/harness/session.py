"""The bench session: what one ``pytest bench`` run holds from its start to its result file.

:class:`BenchState` keeps the calibrations, the journal, the machine lock, the plan and
budget (:mod:`bench.harness.plan`), the stopping rule (:mod:`bench.harness.stopping`) and
the failures;
the functions below take the lock, open the journal and write the result file. The
pytest hooks that drive them are in :mod:`bench.harness.plugin`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

import fashion_core  # picks the Keras backend when KERAS_BACKEND is unset
from bench.harness import cases as matrix
from bench.harness.stopping import StoppingRule
from bench.harness.turns import Turns
from bench.store import machine
from bench.store.journal import STATUS_COMPLETE, STATUS_INTERRUPTED, Journal
from bench.store.lock import MachineLock
from bench.store.results import save_run

BACKEND = fashion_core.BACKEND_CHOICE.name or "tensorflow"
# Set by ``--bench-repeat N`` for each of the N runs it starts (see pytest_cmdline_main).
RUN_GROUP_ENV = "FASHION_BENCH_RUN_GROUP"
REPEAT_ENV = "FASHION_BENCH_REPEAT"
# Set by ``--bench-isolate`` for each worker process: the group of cases it runs
# (model/device/precision) and the journal of the session it works for.
GROUP_ENV = "FASHION_BENCH_GROUP"
WORKER_JOURNAL_ENV = "FASHION_BENCH_WORKER_JOURNAL"
CONCURRENT_ENV = "FASHION_BENCH_CONCURRENT"


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
        self.turns: Turns | None = None  # an interleaved A/B session (bench.harness.turns)
        self.data_source = "fashion-mnist"
        self.wanted_devices: list[str] | None = None  # --bench-device, resolved
        self.worker_failures: list[dict] = []  # --bench-isolate workers that died
        self.isolating = False  # this process runs its cases in --bench-isolate workers
        self.rss_window: tuple[int, str] | None = None  # (RSS at case start, peak scope)
        self.notes: list[str] = []  # said in the terminal summary
        # What a run spends (bench.harness.plan, bench.harness.stopping): the rule every case
        # stops by, the round target, the plan and its budget, the cases left out.
        self.started = time.monotonic()  # the budget's clock starts with the session
        self.stopping = StoppingRule()
        self.round_seconds = 0.5
        self.case_time = 60.0  # --bench-case-time: the most time a case adds rounds in
        self.plan = None  # bench.harness.plan.Plan, made once the cases are collected
        self.budget = None  # bench.harness.plan.Budget
        self.not_run: list[dict] = []  # {case, suite, reason}
        # --bench-shard (bench.harness.shards): (I, N), this shard's cases, the run group.
        self.shard: tuple[int, int] | None = None
        self.shard_cases: set | None = None
        self.run_group: str | None = None
        self.plan_cases: list = []  # every case of the matrix, for --bench-plan --json
        self.case_started: float | None = None  # perf_counter() at the current case's start
        self.case_allowance: float | None = None  # its share of the budget, seconds
        self._canary = None
        self._backend = None
        self._meters: dict = {}

    def canary(self):
        """The session's canary (bench.measure.canary), made at its first use."""
        if self._canary is None:
            from bench.measure.canary import Canary

            self._canary = Canary()
        return self._canary

    def allowance(self) -> float | None:
        """The current case's share of the budget in seconds (None: no budget)."""
        return self.case_allowance

    def leave_out(self, case: matrix.Case, reason: str) -> None:
        """Record ``case`` as not run, with why (the result file and the report list it)."""
        entry = {"case": case.id, "suite": case.suite, "reason": reason}
        self.not_run.append(entry)
        if self.journal is not None:
            self.journal.add_not_run(entry)

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
            from bench.measure.energy import EnergyMeter

            self._meters[device] = EnergyMeter.for_device(device)
        return self._meters[device]


def tf_config() -> dict | None:
    from fashion_core.config import ConfigError
    from fashion_core.config import tf_config as read_tf_config

    try:
        return read_tf_config()
    except ConfigError as e:
        raise pytest.UsageError(str(e)) from None


def results_root(config, state: BenchState) -> Path:
    root = Path(config.getoption("--bench-results"))
    if not root.is_absolute():
        root = Path(config.invocation_params.dir) / root
    return root / "synthetic" if state.data_source == "synthetic" else root


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write a file in it, or raise UsageError saying why."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise pytest.UsageError(
            f"cannot write result files to {folder}: {error.strerror or error}; choose "
            f"another folder with --bench-results DIR, or --bench-no-save") from None


def take_machine_lock(config, state: BenchState) -> None:
    from bench.store.lock import LockBusy

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


def fashion_bench_info(state: BenchState) -> dict:
    """The ``machine_info.fashion_bench`` block (also the journal's header)."""
    state.gflops("cpu")  # always calibrate the CPU, so every file has a reference
    info = machine.capture(state.backend, {d: r["float32"] for d, r in
                                           state.calibration_by_dtype().items()
                                           if "float32" in r})
    info["calibration_gflops_by_dtype"] = state.calibration_by_dtype()
    info["calibration_rounds"] = {d: {t: list(v) for t, v in rates.items()}
                                  for d, rates in state.calibration_rounds.items()}
    group = state.run_group or os.environ.get(RUN_GROUP_ENV)
    repeat = os.environ.get(REPEAT_ENV)
    info.update({"data": state.data_source, "run_group": group,
                 "shard": list(state.shard) if state.shard else None,
                 "repeat": [int(x) for x in repeat.split("/")] if repeat else None,
                 "max_contention": state.max_contention,
                 "concurrent": state.concurrent, "plan": plan_summary(state)})
    return info


def plan_summary(state: BenchState) -> dict | None:
    """``machine_info.fashion_bench.plan``: the estimate beside the time the run took."""
    if state.plan is None:
        return None
    return {"cases": len(state.plan.estimates), "left_out": len(state.not_run),
            "estimate_seconds": round(state.plan.total, 1),
            "budget_seconds": state.plan.budget,
            "elapsed_seconds": round(time.monotonic() - state.started, 1),
            "precision_target": state.stopping.precision,
            "round_seconds": state.round_seconds,
            "max_rounds": state.stopping.max_rounds, "case_seconds_cap": state.case_time}


def open_journal(config, state: BenchState) -> None:
    from datetime import datetime, timezone

    from pytest_benchmark import __version__

    info = fashion_bench_info(state)
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    folder = results_root(config, state) / info["machine_id"]
    state.journal = Journal(folder, {
        "machine_info": {"fashion_bench": info}, "commit_info": commit_info,
        "datetime": datetime.now(timezone.utc).isoformat(), "version": __version__})


def state_of(config) -> BenchState:
    return config._fashion_bench


def group_of(case: matrix.Case) -> str:
    """The isolation group of a case: its model, device and precision."""
    return f"{case.model}/{case.device}/{case.precision}"


def save(config, state: BenchState, exitstatus) -> None:
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or bs.disabled or config.getoption("--bench-no-save"):
        return
    cluster = tf_config()
    if cluster and cluster.get("task", {}).get("index", 0) != 0:
        return  # in a multi-worker run only the chief (worker 0) writes the result file
    failed = {f["fullname"] for f in state.failures}
    # A case cut short (Ctrl-C mid-case) has timings but no recorded row: not a result.
    benchmarks = [b for b in bs.benchmarks if b and b.fullname not in failed
                  and (not (b.params or {}).get("case") or b.extra_info.get("status") == "ok")]
    workers = worker_results(state)
    failures = state.failures + workers["fashion_bench_failures"] + state.worker_failures
    ran = {(b.extra_info.get("suite"), b.extra_info.get("case")) for b in benchmarks} | {
        (b["extra_info"].get("suite"), b["extra_info"].get("case"))
        for b in workers["benchmarks"]}
    not_run = merge_not_run(state.not_run + workers.get("fashion_bench_not_run", []), ran)
    if not benchmarks and not workers["benchmarks"] and not failures and not not_run:
        return
    machine_info = bs.get_machine_info()  # recalibrates: see BenchState.recalibrate
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    output = config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=benchmarks, include_data=True,
        machine_info=machine_info, commit_info=commit_info)
    output["benchmarks"] += workers["benchmarks"]
    state.rescale_peak_fractions([b["extra_info"] for b in output["benchmarks"]])
    output["fashion_bench_failures"] = failures
    output["fashion_bench_not_run"] = not_run
    output["fashion_bench_status"] = (STATUS_INTERRUPTED
                                      if exitstatus == pytest.ExitCode.INTERRUPTED
                                      else STATUS_COMPLETE)
    state.saved = save_run(output, results_root(config, state),
                           machine_info["fashion_bench"]["machine_id"])


def merge_not_run(entries: list[dict], ran: set[tuple[str, str]]) -> list[dict]:
    """The cases left out, each once, the first reason given (the session's own plan, then
    its workers'), less any case that has a row after all.

    Under --bench-isolate the parent's own entries are also in the journal it reads back,
    and each worker re-plans its group under its share of the budget, naming again what
    the parent left out."""
    seen: set[tuple[str, str]] = set()
    merged = []
    for entry in entries:
        key = (entry.get("suite"), entry.get("case"))
        if key not in seen and key not in ran:
            seen.add(key)
            merged.append(entry)
    return merged


def worker_results(state: BenchState) -> dict:
    """What ``--bench-isolate`` workers appended to this session's journal.

    Under isolation this process runs no case itself, so every benchmark and failure in
    its journal is a worker's. The workers' calibrations join this session's (and are
    measured again at the end, as its own are).
    """
    from bench.store.journal import read_journal

    if not (state.isolating and state.journal and state.journal.path.exists()):
        return {"benchmarks": [], "fashion_bench_failures": [], "fashion_bench_not_run": []}
    document = read_journal(state.journal.path)
    for device, rates in document["machine_info"]["fashion_bench"].get(
            "calibration_gflops_by_dtype", {}).items():
        for dtype, rate in rates.items():
            known = state.calibration.setdefault(device, {})
            if not known.get(dtype):
                known[dtype] = rate
                state.calibration_rounds.setdefault(device, {})[dtype] = [rate]
    return document

