"""The benchmark harness itself: matrix, ids, machine id, result files, failure recording."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import cases as matrix
from bench.store import machine, schema
from bench.store.results import RUN_ID, save_run
from fashion_core.backends import DeviceInfo

ROOT = Path(__file__).resolve().parent.parent


def test_case_id_is_stable_and_readable():
    case = matrix.Case("train", "mlp", "cpu", 128)
    assert case.id == "mlp-cpu-b128-fp32-xla"
    assert matrix.Case("inference", "cnn", "gpu:1", 4096, "bf16", False).id == \
        "cnn-gpu1-b4096-bf16-noxla"
    assert matrix.Case("train", "mlp", "cpu", 128, backend="jax").id == "mlp-cpu-b128-fp32-xla-jax"
    assert case.policy == "float32" and matrix.Case("train", "mlp", "cpu", 1, "fp16").policy \
        == "mixed_float16"


def test_bad_case_values():
    with pytest.raises(ValueError, match="unknown suite"):
        matrix.Case("training", "mlp", "cpu", 128)
    with pytest.raises(ValueError, match="unknown precision"):
        matrix.Case("train", "mlp", "cpu", 128, "fp8")
    with pytest.raises(ValueError, match="unknown matrix 'huge'"):
        matrix.build_matrix("huge", ["cpu"])


def test_quick_matrix_touches_every_axis():
    cases = matrix.build_matrix("quick", ["cpu", "gpu:0"])
    assert {c.suite for c in cases} == set(matrix.SUITES)
    assert {c.model for c in cases} == {"mlp", "cnn"}
    assert {c.device for c in cases} == {"cpu", "gpu:0"}
    assert {c.precision for c in cases} == {"fp32", "fp16", "bf16"}
    assert {c.xla for c in cases} == {True, False}
    assert {1, 128, 1024, 4096} <= {c.batch_size for c in cases if c.suite == "inference"}
    # ids are unique within a suite: they key results.
    for suite in matrix.SUITES:
        ids = [c.id for c in cases if c.suite == suite]
        assert len(ids) == len(set(ids)), suite


def test_full_matrix_is_a_superset_of_quicks_configurations():
    quick = {(c.suite, c.id) for c in matrix.build_matrix("quick", ["cpu"])}
    full = {(c.suite, c.id) for c in matrix.build_matrix("full", ["cpu"])}
    assert len(full) > 3 * len(quick)
    assert {("train", "mlp-cpu-b128-fp32-xla"), ("inference", "mlp-cpu-b4096-fp32-xla")} <= full


def test_filters():
    cases = matrix.build_matrix("quick", ["cpu", "gpu:0"])
    kept = matrix.filter_cases(cases, models=["mlp"], devices=["cpu"], batches=[128],
                               precisions=["bf16"])
    assert kept and all(c.model == "mlp" and c.device == "cpu" and c.batch_size == 128
                        and c.precision == "bf16" for c in kept)
    assert matrix.parse_list("128, 1024", int) == [128, 1024]
    assert matrix.parse_list("") is None


def test_machine_id_names_the_hardware_and_tells_cpus_apart():
    cpu = [DeviceInfo("cpu", "CPU", "AMD EPYC 9654 96-Core Processor")]
    a = machine.machine_id(cpu, identity="family=25|model=17|flags=avx512f", cores=2)
    b = machine.machine_id(cpu, identity="family=25|model=160|flags=avx512f", cores=2)
    assert a.startswith("amd-epyc-9654-96-core-2c-") and a != b
    assert a == machine.machine_id(cpu, identity="family=25|model=17|flags=avx512f", cores=2)
    assert a != machine.machine_id(cpu, identity="family=25|model=17|flags=avx512f", cores=4)
    gpus = cpu + [DeviceInfo("gpu:0", "GPU", "NVIDIA H100 80GB HBM3")] * 2
    assert machine.machine_id(gpus, identity="x", cores=16).endswith("-2x-nvidia-h100-80gb-hbm3")


def test_results_are_named_by_run_id_and_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1_796_000_000.0)  # one second for all
    commit = {"commit_info": {"id": "A29468A0e3b0c"}}
    paths = [save_run({"benchmarks": [], "n": n, **commit}, tmp_path, "m") for n in range(50)]
    assert len(set(paths)) == 50
    assert all(RUN_ID.match(p.stem) and p.name.startswith("20261130-") and "_a29468a_" in p.name
               for p in paths), paths[:3]
    assert [json.loads(p.read_text())["n"] for p in paths] == list(range(50))
    assert RUN_ID.match(save_run({"benchmarks": []}, tmp_path, "m").stem)[2] == "nocommit"
    assert not list((tmp_path / "m").glob(".incoming-*"))  # no temporary left behind


def _run_bench(args: list[str], cwd: Path, env: dict | None = None,
               quiet_wait: bool = False) -> subprocess.CompletedProcess:
    """``pytest`` on bench suites in a subprocess, with a private machine lock."""
    # A short calibration: these sessions test the harness, not the machine's peak.
    env = dict(os.environ, PYTHONPATH=str(ROOT), FASHION_BENCH_LOCK=str(cwd / "bench.store.lock"),
               FASHION_BENCH_CALIBRATION_SECONDS="0.3", **(env or {}))
    extra = [] if quiet_wait else ["--bench-quiet-wait", "0"]
    return subprocess.run([sys.executable, "-m", "pytest", *args, *extra, "-p",
                           "no:cacheprovider", "-q"], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_the_commit_measured_can_come_from_the_environment(monkeypatch):
    from bench.harness.summary import commit_from_env

    monkeypatch.delenv("FASHION_BENCH_COMMIT", raising=False)
    assert commit_from_env(None) is None  # pytest-benchmark asks git
    monkeypatch.setenv("FASHION_BENCH_COMMIT", COMMIT.upper())
    monkeypatch.setenv("FASHION_BENCH_COMMIT_TIME", "2026-11-30T10:00:00+00:00")
    monkeypatch.setenv("FASHION_BENCH_COMMIT_DIRTY", "1")
    info = commit_from_env(None)
    assert (info["id"], info["time"], info["dirty"]) == (COMMIT, "2026-11-30T10:00:00+00:00",
                                                         True)
    for name, bad in (("FASHION_BENCH_COMMIT", "main"),
                      ("FASHION_BENCH_COMMIT_TIME", "yesterday")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(pytest.UsageError, match=name):
            commit_from_env(None)
        monkeypatch.setenv(name, COMMIT if name == "FASHION_BENCH_COMMIT" else "1796000000")


@pytest.mark.tensorflow_only  # expects TensorFlow's case ids (no suffix)
def test_end_to_end_two_case_run_writes_a_full_result_file(tmp_path):
    results = tmp_path / "results"
    proc = _run_bench([str(ROOT / "bench"), "--benchmark-only", "--bench-matrix", "tiny",
                       "--bench-device", "cpu", "--bench-data", "synthetic",
                       "--bench-results", str(results)], tmp_path,
                      env={"FASHION_BENCH_COMMIT": COMMIT,
                           "FASHION_BENCH_COMMIT_TIME": "1796000000"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 passed" in proc.stdout
    # No terminal: a line per finished case (bench.harness.progress) with its figure, interval,
    # rounds and stop reason; at the end our table of the figures, not pytest-benchmark's.
    lines = [line for line in proc.stdout.splitlines() if line.startswith("fashion-bench [")]
    assert [line.split(":")[0] for line in lines] == [
        "fashion-bench [1/2] inference mlp-cpu-b64-fp32-xla",
        "fashion-bench [2/2] train mlp-cpu-b64-fp32-xla"], proc.stdout[-3000:]
    assert "ms/epoch" in lines[1] and " samples/s, ±" in lines[1], lines[1]
    assert all(" rounds, " in line and " left" in line for line in lines), lines
    assert "fashion-bench: the figures" in proc.stdout and "median per epoch" in proc.stdout
    assert "Name (time in" not in proc.stdout
    # Synthetic data: saved apart from real results, and said so in the file.
    assert not list(results.glob("*.json")) and not list(results.glob("*/*.json"))
    files = list((results / "synthetic").glob("*/*.json"))
    assert len(files) == 1 and RUN_ID.match(files[0].stem)
    run = json.loads(files[0].read_text())
    # No git here: the commit measured is the one $FASHION_BENCH_COMMIT names (the kit's way).
    assert f"_{COMMIT[:7]}_" in files[0].name
    assert run["commit_info"]["id"] == COMMIT and not run["commit_info"]["dirty"]
    assert run["commit_info"]["time"].startswith("2026-11-30T")
    info = run["machine_info"]["fashion_bench"]
    assert files[0].parent.name == info["machine_id"]
    assert info["data"] == "synthetic" and info["schema"] == 3
    assert run["fashion_bench_status"] == "complete"
    assert not list(results.rglob(".journal-*"))  # the journal is gone once the file is there
    for key in ("machine_id", "tensorflow", "keras", "cuda", "cudnn", "devices",
                "calibration_gflops", "memory_bytes"):
        assert key in info, key
    assert info["calibration_gflops"]["cpu"] > 0
    # Measured at first use and again at the end; the higher is the session's figure.
    assert len(info["calibration_rounds"]["cpu"]["float32"]) == 2
    assert info["calibration_gflops"]["cpu"] == max(info["calibration_rounds"]["cpu"]["float32"])
    assert info["calibration_gflops_by_dtype"]["cpu"]["float32"] == \
        info["calibration_gflops"]["cpu"]
    assert info["devices"][0]["name"] == "cpu" and info["devices"][0]["memory_bytes"] > 0
    by_suite = {b["extra_info"]["suite"]: b for b in run["benchmarks"]}
    assert set(by_suite) == {"train", "inference"}
    train = by_suite["train"]["extra_info"]
    for key in ("case", "samples_per_second", "seconds_per_epoch", "gflops", "peak_fraction",
                "compile_seconds", "peak_rss_bytes", "device_peak_bytes", "contention",
                "contended", "compute_dtype", "peak_gflops", "energy_source",
                "energy_joules", "concurrent"):
        assert key in train, key
    assert 0 <= train["contention"] <= 1 and train["compute_dtype"] == "float32"
    # No energy counter on this CPU is read as unavailable, never as zero joules.
    assert train["energy_source"] != "unavailable" or train["energy_joules"] is None
    assert train["case"] == "mlp-cpu-b64-fp32-xla" and train["samples_per_second"] > 0
    assert 0 < train["peak_fraction"] < 1.5 and train["loss_last"] < train["loss_first"]
    assert train["peak_fraction"] == pytest.approx(
        train["gflops"] / info["calibration_gflops"]["cpu"])
    inference = by_suite["inference"]["extra_info"]
    assert "seconds_per_batch" in inference
    assert inference["test_accuracy"] >= 0.80 and inference["epochs_trained"] >= 1
    # Rounds sized by time (0.05 s for the tiny matrix) and run until the figure is known.
    for row in (train, inference):
        assert 3 <= row["rounds"] <= 20 and row["stop_reason"] in schema.STOP_REASONS
        assert row["round_seconds_target"] == 0.05 and row["case_seconds"] > 0
        assert len(row["canary_seconds"]) == row["rounds"] and row["canary_spread"] >= 0
        assert row["stop_reason"] != "converged" or row["ci_halfwidth"] <= 0.02
    assert train["steps_per_round"] >= 1 and inference["calls_per_round"] >= 1
    for suite in ("train", "inference"):  # every round kept
        assert len(by_suite[suite]["stats"]["data"]) == by_suite[suite]["extra_info"]["rounds"]
    assert info["plan"]["cases"] == 2 and info["plan"]["estimate_seconds"] > 0
    assert info["plan"]["elapsed_seconds"] > 0 and run["fashion_bench_not_run"] == []
    assert "the plan estimated" in proc.stdout
    assert run["fashion_bench_failures"] == []
    # pytest-benchmark's own tool reads the file.
    compare = subprocess.run(
        [sys.executable, "-c", "import sys; from pytest_benchmark.cli import main; "
         "sys.argv[0] = 'pytest-benchmark'; main()", "compare", str(files[0])],
        capture_output=True, text=True, timeout=120)
    assert compare.returncode == 0 and "test_train_epoch" in compare.stdout, compare.stderr


@pytest.mark.tensorflow_only  # expects TensorFlow's case ids (no suffix)
def test_the_plan_prints_and_runs_nothing_and_a_budget_leaves_out_with_reasons(tmp_path):
    results = tmp_path / "results"
    base = [str(ROOT / "bench"), "--benchmark-only", "--bench-matrix", "tiny",
            "--bench-device", "cpu", "--bench-data", "synthetic", "--bench-results",
            str(results)]
    plan = _run_bench([*base, "--bench-plan"], tmp_path)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    assert "fashion-bench: the plan" in plan.stdout and "estimate: ~" in plan.stdout
    assert "2 case(s)" in plan.stdout and not list(results.rglob("*.json"))
    assert "isolated:" not in plan.stdout  # the tiny matrix runs in one process
    # The full matrix runs a process per group unless told otherwise, and says so.
    full = _run_bench([*base, "--bench-plan", "--bench-matrix", "full"], tmp_path)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    assert "isolated: 6 group(s)" in full.stdout and "--bench-no-isolate" in full.stdout
    # A budget that holds one case at its minimum: the other is left out up front.
    proc = _run_bench([*base, "--bench-budget", "1s"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "left out" in proc.stdout
    [file] = list(results.rglob("*.json"))
    run = json.loads(file.read_text())
    assert run["fashion_bench_not_run"]
    assert all("budget" in n["reason"] and n["suite"] in ("train", "inference")
               for n in run["fashion_bench_not_run"])
    ran = {b["extra_info"]["case"] for b in run["benchmarks"]}
    assert len(ran) + len(run["fashion_bench_not_run"]) == 2
    assert run["machine_info"]["fashion_bench"]["plan"]["budget_seconds"] == 1.0
    bad = _run_bench([*base, "--bench-budget", "soon"], tmp_path)
    assert bad.returncode == 4 and "--bench-budget" in bad.stderr


@pytest.mark.tensorflow_only  # expects TensorFlow's case ids (no suffix)
def test_a_failing_case_is_recorded_and_the_rest_goes_on(tmp_path):
    """A suite whose case raises (as an OOM would): the failure lands in the result file."""
    (tmp_path / "conftest.py").write_text((ROOT / "bench" / "conftest.py").read_text())
    (tmp_path / "test_oom.py").write_text(
        "SUITE = 'train'\n"
        "from bench.measure.rounds import record\n"
        "def test_step(benchmark, case):\n"
        "    if case.batch_size == 64 and case.suite == 'train':\n"
        "        benchmark(lambda: None)\n"
        "        raise MemoryError('OOM when allocating tensor of shape [4096,784]')\n"
        "def test_other(benchmark):\n"
        "    benchmark(lambda: sum(range(100)))\n")
    results = tmp_path / "results"
    proc = _run_bench([str(tmp_path), "--benchmark-only", "--bench-matrix", "tiny",
                       "--bench-device", "cpu", "--bench-results", str(results)], tmp_path)
    assert proc.returncode == 1  # the failure is not hidden
    assert "1 failed, 1 passed" in proc.stdout
    assert "fashion-bench: 1 case(s) failed" in proc.stdout
    run = json.loads(next(results.glob("*/*.json")).read_text())
    [failure] = run["fashion_bench_failures"]
    assert failure["case"] == "mlp-cpu-b64-fp32-xla" and failure["suite"] == "train"
    assert failure["error"].startswith("MemoryError: OOM when allocating")
    names = [b["name"] for b in run["benchmarks"]]
    assert names == ["test_other"]  # the failed case's timing is not reported as a result


def test_calibration_time_comes_from_the_environment_and_a_bad_value_is_named():
    from fashion_core import calibration

    assert calibration.calibration_seconds({}) == 3.0
    assert calibration.calibration_seconds({"FASHION_BENCH_CALIBRATION_SECONDS": "0.5"}) == 0.5
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(ValueError, match="FASHION_BENCH_CALIBRATION_SECONDS"):
            calibration.calibration_seconds({"FASHION_BENCH_CALIBRATION_SECONDS": bad})


def test_calibration_takes_the_fastest_size_within_its_budget(monkeypatch):
    """A fake clock: size 2 runs at 4 GFLOP/s, size 4 at 16; the figure is the best."""
    from fashion_core import calibration

    clock = {"now": 0.0}
    calls = []
    rates = {2: 4e9, 4: 16e9}

    def make_product(size):
        def product():
            calls.append(size)
            clock["now"] += 2 * size**3 / rates[size]
        return product

    monkeypatch.setattr(calibration.time, "perf_counter", lambda: clock["now"])
    assert calibration.best_matmul_gflops(make_product, (2, 4), repeats=3) == pytest.approx(16.0)
    assert calls == [2] * 4 + [4] * 4  # a warm-up, then three timed calls each
    calls.clear()
    calibration.best_matmul_gflops(make_product, (4,), repeats=10, budget_seconds=0.0)
    assert calls == [4] * 3  # past its budget: a warm-up and the minimum of two
    assert calibration.calibration_sizes("cpu") == (1024, 2048, 4096)
