"""Figures that hold up and nothing lost: contention, the journal, the lock, early checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.harness.cases import Case
from bench.measure.contention import (
    CpuSample,
    contention_between,
    usable_cpus,
    windowed_contention,
)
from bench.measure.rounds import check_predictions
from bench.store import journal
from bench.store.lock import LockBusy, MachineLock
from bench.store.results import RUN_ID
from tests.test_bench_harness import ROOT, _run_bench


def _sample(wall: float, busy: float, own: float) -> CpuSample:
    sample = CpuSample.__new__(CpuSample)
    sample.wall, sample.busy, sample.own, sample.joules = wall, busy, own, None
    return sample


# ----------------------------------------------------------------------------- contention

def test_contention_is_other_processes_share_of_the_usable_cores():
    first = _sample(0.0, 10.0, 5.0)
    # 1 s on 2 cores: 1.5 core-seconds busy, 0.5 of them ours -> others took 1.0 of 2.0.
    assert contention_between(first, _sample(1.0, 11.5, 5.5), 2) == pytest.approx(0.5)
    assert contention_between(first, _sample(1.0, 10.4, 5.5), 2) == 0.0  # never negative
    assert contention_between(first, _sample(1.0, 20.0, 5.0), 2) == 1.0  # never above 1


def test_short_rounds_are_pooled_into_windows_and_the_worst_window_counts():
    # 10 rounds of 0.1 s on 1 core; others fully busy in the last 4 rounds only.
    samples, busy = [_sample(0.0, 0.0, 0.0)], 0.0
    for i in range(1, 11):
        busy += 0.1 if i >= 7 else 0.0
        samples.append(_sample(i * 0.1, busy, 0.0))
    assert windowed_contention(samples, 1, min_seconds=0.5) == pytest.approx(0.8)
    assert windowed_contention(samples, 1, min_seconds=10) == pytest.approx(0.4)
    assert windowed_contention(samples[:1], 1) is None


def _busy_loops(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def test_busy_loops_beside_us_are_seen_as_contention():
    cpus = usable_cpus()
    hogs = _busy_loops(len(cpus))
    try:
        time.sleep(0.3)
        first = CpuSample(cpus)
        time.sleep(1.0)
        seen = contention_between(first, CpuSample(cpus), len(cpus))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert seen > 0.5, seen


# ------------------------------------------------------------------------- honest rows

def test_prediction_check_fails_on_a_broken_model():
    """A trained model passes; the same model with zeroed weights fails the check."""
    import keras

    from fashion_core import data
    from fashion_core.config import TrainConfig
    from fashion_core.train import make_trainer, run_epoch

    dataset = data.synthetic(train_size=1024, test_size=256, seed=1)
    config = TrainConfig(model="mlp", batch_size=64, device="cpu")
    untrained = make_trainer(config, dataset)
    with pytest.raises(AssertionError, match="below 0.8: the model timed is broken"):
        check_predictions(untrained.predict_all("test", 64), dataset.y_test, 0.80, "untrained")
    trainer = make_trainer(config, dataset)
    run_epoch(trainer, 1, np.random.default_rng(0).permutation(trainer.n_train))
    check_predictions(trainer.predict_all("test", 64), dataset.y_test, 0.80, "trained")
    if keras.config.backend() == "jax":
        return  # JAX's trainer holds its own copy of the weights (Keras's stateless API)
    for weights in trainer.model.weights:
        weights.assign(np.zeros(weights.shape, dtype=weights.dtype))
    with pytest.raises(AssertionError, match="below 0.8: the model timed is broken"):
        check_predictions(trainer.predict_all("test", 64), dataset.y_test, 0.80, "zeroed")
    with pytest.raises(AssertionError, match="shaped"):
        check_predictions(np.zeros(3), dataset.y_test, 0.80, "wrong shape")


def test_compile_rows_only_where_something_compiles():
    assert Case("compile", "mlp", "cpu", 128, xla=False).compiles  # tf.function graph
    assert not Case("compile", "mlp", "cpu", 128, xla=False, backend="jax").compiles
    assert not Case("compile", "mlp", "cpu", 128, xla=False, backend="torch").compiles
    assert Case("compile", "mlp", "cpu", 128, backend="torch").compiles
    assert Case("train", "mlp", "cpu", 128, "bf16").compute_dtype == "bfloat16"


# ----------------------------------------------------------------------------- journal

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _journal(folder: Path, pid: int, process_start: float | None, torn: bool = False) -> Path:
    folder.mkdir(parents=True)
    path = folder / f"{journal.PREFIX}20261127-000000-{pid}{journal.SUFFIX}"
    header = {"kind": "header", "pid": pid, "host": os.uname().nodename,
              "process_start": process_start, "datetime": "2026-11-27T00:00:00+00:00",
              "machine_info": {"fashion_bench": {"schema": 2, "machine_id": folder.name}},
              "commit_info": {"id": "abc"}}
    lines = [header,
             {"kind": "calibration", "device": "cpu", "dtype": "float32", "gflops": 400.0},
             {"kind": "benchmark", "entry": {"name": "test_a", "extra_info": {"case": "a"}}},
             {"kind": "failure", "entry": {"case": "b", "suite": "train", "error": "E"}}]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    path.write_text(text + ('{"kind": "benchmark", "ent' if torn else ""))
    return path


def test_a_dead_runs_journal_is_published_marked_incomplete(tmp_path):
    path = _journal(tmp_path / "machine-a", _dead_pid(), 1.0, torn=True)
    said = []
    [published] = journal.recover_orphans([tmp_path], log=said.append)
    assert published.parent == path.parent and RUN_ID.match(published.stem)
    document = json.loads(published.read_text())
    assert document["fashion_bench_status"] == "incomplete"
    assert [b["name"] for b in document["benchmarks"]] == ["test_a"]  # torn line ignored
    assert document["fashion_bench_failures"][0]["case"] == "b"
    info = document["machine_info"]["fashion_bench"]
    assert info["calibration_gflops"] == {"cpu": 400.0}
    assert not path.exists() and not list(tmp_path.rglob("*.jsonl"))
    assert "marked incomplete" in said[0]
    assert journal.recover_orphans([tmp_path]) == []  # published once


def test_a_live_runs_journal_is_left_alone(tmp_path):
    path = _journal(tmp_path / "machine-a", os.getpid(), journal._process_start(os.getpid()))
    assert journal.recover_orphans([tmp_path]) == []
    assert path.exists()


def test_a_reused_pid_does_not_keep_a_journal_alive(tmp_path):
    _journal(tmp_path / "machine-a", os.getpid(), 12345.0)  # our pid, another start time
    assert len(journal.recover_orphans([tmp_path])) == 1


def test_a_zombie_writer_counts_as_dead(tmp_path):
    """A killed run whose parent has not reaped it yet: its journal is published at once."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = journal.psutil.Process(child.pid).create_time()
    try:
        deadline = time.monotonic() + 30
        while journal.psutil.Process(child.pid).status() != journal.psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child never ended"
            time.sleep(0.05)
        _journal(tmp_path / "machine-a", child.pid, started)
        assert len(journal.recover_orphans([tmp_path])) == 1
    finally:
        child.wait()


# -------------------------------------------------------------------------------- lock

def test_the_machine_lock_admits_one_session(tmp_path):
    first, second = MachineLock(tmp_path / "lock"), MachineLock(tmp_path / "lock")
    first.acquire(timeout=0)
    try:
        with pytest.raises(LockBusy, match=f"pid {os.getpid()}.*--bench-allow-concurrent"):
            second.acquire(timeout=0.3, say=lambda _: None, poll=0.1)
    finally:
        first.release()
    second.acquire(timeout=0)
    second.release()


# ----------------------------------------------------- whole sessions, in a subprocess

TRAIN_SUITE = """\
SUITE = 'train'
def test_step(benchmark, case, bench_state):
    from bench.measure.rounds import record, timed_rounds
    timed_rounds(benchmark, bench_state, case.device, lambda: sum(range(1000)),
                 rounds=3, warmup_rounds=1)
    record(benchmark, case, state=bench_state)
"""
SUITE_THAT_DIES = """\
import os, signal
SUITE = 'inference'
def test_dies(benchmark, case):
    os.kill(os.getpid(), signal.SIGKILL)  # dies as an out-of-memory kill would
"""


def _suite(tmp_path: Path, **modules: str) -> Path:
    """A folder of bench suites using the harness's conftest: {module name: source}."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text((ROOT / "bench" / "conftest.py").read_text())
    for name, source in modules.items():
        (suite / f"{name}.py").write_text(source)
    return suite


@pytest.mark.tensorflow_only  # expects TensorFlow's case ids (no suffix)
def test_a_killed_run_keeps_every_finished_case(tmp_path):
    """kill -9 after the first case: the next report finds it in a file marked incomplete."""
    suite = _suite(tmp_path, test_a_train=TRAIN_SUITE, test_b_dies=SUITE_THAT_DIES)
    results = tmp_path / "results"
    proc = _run_bench([str(suite), "--benchmark-only", "--bench-matrix", "tiny",
                       "--bench-device", "cpu", "--bench-results", str(results)], tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not list(results.rglob("*.json"))  # no result file: the process died
    [left] = list(results.rglob(".journal-*.jsonl"))
    report = subprocess.run([sys.executable, "-m", "bench.report", str(results), "--out",
                             str(tmp_path / "report"), "--no-plots"], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    assert report.returncode == 0, report.stderr
    [published] = list(results.rglob("*.json"))
    assert published.parent == left.parent and not left.exists()
    document = json.loads(published.read_text())
    assert document["fashion_bench_status"] == "incomplete"
    assert [b["extra_info"]["case"] for b in document["benchmarks"]] == ["mlp-cpu-b64-fp32-xla"]
    assert "is incomplete" in report.stdout  # the report says so
    assert "mlp-cpu-b64-fp32-xla" in (tmp_path / "report" / "report.csv").read_text()


def test_an_unwritable_results_folder_stops_the_run_before_any_case(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    begin = time.monotonic()
    proc = _run_bench([str(ROOT / "bench"), "--benchmark-only", "--bench-matrix", "tiny",
                       "--bench-device", "cpu", "--bench-data", "synthetic",
                       "--bench-results", str(blocker / "results")], tmp_path)
    assert proc.returncode != 0
    assert "cannot write result files to" in proc.stderr and "--bench-results" in proc.stderr
    assert "passed" not in proc.stdout and time.monotonic() - begin < 120


def test_an_absent_device_is_an_error_naming_the_devices_found(tmp_path):
    proc = _run_bench([str(ROOT / "bench"), "--benchmark-only", "--bench-matrix", "tiny",
                       "--bench-device", "gpu:7", "--bench-data", "synthetic",
                       "--bench-results", str(tmp_path / "r")], tmp_path)
    assert proc.returncode != 0 and "passed" not in proc.stdout
    assert "device 'gpu:7' is not there" in proc.stderr and "devices found: cpu" in proc.stderr


def _locked_session_args(tmp_path: Path) -> list[str]:
    return [str(ROOT / "bench"), "--benchmark-only", "--bench-matrix", "tiny",
            "--bench-device", "cpu", "--bench-data", "synthetic",
            "--bench-results", str(tmp_path / "r"), "--bench-lock-timeout", "1"]


def test_a_second_session_waits_for_the_lock_then_refuses(tmp_path):
    lock = MachineLock(tmp_path / "bench.store.lock")
    lock.acquire(timeout=0)
    try:
        proc = _run_bench(_locked_session_args(tmp_path), tmp_path)
        assert proc.returncode != 0 and "passed" not in proc.stdout
        assert "another bench session is still timing" in proc.stderr
    finally:
        lock.release()
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))


@pytest.mark.slow  # a whole session beside a held lock
def test_allow_concurrent_runs_beside_a_held_lock_and_marks_the_rows(tmp_path):
    lock = MachineLock(tmp_path / "bench.store.lock")
    lock.acquire(timeout=0)
    try:
        args = _locked_session_args(tmp_path)
        proc = _run_bench(args + ["--bench-allow-concurrent", "-k", "train"], tmp_path)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    finally:
        lock.release()
    [result] = list((tmp_path / "r").rglob("*.json"))
    rows = json.loads(result.read_text())["benchmarks"]
    assert rows and all(row["extra_info"]["concurrent"] for row in rows)


@pytest.mark.slow  # three sessions (the parent and two runs)
def test_repeat_makes_one_process_and_file_per_run_in_one_group(tmp_path):
    results = tmp_path / "r"
    proc = _run_bench([str(ROOT / "bench"), "--benchmark-only", "--bench-matrix", "tiny",
                       "--bench-device", "cpu", "--bench-data", "synthetic", "-k", "train",
                       "--bench-results", str(results), "--bench-repeat", "2"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "run 1 of 2" in proc.stdout and "run 2 of 2" in proc.stdout
    files = sorted(results.rglob("*.json"))
    infos = [json.loads(f.read_text())["machine_info"]["fashion_bench"] for f in files]
    assert len(files) == 2 and [i["repeat"] for i in infos] == [[1, 2], [2, 2]]
    assert infos[0]["run_group"] and infos[0]["run_group"] == infos[1]["run_group"]


ISOLATED_SUITE = """\
import os, signal
SUITE = 'train'
def test_step(benchmark, case, bench_state):
    from bench.measure.rounds import record, timed_rounds
    if case.precision == 'bf16':
        os.kill(os.getpid(), signal.SIGKILL)  # this group's worker dies
    timed_rounds(benchmark, bench_state, case.device, lambda: sum(range(1000)),
                 rounds=2, warmup_rounds=1)
    record(benchmark, case, state=bench_state, worker=os.getpid())
"""


@pytest.mark.tensorflow_only  # expects TensorFlow's case ids (no suffix)
@pytest.mark.slow  # four sessions (the parent and a worker per group)
def test_isolated_groups_run_in_workers_and_a_dying_worker_takes_only_its_group(tmp_path):
    suite = _suite(tmp_path, test_isolated=ISOLATED_SUITE)
    results = tmp_path / "results"
    proc = _run_bench([str(suite), "--benchmark-only", "--bench-matrix", "quick",
                       "--bench-device", "cpu", "--bench-model", "mlp", "--bench-batch", "128",
                       "--bench-results", str(results), "--bench-isolate"], tmp_path)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # a group failed
    [result] = list(results.rglob("*.json"))
    document = json.loads(result.read_text())
    rows = {row["extra_info"]["case"]: row["extra_info"] for row in document["benchmarks"]}
    assert set(rows) == {"mlp-cpu-b128-fp32-xla", "mlp-cpu-b128-fp32-noxla",
                         "mlp-cpu-b128-fp16-xla"}
    # One worker a group: the two fp32 cases shared one, fp16 had its own.
    assert rows["mlp-cpu-b128-fp32-xla"]["worker"] == rows["mlp-cpu-b128-fp32-noxla"]["worker"]
    assert rows["mlp-cpu-b128-fp16-xla"]["worker"] != rows["mlp-cpu-b128-fp32-xla"]["worker"]
    [failure] = document["fashion_bench_failures"]
    assert "group mlp/cpu/bf16" in failure["error"] and document["fashion_bench_status"] == \
        "complete"
    assert not list(results.rglob(".journal-*"))
    # The parent says where the run is at each group; each worker counts its cases over the
    # whole run (bench.harness.progress); the closing table holds the workers' rows.
    assert "group 3 of 3: mlp/cpu/fp16 (worker process); case 4 of 4, run " in proc.stdout
    assert "fashion-bench [4/4] train mlp-cpu-b128-fp16-xla: " in proc.stdout
    assert "train: median per epoch\nmlp-cpu-b128-fp32-xla " in proc.stdout
