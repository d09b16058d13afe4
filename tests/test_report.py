"""Tests of the report, the regression gate and their handling of bad input.

Fast and without TensorFlow: they read the stored result files under
tests/fixtures/results/ (schema 1) and tests/fixtures/results-schema2/ (written by
tests/fixtures/make_fixtures.py) and small synthetic files built in a temporary folder.

Rendered tables are compared line by line with tests/fixtures/expected_*.md.
After an intended change of the output, regenerate those files with
``UPDATE_FIXTURES=1 python -m pytest tests/test_report.py`` and review the diff.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report import compare, gate, lists, tables
from bench.report import text as text_module
from bench.report.cli import main
from bench.report.compare import run_spread
from bench.report.loader import WarningLog, load_results
from bench.report.modes import build_report, relative_to
from bench.report.selection import current_failures, select_newest, select_runs
from bench.store import schema

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = FIXTURES / "results"
RESULTS_V2 = FIXTURES / "results-schema2"
AMD = "amd-epyc-2c"
INTEL = "intel-xeon-8c-nvidia-h100"
UPDATE = os.environ.get("UPDATE_FIXTURES") == "1"

sys.path.insert(0, str(FIXTURES))
import make_fixtures  # noqa: E402  (lives beside the stored fixtures)

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not

# --------------------------------------------------------------------------- helpers

def check_expected(name: str, text: str) -> None:
    """Compare ``text`` with tests/fixtures/<name> line by line (UPDATE_FIXTURES=1 writes it)."""
    path = FIXTURES / name
    if UPDATE:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; run with UPDATE_FIXTURES=1 to create it"
    expected = path.read_text(encoding="utf-8").splitlines()
    actual = text.splitlines()
    if actual != expected:
        diff = "\n".join(difflib.unified_diff(expected, actual, str(path), "rendered",
                                              lineterm=""))
        pytest.fail(f"{name} differs from the rendered output "
                    f"(UPDATE_FIXTURES=1 regenerates it):\n{diff}")


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def file_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def extra(machine_id: str, case: str, suite: str = "train", device: str = "cpu",
          batch: int = 128, **fields) -> dict:
    """extra_info of a synthetic case."""
    kind = "GPU" if device.startswith("gpu") else "CPU"
    info = {"case": case, "suite": suite, "model": "mlp", "backend": "tensorflow",
            "device": device, "device_kind": kind, "device_name": f"{kind} model",
            "batch_size": batch, "precision": "fp32", "xla": True, "status": "ok"}
    info.update(fields)
    return info


def write_run(folder: Path, machine_id: str, when: str, benchmarks: list[dict],
              failures: list[dict] | None = None, name: str | None = None) -> Path:
    stamp = when[:10].replace("-", "") + "-" + when[11:19].replace(":", "")
    path = folder / machine_id / (name or f"0001_{stamp}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    document = make_fixtures.make_document(machine_id, when, benchmarks, failures)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def results():
    log = WarningLog()
    loaded = load_results([RESULTS], log)
    assert log.messages == []
    return loaded


@pytest.fixture(scope="module")
def newest(results):
    return select_newest(results.benchmarks)


# --------------------------------------------------------------------------- fixtures and loading

def test_stored_fixtures_match_their_generator(tmp_path):
    make_fixtures.write_fixtures(tmp_path / "v1")
    assert file_digests(tmp_path / "v1") == file_digests(RESULTS), (
        "tests/fixtures/results/ is stale: run python tests/fixtures/make_fixtures.py")
    make_fixtures.write_schema2_fixtures(tmp_path / "v2")
    assert file_digests(tmp_path / "v2") == file_digests(RESULTS_V2), (
        "tests/fixtures/results-schema2/ is stale: run python tests/fixtures/make_fixtures.py")


def test_long_form_has_one_row_per_benchmark_per_run(results):
    frame = results.benchmarks
    stored = sum(len(json.loads(p.read_text())["benchmarks"]) for p in RESULTS.rglob("*.json"))
    assert len(frame) == stored
    assert set(frame["machine_id"]) == {AMD, INTEL}
    assert set(frame["label"]) == {f"{AMD}/cpu", f"{INTEL}/cpu", f"{INTEL}/gpu:0"}
    for column in ("run_file", "run_datetime", "median", "iqr", "stddev", "rounds",
                   "samples_per_second", "peak_fraction", "latency_p99_ms",
                   "seconds_to_accuracy", "replicas", "raw_rounds"):
        assert column in frame.columns, column
    row = frame[(frame["case"] == "mlp-cpu-b128-fp32-xla") & (frame["suite"] == "train")
                & (frame["run"] == "0001_20261120-070000.json")].iloc[0]
    assert len(row["raw_rounds"]) == row["rounds"] == 5
    assert row["median"] == pytest.approx(np.median(row["raw_rounds"]), rel=1e-5)


def test_newest_run_per_machine_and_case(results, newest):
    assert not newest.duplicated(["machine_id", "suite", "case"]).any()
    amd = newest[newest["machine_id"] == AMD]
    assert set(amd.loc[amd["suite"] == "train", "run"]) == {"0002_20261127-070000.json"}
    assert set(amd.loc[amd["suite"] == "inference", "run"]) == {"0001_20261120-070000.json"}
    pooled = select_runs(results.benchmarks, all_runs=True)
    row = pooled[(pooled["machine_id"] == AMD) & (pooled["case"] == "mlp-cpu-b128-fp32-xla")
                 & (pooled["suite"] == "train")].iloc[0]
    assert row["runs"] == 2 and row["rounds"] == 10
    assert row["median"] == pytest.approx(np.median(row["raw_rounds"]))
    # Pooled throughput is the work per round over the pooled median time.
    assert row["samples_per_second"] == pytest.approx(60_000 / row["median"], rel=1e-4)


def test_failure_listed_while_current(results):
    failures = current_failures(results, all_runs=False)
    assert list(failures["case"]) == ["cnn-gpu0-b4096-fp16-noxla"]


# --------------------------------------------------------------------------- tables vs stored text

TABLES = {
    "expected_train.md": lambda s, b: tables.render(tables.TRAINING, s, b),
    "expected_inference.md": lambda s, b: tables.render(tables.INFERENCE, s, b),
    "expected_latency.md": lambda s, b: tables.render(tables.LATENCY, s, b),
    "expected_tta.md": lambda s, b: tables.render(tables.TIME_TO_ACCURACY, s, b),
    "expected_compile.md": lambda s, b: tables.render(tables.COMPILE, s, b),
    "expected_peak.md": lambda s, b: tables.render(tables.PEAK, s),
    "expected_precision_xla.md": lambda s, b: tables.render(lists.precision_xla_table(s), s),
    "expected_scaling.md": lambda s, b: tables.render(lists.SCALING, s),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_matches_expected(name, newest):
    baseline, problem = relative_to(newest, None)
    assert (baseline, problem) == (f"{AMD}/cpu", None)
    check_expected(name, TABLES[name](newest, baseline))


def test_pooled_training_table_matches_expected(results):
    pooled = select_runs(results.benchmarks, all_runs=True)
    text = tables.render(tables.TRAINING, pooled, f"{AMD}/cpu", True)
    assert "All runs pooled" in text.splitlines()[0]
    check_expected("expected_train_all_runs.md", text)


def test_failures_and_machines_match_expected(results):
    check_expected("expected_failures.md",
                   tables.render(lists.FAILURES, current_failures(results, False)))
    check_expected("expected_machines.md", tables.render(lists.MACHINES, results.runs))


def test_whole_report_matches_expected(results, newest):
    report = build_report(results, newest, f"{AMD}/cpu", False)
    check_expected("expected_report.md", report)


def test_gate_output_matches_expected(capsys):
    # 0002 re-ran the training cases only: --allow-missing lets the others go unchecked.
    code, out, err = run_cli(capsys, "--compare", RESULTS / AMD / "0001_20261120-070000.json",
                             RESULTS / AMD / "0002_20261127-070000.json", "--fail-slower", "3%",
                             "--allow-missing")
    assert code == 0 and err == ""
    check_expected("expected_compare.md", out)


# --------------------------------------------------------------------------- speedups by hand

def _cell_row(table: str, *key: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:len(key)] == list(key):
            return cells
    raise AssertionError(f"no row {key}")


def test_speedups_by_hand():
    frame = pd.DataFrame([
        {"machine_id": "slow", "label": "slow/cpu", "device_kind": "CPU", "suite": "train",
         "case": "a", "model": "mlp", "batch_size": 128, "precision": "fp32", "xla": True,
         "backend": "tensorflow", "samples_per_second": 1000.0, "median": 60.0, "iqr": 0.6,
         "rounds": 5},
        {"machine_id": "fast", "label": "fast/gpu:0", "device_kind": "GPU", "suite": "train",
         "case": "b", "model": "mlp", "batch_size": 128, "precision": "fp32", "xla": True,
         "backend": "tensorflow", "samples_per_second": 4000.0, "median": 15.0, "iqr": 0.3,
         "rounds": 5},
        {"machine_id": "slow", "label": "slow/cpu", "device_kind": "CPU", "suite": "compile",
         "case": "c", "model": "mlp", "batch_size": 128, "precision": "fp32", "xla": True,
         "backend": "tensorflow", "compile_seconds": 2.0, "median": 2.0, "iqr": 0.0, "rounds": 1},
        {"machine_id": "fast", "label": "fast/gpu:0", "device_kind": "GPU", "suite": "compile",
         "case": "d", "model": "mlp", "batch_size": 128, "precision": "fp32", "xla": True,
         "backend": "tensorflow", "compile_seconds": 0.5, "median": 0.5, "iqr": 0.0, "rounds": 1},
    ])
    assert relative_to(frame, None) == ("slow/cpu", None)
    train = tables.render(tables.TRAINING, frame, "slow/cpu")
    # 4000/s over 1000/s is 4x; spread 0.6 s of 60 s is 1.0%; one round shows no spread.
    assert _cell_row(train, "mlp", "128") == ["mlp", "128", "fp32", "yes", "tensorflow",
                                               "1.00k/s ±1.0%", "4.00k/s ±2.0%", "4.00×"]
    compile_table = tables.render(tables.COMPILE, frame, "slow/cpu")
    assert _cell_row(compile_table, "mlp")[-3:] == ["2.00 s", "0.500 s", "4.00×"]
    # The other way round the speedup is 0.25x.
    assert _cell_row(tables.render(tables.TRAINING, frame, "fast/gpu:0"), "mlp")[-1] \
        == "0.25×"


def test_fixture_speedups_match_the_stored_numbers(newest):
    def rate(machine_id, case):
        path = sorted((RESULTS / machine_id).glob("*.json"))[-1]
        for benchmark in json.loads(path.read_text())["benchmarks"]:
            if benchmark["extra_info"]["case"] == case and benchmark["group"] == "train":
                return benchmark["extra_info"]["samples_per_second"]
        raise AssertionError(case)

    cpu = rate(AMD, "mlp-cpu-b128-fp32-noxla")
    gpu = rate(INTEL, "mlp-gpu0-b128-fp32-noxla")
    table = tables.render(tables.TRAINING, newest, f"{AMD}/cpu")
    assert _cell_row(table, "mlp", "128", "fp32", "no")[-1] == f"{gpu / cpu:.2f}×"


def test_scaling_efficiency_by_hand(newest):
    rows = {r["replicas"]: r for r in lists.scaling_rows(newest)}
    one, four = rows[1]["samples_per_second"], rows[4]["samples_per_second"]
    assert rows[4]["speedup"] == pytest.approx(four / one)
    assert rows[4]["efficiency"] == pytest.approx(four / (4 * one))
    assert rows[1]["efficiency"] == pytest.approx(1.0)


def test_precision_and_xla_speedups_by_hand():
    def row(precision, xla, rate):
        return {"suite": "train", "label": "m/gpu:0", "model": "cnn", "batch_size": 512,
                "backend": "tensorflow", "precision": precision, "xla": xla,
                "samples_per_second": rate}
    frame = pd.DataFrame([row("fp32", False, 100.0), row("fp32", True, 150.0),
                          row("fp16", False, 200.0), row("fp16", True, 240.0)])
    speedups = lists.precision_xla_speedups(frame).set_index("comparison")
    # fp16/fp32: 200/100 = 2 and 240/150 = 1.6 -> geometric mean sqrt(3.2).
    assert speedups.loc["fp16 vs fp32", "speedup"] == pytest.approx(3.2 ** 0.5)
    assert speedups.loc["fp16 vs fp32", "cases"] == 2
    # XLA: 150/100 = 1.5 and 240/200 = 1.2 -> sqrt(1.8).
    compiled = tables.COMPILED_VS_NOT  # XLA, or torch.compile under PyTorch
    assert speedups.loc[compiled, "speedup"] == pytest.approx(1.8 ** 0.5)
    assert (speedups.loc[compiled, "low"], speedups.loc[compiled, "high"]) \
        == pytest.approx((1.2, 1.5))


@pytest.mark.parametrize("value, text", [
    (276_345.0, "276k"), (27_634.0, "27.6k"), (1_234_567.0, "1.23M"), (999.6, "1.00k"),
    (950.0, "950"), (0.5, "0.500")])
def test_si_format(value, text):
    assert text_module.format_si(value) == text


def test_baseline_option(newest, capsys):
    assert relative_to(newest, INTEL) == (f"{INTEL}/cpu", None)
    assert relative_to(newest, f"{INTEL}/gpu:0") == (f"{INTEL}/gpu:0", None)
    label, problem = relative_to(newest, "no-such-machine")
    assert label == f"{AMD}/cpu" and "no-such-machine" in problem


# --------------------------------------------------------------------------- regression gate

def _gate_files(tmp_path: Path, factor: float, noise: float, rounds: int = 10,
                machine_new: str = AMD, seed: int = 7, runs: int = 3,
                run_noise: float = 0.02) -> tuple[Path, Path]:
    """OLD and NEW folders of ``runs`` runs each with the same cases.

    Each run's rounds scatter by ``noise``, each run's level by ``run_noise`` (the
    run-to-run noise); NEW's times are ``factor`` times OLD's.
    """
    rng = np.random.default_rng(seed)
    for side, machine_id, scale in (("old", AMD, 1.0), ("new", machine_new, factor)):
        for run in range(runs):
            level = np.exp(rng.normal(0.0, run_noise))
            benchmarks = []
            for number, base in enumerate((0.8, 1.6, 3.2)):
                case = f"mlp-cpu-b{128 * 2 ** number}-fp32-xla"
                times = scale * level * base * np.exp(rng.normal(0.0, noise, rounds))
                benchmarks.append(make_fixtures.make_benchmark(extra(machine_id, case),
                                                               [float(x) for x in times]))
            day = 20 if side == "old" else 27
            write_run(tmp_path / side, machine_id, f"2026-11-{day}T0{run}:00:00+00:00",
                      benchmarks, name=f"000{run + 1}_run.json")
    return tmp_path / "old", tmp_path / "new"


def test_gate_catches_a_20_percent_slowdown(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=1.2, noise=0.02)
    code, out, err = run_cli(capsys, "--compare", old, new, "--fail-slower", "10%")
    assert code == 1
    assert out.count("| slower") == 4  # three cases and the machine's (all) row
    assert "**FAIL**: 4 slower" in out
    assert "t-test" in out  # three runs a side: the t-test on run medians decides


def test_gate_ignores_2_percent_noise(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=1.02, noise=0.02)
    code, out, err = run_cli(capsys, "--compare", old, new, "--fail-slower", "0.1")
    assert code == 0
    assert "**PASS**: 0 slower, 0 failed, 0 missing" in out and "0 faster" in out


def test_gate_ignores_a_large_change_lost_in_noise(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=1.15, noise=0.02, run_noise=0.4, seed=3)
    table, _ = compare.compare_results(load_results([old], WarningLog()),
                                       load_results([new], WarningLog()), threshold=0.1)
    slow = table[table["ratio"] > 1.1]
    assert not slow.empty and not (slow["status"] == "slower").any()
    assert set(slow["status"]) == {"undecided"}
    assert slow["note"].str.contains("runs a side").all()


def test_gate_reports_improvements(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=0.7, noise=0.02)
    code, out, err = run_cli(capsys, "--compare", old, new)
    assert code == 0 and out.count("| faster") == 4


def test_gate_never_compares_different_machines(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=2.0, noise=0.01, machine_new=INTEL)
    code, out, err = run_cli(capsys, "--compare", old, new, "--fail-slower", "10%")
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("error:") and "share no machine id" in line
    assert f"OLD: {AMD}" in line and f"NEW: {INTEL}" in line


def test_gate_with_one_run_a_side_is_undecided(tmp_path, capsys):
    """Rounds of one run say nothing of run-to-run noise: never a verdict from them."""
    old, new = _gate_files(tmp_path, factor=1.3, noise=0.01, runs=1)
    code, out, err = run_cli(capsys, "--compare", old, new)
    assert code == 0 and "| slower" not in out
    assert out.count("| undecided") == 4 and "--bench-repeat 3" in out
    code, out, err = run_cli(capsys, "--compare", old, new, "--strict")
    assert code == 1
    assert "undecided cases slower than the threshold or unjudged, under --strict" in out


def test_gate_needs_no_scipy(tmp_path, capsys, monkeypatch):
    old, new = _gate_files(tmp_path, factor=1.2, noise=0.02)
    expected = run_cli(capsys, "--compare", old, new)
    for name in [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "scipy", None)  # makes "import scipy" fail
    assert run_cli(capsys, "--compare", old, new) == expected
    assert expected[0] == 1


def test_gate_missing_cases_fail_unless_allowed(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=1.0, noise=0.02)
    for path in sorted(new.rglob("*.json")):
        document = json.loads(path.read_text())
        document["benchmarks"] = document["benchmarks"][:2]
        path.write_text(json.dumps(document))
    code, out, err = run_cli(capsys, "--compare", old, new)
    assert code == 1 and "not in NEW" in out and "1 missing" in out
    assert "fails on: missing or failed cases" in out
    code, out, err = run_cli(capsys, "--compare", old, new, "--allow-missing")
    assert code == 0 and "1 missing" in out and "allowed by --allow-missing" in out


def test_gate_case_failing_in_new_fails(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=1.0, noise=0.02)
    path = sorted(new.rglob("*.json"))[-1]
    document = json.loads(path.read_text())
    lost = document["benchmarks"].pop()["extra_info"]
    document["fashion_bench_failures"] = [{"suite": lost["suite"], "case": lost["case"],
                                           "name": "x", "error": "MemoryError: out of memory"}]
    path.write_text(json.dumps(document))
    code, out, err = run_cli(capsys, "--compare", old, new)
    assert code == 1 and "| failed" in out and "MemoryError" in out
    assert run_cli(capsys, "--compare", old, new, "--allow-missing")[0] == 0


def test_gate_same_runs_both_sides_pass(tmp_path, capsys):
    old, _ = _gate_files(tmp_path, factor=1.0, noise=0.02)
    code, out, err = run_cli(capsys, "--compare", old, old)
    assert code == 0 and "4 same" in out
    one = sorted(old.rglob("*.json"))[0]
    assert run_cli(capsys, "--compare", one, one)[0] == 0


@pytest.mark.parametrize("side", ["OLD", "NEW"])
def test_gate_on_nothing_exits_2_with_one_line(side, tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=1.0, noise=0.02, runs=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    (junk / AMD).mkdir(parents=True)
    (junk / AMD / "0001_x.json").write_text("{not json")
    synthetic = tmp_path / "synthetic"
    path = write_run(synthetic, AMD, "2026-11-20T07:00:00+00:00",
                     [make_fixtures.make_benchmark(extra(AMD, "a"), [1.0, 1.1])])
    document = json.loads(path.read_text())
    document["machine_info"]["fashion_bench"].update(schema=2, data="synthetic")
    path.write_text(json.dumps(document))
    for bad, message in ((tmp_path / "missing1", "does not exist"),
                         (empty, "holds no result files"),
                         (junk, "holds no usable results"),
                         (synthetic, "--include-synthetic")):
        sides = (bad, new) if side == "OLD" else (old, bad)
        code, out, err = run_cli(capsys, "--compare", *sides)
        errors = [line for line in err.splitlines() if not line.startswith("warning:")]
        assert code == 2 and out == "", (bad, err)
        assert len(errors) == 1 and errors[0].startswith(f"error: {side} ") \
            and message in errors[0], (bad, err)
        assert "Traceback" not in err
    # The acceptance example: two paths that name nothing.
    code, out, err = run_cli(capsys, "--compare", tmp_path / "m1", tmp_path / "m2")
    assert code == 2 and len(err.splitlines()) == 1 and "PASS" not in out + err


def test_gate_leaves_contended_rows_out_and_lists_them(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=1.0, noise=0.02, runs=4)
    # One NEW run was timed beside a pip install: twice as slow, and marked contended.
    path = sorted(new.rglob("*.json"))[0]
    document = json.loads(path.read_text())
    for benchmark in document["benchmarks"]:
        benchmark.update(make_fixtures.make_benchmark(
            dict(benchmark["extra_info"], contention=0.45, contended=True),
            [2 * x for x in benchmark["stats"]["data"]]))
    path.write_text(json.dumps(document))
    code, out, err = run_cli(capsys, "--compare", old, new)
    assert code == 0 and "| slower" not in out
    assert "Left out: 3 row(s) contended" in out and "45% of the CPU" in out
    # Four OLD runs against the three uncontended NEW runs.
    assert re.search(r"\|\s+4/3 \|", out)
    # Every NEW run contended: nothing to judge by, said so.
    for path in sorted(new.rglob("*.json")):
        document = json.loads(path.read_text())
        for benchmark in document["benchmarks"]:
            benchmark["extra_info"]["contended"] = True
        path.write_text(json.dumps(document))
    code, out, err = run_cli(capsys, "--compare", old, new)
    assert code == 0 and out.count("every NEW run of it contended") == 3
    assert run_cli(capsys, "--compare", old, new, "--strict")[0] == 1


# --------------------------------------------------------------------------- the gate's acceptance

def _noisy_sides(folder: Path, seed: int, runs: int) -> dict[str, Path]:
    """Runs of unchanged code (OLD, NEW) and the same runs 1.3 times slower.

    ``b1`` is OLD's runs scaled, ``b2`` NEW's: a slowdown seen through the same noise.
    """
    old = make_fixtures.noisy_runs(seed, 1000 + seed, runs)
    new = make_fixtures.noisy_runs(seed, 2000 + seed, runs)
    sides = {"old": old, "new": new, "b1": [make_fixtures.scaled(d, 1.3) for d in old],
             "b2": [make_fixtures.scaled(d, 1.3) for d in new]}
    for name, documents in sides.items():
        for index, document in enumerate(documents):
            path = folder / name / AMD / f"{index + 1:04d}_run.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document))
    return {name: folder / name for name in sides}


def test_noisy_runs_have_the_noise_they_promise():
    """Per-run medians scattered 10-40% between runs, rounds within a few percent."""
    spreads, within = [], []
    for seed in range(4):
        runs = make_fixtures.noisy_runs(seed, 100 + seed, 3)
        for index in range(25):
            medians = [run["benchmarks"][index]["stats"]["median"] for run in runs]
            spreads.append(max(medians) / min(medians) - 1)
            stats = runs[0]["benchmarks"][index]["stats"]
            within.append(stats["iqr"] / stats["median"])
    assert 0.15 < float(np.median(spreads)) < 0.35 and max(spreads) > 0.4
    assert float(np.median(within)) < 0.04


GATE_SEEDS = range(12)


@pytest.mark.parametrize("seed", GATE_SEEDS)
def test_gate_acceptance_three_runs_a_side(seed, tmp_path):
    """(a) unchanged code never fails at 10%; (b) every time x1.3 always fails."""
    sides = _noisy_sides(tmp_path, seed, runs=3)
    text, code = gate.run_gate([sides["old"]], [sides["new"]], 0.10, WarningLog())
    assert code == 0 and "| slower" not in text, text
    for slower in ("b1", "b2"):
        text, code = gate.run_gate([sides["old"]], [sides[slower]], 0.10, WarningLog())
        assert code == 1 and "| slower" in text, text


@pytest.mark.parametrize("seed", GATE_SEEDS)
def test_gate_acceptance_one_run_a_side_never_fails(seed, tmp_path):
    """(c) one run a side of unchanged code: never fails; inconclusive at most."""
    sides = _noisy_sides(tmp_path, seed, runs=1)
    text, code = gate.run_gate([sides["old"]], [sides["new"]], 0.10, WarningLog())
    assert code == 0 and "| slower" not in text and "| faster" not in text
    # Even 1.3x slower: one run a side cannot tell it from noise.
    text, code = gate.run_gate([sides["old"]], [sides["b2"]], 0.10, WarningLog())
    assert code == 0 and "| undecided" in text


def test_gate_rule_false_alarm_and_catch_rates():
    """The rule on 600 simulated gates of 25 cases, 3 runs a side, 10-40% spread.

    Unchanged code: under 1% of gates fail (the design allows 0.2% for the cases and
    1% for the (all) row, and the threshold keeps most of those away). A 1.3x slowdown
    of everything: 99.5% or more fail.
    """
    rng = np.random.default_rng(2026)
    gates, cases, runs = 600, 25, 3
    false_alarms = caught = 0
    for _ in range(gates):
        sigma = np.log1p(rng.uniform(0.10, 0.40, cases)) / 1.69
        old = np.exp(rng.normal(0, 1, (cases, runs)) * sigma[:, None])
        new = np.exp(rng.normal(0, 1, (cases, runs)) * sigma[:, None])
        for side, slower in ((new, False), (1.3 * new, True)):
            failed = any(compare.judge(o, n, 0.10, compare.ALPHA / cases)["status"]
                         == "slower" for o, n in zip(old, side, strict=True))
            if not failed:
                scores_old = np.exp(np.log(old / np.exp(np.log(old).mean(1, keepdims=True)))
                                    .mean(0))
                scores_new = np.exp(np.log(side / np.exp(np.log(old).mean(1, keepdims=True)))
                                    .mean(0))
                failed = compare.judge(scores_old, scores_new, 0.10,
                                       compare.OVERALL_ALPHA)["status"] == "slower"
            if slower:
                caught += failed
            else:
                false_alarms += failed
    assert false_alarms / gates < 0.01
    assert caught / gates >= 0.995


def test_runs_to_decide_is_the_first_count_that_decides():
    diff, sd, alpha = np.log(1.3), 0.15, 0.002 / 25
    runs = compare.runs_to_decide(diff, sd, alpha)
    assert runs is not None and 3 < runs < compare.MAX_RUNS_SUGGESTED
    assert compare.one_sided_p(diff, sd, runs, runs)[0] < alpha
    assert compare.one_sided_p(diff, sd, runs - 1, runs - 1)[0] >= alpha
    assert compare.runs_to_decide(-0.1, sd, alpha) is None
    assert compare.runs_to_decide(0.001, 1.0, alpha) is None  # lost in the noise


@pytest.mark.parametrize("text, value", [("10%", 0.10), ("0.1", 0.10), ("2.5%", 0.025),
                                         ("0", 0.0)])
def test_threshold_parsing(text, value):
    assert compare.parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "ten", "-5%"])
def test_bad_threshold_is_a_usage_error(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--compare", "a", "b", "--fail-slower", text])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input

def _good_copy(folder: Path) -> None:
    source = RESULTS / AMD / "0001_20261120-070000.json"
    target = folder / AMD / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())


def _foreign(path: Path) -> None:
    document = json.loads((RESULTS / AMD / "0001_20261120-070000.json").read_text())
    del document["machine_info"]["fashion_bench"]
    path.write_text(json.dumps(document))


def _newer_schema(path: Path) -> None:
    document = json.loads((RESULTS / AMD / "0001_20261120-070000.json").read_text())
    document["machine_info"]["fashion_bench"]["schema"] = schema.SCHEMA + 1
    path.write_text(json.dumps(document))


def _unknown_schema(path: Path) -> None:
    document = json.loads((RESULTS / AMD / "0001_20261120-070000.json").read_text())
    document["machine_info"]["fashion_bench"]["schema"] = "one"
    path.write_text(json.dumps(document))


def _missing_fields(path: Path) -> None:
    document = json.loads((RESULTS / AMD / "0001_20261120-070000.json").read_text())
    del document["benchmarks"][0]["extra_info"]["suite"]
    path.write_text(json.dumps(document))


def _wrong_types(path: Path) -> None:
    document = json.loads((RESULTS / AMD / "0001_20261120-070000.json").read_text())
    document["benchmarks"][0]["extra_info"]["batch_size"] = "128"
    document["benchmarks"][1]["stats"]["data"] = [0.1, "slow"]
    path.write_text(json.dumps(document))


def _all_failed(path: Path) -> None:
    document = make_fixtures.make_document(INTEL, "2026-11-29T07:00:00+00:00", [], [
        {"case": f"cnn-gpu0-b{b}-fp16-xla", "suite": "train",
         "name": f"test_train_epoch[cnn-gpu0-b{b}-fp16-xla]",
         "error": "InternalError: CUDA driver version is insufficient"} for b in (128, 512)])
    path.write_text(json.dumps(document))


BAD_INPUTS = {
    "not JSON": (lambda p: p.write_text("this is not json {"), "is not JSON"),
    "binary": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe"), "is not JSON"),
    "foreign": (_foreign, "some other project"),
    "newer schema": (_newer_schema, f"newer schema {schema.SCHEMA + 1} (this report reads "
                                    f"schemas 1-{schema.SCHEMA}): written by a newer "
                                    "fashion-bench; update"),
    "unknown schema": (_unknown_schema, "older/unknown schema"),
    "missing fields": (_missing_fields, "older/unknown schema"),
    "wrong types": (_wrong_types, "older/unknown schema"),
    "not a result file": (lambda p: p.write_text('{"results": []}'), "not a pytest-benchmark"),
    "all failed": (_all_failed, "every case failed"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_file_gives_one_warning_naming_it(kind, tmp_path, capsys):
    make, message = BAD_INPUTS[kind]
    folder = tmp_path / "results"
    _good_copy(folder)
    bad = folder / "other" / "0001_20261129-070000.json"
    bad.parent.mkdir(parents=True)
    make(bad)
    out_dir = tmp_path / "out"

    code, out, err = run_cli(capsys, folder, "--out", out_dir, "--no-plots")
    warnings = warning_lines(err)
    assert code == 0
    assert len(warnings) == 1, err
    assert str(bad) in warnings[0] and message in warnings[0]
    assert "Traceback" not in err
    report = (out_dir / "REPORT.md").read_text()
    assert f"`{AMD}/cpu`" in report  # the good file is still reported
    if kind == "all failed":
        assert "cnn-gpu0-b128-fp16-xla" in report and "cnn-gpu0-b512-fp16-xla" in report

    code, out, err = run_cli(capsys, folder, "--out", out_dir, "--no-plots", "--strict")
    assert code == 2 and len(warning_lines(err)) == 1


def test_empty_folder_gives_one_warning(tmp_path, capsys):
    empty = tmp_path / "results"
    empty.mkdir()
    code, out, err = run_cli(capsys, empty, "--out", tmp_path / "out")
    warnings = warning_lines(err)
    assert code == 0 and len(warnings) == 1 and str(empty) in warnings[0]
    assert not (tmp_path / "out").exists()
    code, out, err = run_cli(capsys, empty, "--out", tmp_path / "out", "--strict")
    assert code == 2


def test_strict_gate_with_a_bad_file(tmp_path, capsys):
    old, new = _gate_files(tmp_path, factor=1.0, noise=0.02)
    (new / AMD / "0009_20261128-070000.json").write_text("{broken")
    code, out, err = run_cli(capsys, "--compare", old, new, "--strict")
    assert code == 2 and len(warning_lines(err)) == 1


# --------------------------------------------------------------------------- outputs

def test_outputs_written_to_out(tmp_path, capsys):
    before = file_digests(RESULTS)
    out_dir = tmp_path / "report"
    code, out, err = run_cli(capsys, RESULTS, "--out", out_dir)
    assert code == 0 and warning_lines(err) == []
    # The terminal gets the summary and where the rest is, not every table.
    assert "## Summary" in out and "## Training throughput" not in out
    assert f"is in {out_dir / 'REPORT.md'} and {out_dir / 'REPORT.html'}: Verdicts" in out
    assert f"wrote {out_dir / 'REPORT.md'}" in out
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["REPORT.html", "REPORT.md", "report.csv", "speedup_precision_xla.png",
                     "throughput_vs_batch.png", "time_to_accuracy.png"]  # no temp files left
    for name in names[3:]:
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out_dir / "REPORT.md").read_text()
    for heading in ("## Machines", "## Training throughput", "## Inference throughput",
                    "## Inference latency", "## Time to accuracy", "## Share of calibrated peak",
                    "## Scaling", "## Failures"):
        assert heading in report
    assert "cpu 800, gpu:0 51,200" in report  # calibration GFLOP/s in the intro
    csv = pd.read_csv(out_dir / "report.csv")  # the newest run of each case per machine
    assert len(csv) == len(select_newest(load_results([RESULTS], WarningLog()).benchmarks))
    assert len(csv.loc[0, "raw_rounds"].split()) == csv.loc[0, "rounds"]
    assert file_digests(RESULTS) == before  # result files untouched


def test_print_full_prints_the_report_and_none_only_what_was_written(tmp_path, capsys):
    code, out, _ = run_cli(capsys, RESULTS, "--out", tmp_path, "--no-plots", "--print", "full")
    assert code == 0 and out.startswith((tmp_path / "REPORT.md").read_text())
    code, out, _ = run_cli(capsys, RESULTS, "--out", tmp_path, "--no-plots", "--no-html",
                           "--print", "none")
    assert code == 0 and out.splitlines() == [
        f"wrote {tmp_path / 'REPORT.md'}, {tmp_path / 'report.csv'}"]


def test_plots_skipped_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" fail
    code, out, err = run_cli(capsys, RESULTS, "--out", tmp_path)
    warnings = warning_lines(err)
    assert code == 0 and len(warnings) == 1 and "matplotlib" in warnings[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["REPORT.html", "REPORT.md",
                                                          "report.csv"]


def test_unknown_baseline_warns(tmp_path, capsys):
    code, out, err = run_cli(capsys, RESULTS, "--out", tmp_path, "--no-plots",
                             "--baseline", "nope", "--strict")
    assert code == 2 and len(warning_lines(err)) == 1 and "--baseline" in err


def test_other_suite_gets_a_generic_table(tmp_path, capsys):
    benchmarks = []
    for variant, seconds in (("keras-fit", 2.0), ("tutorial-eager", 8.0)):
        info = extra(AMD, f"mlp-cpu-b128-fp32-xla-{variant}", suite="custom",
                     variant=variant, samples_per_second=60_000 / seconds)
        del info["device_kind"]  # optional: follows from the device
        benchmarks.append(make_fixtures.make_benchmark(info, [seconds * f for f in
                                                              (0.99, 1.0, 1.01)]))
    write_run(tmp_path / "in", AMD, "2026-11-27T07:00:00+00:00", benchmarks)
    code, out, err = run_cli(capsys, tmp_path / "in", "--out", tmp_path / "out", "--print",
                             "full", "--no-plots")
    assert code == 0 and warning_lines(err) == []
    section = out.split("## Suite custom")[1].split("## ")[0]
    assert "| variant" in section
    # Three rounds at 0.99, 1.00, 1.01 times: quartiles 0.99 and 1.01, so ±2.0%.
    assert "30.0k/s ±2.0%" in section and "7.50k/s ±2.0%" in section


def test_atomic_writer_refuses_result_files(tmp_path):
    from bench.store.atomic import write_atomic

    with pytest.raises(ValueError):
        write_atomic(tmp_path / "0001_x.json", "{}")
    write_atomic(tmp_path / "a.md", "text")
    assert [p.name for p in tmp_path.iterdir()] == ["a.md"]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--baseline", "--all-runs", "--no-plots", "--strict",
                   "--compare", "--fail-slower", "examples:", "exit status:"):
        assert option in text


def test_reference_table_puts_each_reference_beside_the_compiled_step():
    import pandas as pd

    from bench.report.lists import REFERENCE_LOOPS
    from bench.report.tables import render

    common = {"label": "m/cpu", "model": "mlp", "batch_size": 128, "precision": "fp32",
              "backend": "tensorflow"}
    frame = pd.DataFrame([
        {**common, "suite": "train", "xla": True, "seconds_per_epoch": 0.25, "variant": None},
        {**common, "suite": "train", "xla": False, "seconds_per_epoch": 0.5, "variant": None},
        {**common, "suite": "baseline", "xla": True, "seconds_per_epoch": 0.75,
         "variant": "keras-fit"},
        {**common, "suite": "baseline", "xla": False, "seconds_per_epoch": 10.0,
         "variant": "tutorial-eager"},
    ])
    table = render(REFERENCE_LOOPS, frame)
    lines = [line for line in table.splitlines() if line.startswith("| m/cpu")]
    assert len(lines) == 2
    assert "keras-fit" in lines[0] and "3.00×" in lines[0] and "0.250 s" in lines[0]
    assert "tutorial-eager" in lines[1] and "40.0×" in lines[1]
    assert render(REFERENCE_LOOPS, frame[frame["suite"] == "train"]) is None


def test_machines_table_lists_each_backends_calibration(tmp_path, capsys):
    """Each framework times its own matmul: a machine run under two backends shows both."""
    for index, (backend, gflops) in enumerate((("tensorflow", 450.0), ("jax", 290.0))):
        bench = make_fixtures.make_benchmark(
            extra(AMD, f"mlp-cpu-b128-fp32-xla-{backend}", backend=backend,
                  samples_per_second=1000.0), [1.0, 1.01, 0.99])
        path = write_run(tmp_path / "in", AMD, f"2026-11-27T0{7 + index}:00:00+00:00", [bench],
                         name=f"000{index + 1}_run.json")
        document = json.loads(path.read_text())
        document["machine_info"]["fashion_bench"]["backend"] = backend
        document["machine_info"]["fashion_bench"]["calibration_gflops"] = {"cpu": gflops}
        path.write_text(json.dumps(document))
    code, out, err = run_cli(capsys, tmp_path / "in", "--out", tmp_path / "out", "--print",
                             "full", "--no-plots")
    assert code == 0, err
    [row] = [line for line in out.splitlines() if line.startswith(f"| {AMD} ")]
    assert "jax: cpu 290; tensorflow: cpu 450" in row


def test_speedup_plot_survives_a_single_pair_rounding_below_its_range(tmp_path, capsys):
    """One pair whose geometric mean rounds below the ratio itself: the plot still draws."""
    benchmarks = [make_fixtures.make_benchmark(
        extra(AMD, f"mlp-cpu-b128-{precision}-xla", precision=precision,
              samples_per_second=rate), [1.0, 1.01, 0.99])
        for precision, rate in (("fp32", 137.0), ("bf16", 1.0))]  # ratio 1/137
    write_run(tmp_path / "in", AMD, "2026-11-27T07:00:00+00:00", benchmarks)
    code, out, err = run_cli(capsys, tmp_path / "in", "--out", tmp_path / "out")
    assert code == 0, err
    assert (tmp_path / "out" / "speedup_precision_xla.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- schema 2

@pytest.fixture(scope="module")
def results_v2():
    log = WarningLog()
    loaded = load_results([RESULTS_V2], log)
    assert log.messages == []
    return loaded


def test_schema2_fields_reach_the_long_form(results_v2):
    frame = results_v2.benchmarks
    for column in ("contention", "contended", "concurrent", "compute_dtype", "peak_gflops",
                   "peak_fraction", "energy_joules", "samples_per_joule", "watts",
                   "energy_source", "test_accuracy", "data", "run_group", "repeat",
                   "run_status", "best_peak_gflops", "peak_share"):
        assert column in frame.columns, column
    assert set(frame["data"]) == {"fashion-mnist"}
    assert set(frame["run_status"]) == {"complete", "incomplete"}
    group = frame[frame["run_group"].notna()]
    assert sorted(set(group["repeat"])) == ["1/3", "2/3", "3/3"]
    contended = frame[frame["contended"] == True]  # noqa: E712  (None = not measured)
    assert sorted(contended["run"]) == ["0002_20261201-070200.json", "0003_20261201-070400.json"]
    assert frame["concurrent"].eq(True).sum() == 3  # the GPU run held no machine lock


def test_schema1_rows_get_the_defaults_of_a_schema1_run(results):
    frame = results.benchmarks
    assert set(frame["data"]) == {"fashion-mnist"} and set(frame["run_status"]) == {"complete"}
    assert frame["contended"].isna().all()  # not measured: neither marked nor clean
    dtypes = frame.groupby("precision")["compute_dtype"].unique().map(list).to_dict()
    assert dtypes == {"bf16": ["bfloat16"], "fp16": ["float16"], "fp32": ["float32"]}


def test_synthetic_runs_are_left_out_unless_asked(tmp_path, capsys):
    code, out, err = run_cli(capsys, RESULTS_V2, "--out", tmp_path / "a", "--print", "full",
                             "--no-plots")
    assert code == 0 and warning_lines(err) == []
    notes = [line for line in out.splitlines() if "synthetic" in line and "wrote" not in line]
    assert notes == ["Note: 1 run on synthetic data left out (`--include-synthetic` includes it)."]
    assert "synthetic/" not in (tmp_path / "a" / "report.csv").read_text()
    code, out, err = run_cli(capsys, RESULTS_V2, "--out", tmp_path / "b", "--print", "full",
                             "--no-plots",
                             "--include-synthetic")
    assert code == 0 and "synthetic data left out" not in out.split("## Machines")[0]
    assert "| synthetic " in out  # the Runs table lists it, data = synthetic


def test_peak_share_divides_by_the_best_calibration_of_the_dtype(results_v2):
    frame = results_v2.benchmarks
    tf = frame[(frame["backend"] == "tensorflow") & (frame["case"] == "mlp-cpu-b128-fp32-xla")]
    # The JAX run measured float32 at 170 GFLOP/s, TensorFlow at 150: every backend's
    # share is of 170, not of its own figure.
    assert set(tf["best_peak_gflops"]) == {170.0}
    assert tf["peak_share"].to_numpy() == pytest.approx((tf["gflops"] / 170.0).to_numpy())
    assert (tf["peak_fraction"] > tf["peak_share"]).all()  # the run-time share used 150
    gpu = frame[frame["device"] == "gpu:0"].set_index("precision")
    assert gpu.loc["bf16", "best_peak_gflops"] == 400000.0
    assert np.isnan(gpu.loc["fp16", "best_peak_gflops"])  # no float16 calibration: no share
    assert np.isnan(gpu.loc["fp16", "peak_share"])


def test_peak_table_marks_shares_above_100_percent(results_v2):
    table = tables.render(tables.PEAK, select_newest(results_v2.benchmarks))
    assert _cell_row(table, "train", "mlp", "128", "bf16")[6].startswith("191%‼")
    assert "‼ = above 100%" in table.splitlines()[0]
    assert _cell_row(table, "train", "mlp", "512", "fp16")[7] == "— (2.05 TFLOP/s)‡"
    assert "exact" in table.splitlines()[0] and "6 x MACs" in table.splitlines()[0]


def test_contended_and_concurrent_cells_are_marked_with_a_legend(results_v2):
    newest = select_newest(results_v2.benchmarks)
    inference = tables.render(tables.INFERENCE, newest, f"{AMD}/cpu")
    assert _cell_row(inference, "mlp", "1024")[5].endswith("†")
    assert "† = contended" in inference.splitlines()[0]
    train = tables.render(tables.TRAINING, newest, f"{AMD}/cpu")
    assert _cell_row(train, "mlp", "512", "fp32")[6].endswith("‡")
    assert "‡ = concurrent" in train.splitlines()[0] and "†" not in train
    # Without marked rows the caption carries no legend (the schema-1 fixtures).
    assert "contended" not in tables.render(
        tables.TRAINING, newest[newest["machine_id"] == AMD].iloc[:0], None)


def test_strict_report_fails_on_contended_rows(tmp_path, capsys):
    code, out, err = run_cli(capsys, RESULTS_V2, "--out", tmp_path, "--no-plots", "--strict")
    assert code == 1 and "contended or concurrent" in err and warning_lines(err) == []
    assert run_cli(capsys, RESULTS_V2, "--out", tmp_path, "--no-plots")[0] == 0
    assert run_cli(capsys, RESULTS, "--out", tmp_path, "--no-plots", "--strict")[0] == 0


def test_energy_unavailable_is_said_never_zero(results_v2):
    table = tables.render(tables.ENERGY, select_newest(results_v2.benchmarks))
    assert _cell_row(table, "train", "mlp", "128", "fp32", "yes", "jax")[6] == "unavailable"
    assert _cell_row(table, "train", "mlp", "512", "fp32")[7] == "21.5 J, 2.80k/J, 310 W (nvml)‡"
    assert " 0 J" not in table
    assert tables.render(tables.ENERGY, select_newest(load_results([RESULTS], WarningLog())
                                                      .benchmarks)) is None


def test_runs_table_marks_incomplete_runs(results_v2, capsys, tmp_path):
    text = tables.render(lists.RUNS, results_v2.runs)
    row = _cell_row(text, "0005_20261201-090000.json")
    assert row[5] == "incomplete (died; recovered)"
    assert _cell_row(text, "0002_20261201-070200.json")[6] == "20261201-070000-4242 (2/3)"
    code, out, err = run_cli(capsys, RESULTS_V2, "--out", tmp_path, "--no-plots")
    assert "Note: run `0005_20261201-090000.json` of `amd-epyc-2c` is incomplete" in out


def test_run_spread_leaves_contended_runs_out(results_v2):
    spread = run_spread(results_v2.benchmarks).set_index("case")
    # Four runs of the fp32 case, one contended: three count; the JAX case has one run.
    assert spread.loc["mlp-cpu-b128-fp32-xla", "runs"] == 3
    assert "mlp-cpu-b128-fp32-xla-jax" not in spread.index
    row = spread.loc["mlp-cpu-b128-bf16-xla"]
    assert row["spread"] == pytest.approx(row["slowest"] / row["fastest"] - 1)


def test_whole_schema2_report_matches_expected(tmp_path, capsys):
    code, out, err = run_cli(capsys, RESULTS_V2, "--out", tmp_path, "--no-plots")
    assert code == 0
    check_expected("expected_report_schema2.md", (tmp_path / "REPORT.md").read_text())


def test_report_and_gate_recover_orphaned_journals_first(tmp_path, capsys, monkeypatch):
    import bench.report.modes as report_module

    calls = []

    def fake_recover(paths, log=None):
        calls.append([Path(p) for p in paths])
        log("published a journal")
        return []

    monkeypatch.setattr(report_module, "recover_orphans", fake_recover)
    code, out, err = run_cli(capsys, RESULTS, "--out", tmp_path, "--no-plots")
    assert code == 0 and calls == [[RESULTS]] and "note: published a journal" in err
    code, out, err = run_cli(capsys, "--compare", RESULTS / AMD, tmp_path / "nothing-here")
    assert calls[-1] == [RESULTS / AMD] and code == 2  # only paths that exist


def test_report_publishes_the_journal_of_a_dead_run_marked_incomplete(tmp_path, capsys):
    """A run killed after two cases: the report publishes its journal and marks the run."""
    import socket
    import subprocess

    source = json.loads((RESULTS_V2 / AMD / "0001_20261201-070000.json").read_text())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid now names no process
    folder = tmp_path / "results" / AMD
    folder.mkdir(parents=True)
    journal = folder / f".journal-20261201-070000-{child.pid}.jsonl"
    lines = [{"kind": "header", "pid": child.pid, "host": socket.gethostname(),
              "process_start": 1.0, "machine_info": source["machine_info"],
              "commit_info": source["commit_info"], "datetime": source["datetime"],
              "version": source["version"]}]
    lines += [{"kind": "benchmark", "entry": entry} for entry in source["benchmarks"][:2]]
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))

    code, out, err = run_cli(capsys, tmp_path / "results", "--out", tmp_path / "out",
                             "--print", "full", "--no-plots")
    assert code == 0 and not journal.exists()
    [published] = folder.glob("*.json")
    assert "recovered" in err and str(published) in err
    assert f"Note: run `{published.name}` of `{AMD}` is incomplete" in out
    assert _cell_row(out, published.name)[5] == "incomplete (died; recovered)"
    assert "mlp-cpu-b128-bf16-xla" in (tmp_path / "out" / "report.csv").read_text()


# --------------------------------------------------------------------------- the row schema

def _recorded_figures() -> dict[str, set[str]]:
    """Per bench suite file: the keyword figures its record(...) calls pass."""
    import ast

    found = {}
    for path in sorted((FIXTURES.parents[1] / "bench" / "suites").glob("test_*.py")):
        calls = [node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "record"]
        found[path.name] = {k.arg for call in calls for k in call.keywords} - {
            "state", "energy_seconds"}
    return found


def test_every_field_the_suites_write_is_in_the_row_schema():
    from bench.harness.cases import build_matrix

    figures = _recorded_figures()
    assert len(figures) >= 6 and all(figures.values())  # the scan found the suites' calls
    for name, fields in figures.items():
        assert fields <= set(schema.COLUMN_TYPES), (name, fields - set(schema.COLUMN_TYPES))
    for case in build_matrix("quick", ["cpu", "gpu:0"]):
        assert list(case.fields()) == list(schema.CASE_FIELDS)
        schema.check_row(case.fields())  # each of the right type
    required = [name for name, (_, needed) in schema.COLUMN_TYPES.items() if needed]
    assert set(required) <= set(schema.CASE_FIELDS)  # the case fills every required field


def test_record_refuses_a_field_of_the_wrong_type():
    from types import SimpleNamespace

    from bench.harness.cases import Case
    from bench.measure.rounds import record

    case = Case("train", "mlp", "cpu", 128)
    benchmark = SimpleNamespace(extra_info={})
    record(benchmark, case, samples_per_second=np.float64(1000.0), steps_per_round=40)
    assert benchmark.extra_info["compute_dtype"] == "float32"
    with pytest.raises(ValueError, match="'steps_per_round' = 40.5 is not of type int"):
        record(SimpleNamespace(extra_info={}), case, steps_per_round=40.5)
    with pytest.raises(ValueError, match="'reached' = 'yes' is not of type bool"):
        record(SimpleNamespace(extra_info={}), case, reached="yes")


def test_loader_gives_each_column_its_schema_type(results, results_v2):
    frame = results_v2.benchmarks
    assert frame["xla"].dtype == bool and frame["batch_size"].dtype.kind == "i"
    for name in ("samples_per_second", "energy_joules", "watts", "contention"):
        assert frame[name].dtype == float, name
    assert str(frame["contended"].dtype) == "boolean"
    old = results.benchmarks  # schema 1: contention not measured, so None, not False
    assert str(old["contended"].dtype) == "boolean" and old["contended"].isna().all()
    assert str(old["reached"].dtype) == "boolean" and old["reached"].notna().sum() == 7


def test_a_newer_schema_says_to_update_the_checkout():
    document = json.loads((RESULTS / AMD / "0001_20261120-070000.json").read_text())
    document["machine_info"]["fashion_bench"]["schema"] = schema.SCHEMA + 1
    problem = schema.file_problem(document)
    assert problem.startswith(f"newer schema {schema.SCHEMA + 1} ")
    assert "update this checkout" in problem
    document["machine_info"]["fashion_bench"]["schema"] = schema.SCHEMA
    assert schema.file_problem(document) is None


def test_relative_to_and_its_old_name_baseline_agree(tmp_path, capsys):
    outputs = [run_cli(capsys, RESULTS, "--out", tmp_path / option, "--no-plots", option,
                       f"{INTEL}/gpu:0")[1] for option in ("--relative-to", "--baseline")]
    assert outputs[0] == outputs[1].replace(str(tmp_path / "--baseline"),
                                            str(tmp_path / "--relative-to"))
    assert f"Speedups are relative to `{INTEL}/gpu:0`" in outputs[0]


# --------------------------------------------------------------------------- history

STEPPED = "mlp-cpu-b1024-fp32-xla"
HISTORY_CASES = {"mlp-cpu-b128-fp32-xla": 0.8, STEPPED: 0.3, "cnn-cpu-b128-fp32-noxla": 2.0}


def _history_files(folder: Path, step_at: int | None, commits: int = 8, runs: int = 3,
                   run_noise: float = 0.05, seed: int = 11) -> Path:
    """``runs`` runs at each of ``commits`` commits; from commit ``step_at`` on, STEPPED
    takes 1.3 times as long. Older commits were measured last (the run times run
    backwards), so only the commit times put the runs in order."""
    rng = np.random.default_rng(seed)
    for commit in range(commits):
        for run in range(runs):
            benchmarks = []
            for case, seconds in HISTORY_CASES.items():
                level = seconds * np.exp(rng.normal(0.0, run_noise))
                if case == STEPPED and step_at is not None and commit >= step_at:
                    level *= 1.3
                benchmarks.append(make_fixtures.make_benchmark(
                    extra(AMD, case), [float(x) for x in level * np.exp(rng.normal(0, 0.01, 5))]))
            index = (commits - commit) * runs + run
            path = write_run(folder, AMD, f"2026-12-{1 + index // 24:02d}T{index % 24:02d}:00:00"
                             f"+00:00", benchmarks, name=f"{index:04d}_run.json")
            document = json.loads(path.read_text())
            document["commit_info"].update(id=f"c{commit:06d}".ljust(40, "0"),
                                           time=f"2026-11-{10 + commit}T12:00:00+00:00")
            path.write_text(json.dumps(document))
    return folder


def test_history_finds_a_30_percent_step_at_its_commit(tmp_path):
    from bench.report.history import find_steps, history_frame

    history = history_frame(load_results([_history_files(tmp_path, step_at=5)], WarningLog()))
    assert list(history.drop_duplicates("position")["commit"]) == [
        f"c{commit:06d}" for commit in range(8)]  # commit time order, not run time order
    steps = find_steps(history, threshold=0.10)
    assert len(steps) == 1, steps
    [step] = steps.to_dict("records")
    assert (step["case"], step["commit"], step["runs_before"], step["runs_after"]) == (
        STEPPED, "c000005", 9, 9)
    assert step["ratio"] == pytest.approx(1.3, rel=0.1) and step["p_value"] < step["p_needed"]


def test_history_of_flat_noisy_runs_finds_no_step(tmp_path):
    from bench.report.history import find_steps, history_frame

    for seed in range(3):
        folder = _history_files(tmp_path / str(seed), step_at=None, run_noise=0.10, seed=seed)
        history = history_frame(load_results([folder], WarningLog()))
        spreads = history["runs"].map(lambda runs: max(runs) / min(runs) - 1)
        assert spreads.median() > 0.1  # runs of one commit differ by 10% and more
        assert find_steps(history, threshold=0.10).empty


def test_history_command_prints_the_steps_and_draws_a_panel_per_suite(tmp_path, capsys):
    folder = _history_files(tmp_path / "in", step_at=5)
    code, out, err = run_cli(capsys, "--history", folder, "--out", tmp_path / "out")
    assert code == 0 and warning_lines(err) == []
    assert "over 8 commits in commit time order: c000000 (2026-11-10 12:00)" in out
    row = _cell_row(out, AMD, "train", STEPPED)
    assert row[3:6] == ["c000005", "2026-11-15 12:00", "slower"] and row[-1] == "9/9"
    png = tmp_path / "out" / f"history-{AMD}.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and f"wrote {png}" in out


def test_history_over_one_commit_draws_and_finds_no_step(tmp_path, capsys):
    """The stored fixtures are runs of one commit: nothing to compare, still a plot."""
    code, out, err = run_cli(capsys, "--history", RESULTS, "--out", tmp_path)
    assert code == 0 and "No step found" in out and "over 1 commit " in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"history-{AMD}.png",
                                                         f"history-{INTEL}.png"]
    with pytest.raises(SystemExit) as exit_info:  # a history reads PATHS, not two sides
        main(["--history", "--compare", str(RESULTS), str(RESULTS)])
    assert exit_info.value.code == 2


# --------------------------------------------------------------------------- schema 3

def _schema3_runs(folder: Path) -> list[Path]:
    """Two runs of one machine in schema 3: a budget-stopped row, a contended one, rows
    with the canary's list, a plan and a left-out case."""
    paths = []
    for number in (1, 2):
        rows = [make_fixtures.make_benchmark(extra(
            AMD, f"mlp-cpu-b{batch}-fp32-xla", suite="inference", batch=batch,
            samples_per_second=10_000.0 * batch ** 0.5 * (1 + 0.1 * number), rounds=5,
            ci_halfwidth=0.061 if batch == 1024 else 0.012,
            stop_reason="budget" if batch == 1024 else "converged",
            contended=batch == 128, canary_seconds=[0.002, 0.0021, 0.0019, 0.002, 0.002],
            canary_spread=0.1, calls_per_round=4, case_seconds=3.5),
            [0.05 * number, 0.051 * number, 0.049 * number, 0.05 * number, 0.05 * number])
            for batch in (1, 128, 1024)]
        path = write_run(folder, AMD, f"2026-12-0{number}T10:00:00+00:00", rows,
                         name=f"000{number}_run.json")
        document = json.loads(path.read_text())
        document["machine_info"]["fashion_bench"].update(schema=3, plan={
            "cases": 4, "left_out": 1, "estimate_seconds": 300.0, "budget_seconds": 600.0,
            "elapsed_seconds": 270.0, "precision_target": 0.02, "round_seconds": 0.5})
        document["fashion_bench_not_run"] = [{
            "case": "cnn-cpu-b128-fp32-xla", "suite": "train",
            "reason": "over the budget of 10.0 min: the plan fits without it"}]
        path.write_text(json.dumps(document))
        paths.append(path)
    return paths


def test_schema3_marks_budget_figures_lists_not_run_and_states_both_spreads(tmp_path, capsys):
    _schema3_runs(tmp_path / "res")
    results = load_results([tmp_path / "res"], WarningLog())
    assert results.benchmarks["canary_seconds"].map(len).tolist() == [5] * 6  # lists kept
    code, out, err = run_cli(capsys, tmp_path / "res", "--out", tmp_path / "report")
    assert code == 0 and warning_lines(err) == [], err
    report = (tmp_path / "report" / "REPORT.md").read_text()
    budget_cells = [line for line in report.splitlines() if "| 1024 " in line]
    assert any("384k/s ±2.0% (99%: ±6.1%)§" in line for line in budget_cells), budget_cells
    assert "§ = stopped on the budget" in report and "† = contended" in report
    section = report.split("## Not run", 1)[1].split("##", 1)[0]
    assert "cnn-cpu-b128-fp32-xla" in section and "over the budget of 10.0 min" in section
    assert "est. 5.0 min, took 4.5 min, budget 10.0 min, 1 left out" in report
    spread = report.split("## Run-to-run spread", 1)[1].split("##", 1)[0]
    assert "±1.2%" in spread and "within a run" in spread  # beside the run-to-run spread
    assert (tmp_path / "report" / "throughput_vs_batch.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_lines_flag_the_points_the_tables_mark(tmp_path):
    from bench.report.plots import throughput_lines

    _schema3_runs(tmp_path / "res")
    frame = select_runs(load_results([tmp_path / "res"], WarningLog()).benchmarks, False)
    [line] = throughput_lines(frame, "inference")
    assert line["batch_sizes"] == [1, 128, 1024]
    assert line["spoiled"] == [False, True, False] and line["budget"] == [False, False, True]


def test_a_schema2_file_has_no_plan_and_nothing_left_out(results_v2):
    runs = load_results([RESULTS_V2], WarningLog()).runs
    assert all(run.plan is None and run.not_run == [] for run in runs)
    assert tables.render(lists.NOT_RUN, runs) is None


def test_every_ratio_plot_has_a_log_axis_and_its_legend_off_the_data(newest):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from bench.report import plots

    speedups = plots._speedup_figure(Figure, newest)
    panels = [a for a in speedups.axes if a.has_data()]
    assert panels and all(a.get_yscale() == "log" for a in panels)
    assert all(a.get_legend() is None for a in speedups.axes) and speedups.legends
    throughput = plots._throughput_figure(Figure, newest)
    assert all(a.get_yscale() == "log" and a.get_xscale() == "log"
               for a in throughput.axes if a.has_data())
    pairs = lists.precision_xla_pairs(newest)
    assert (pairs["low"] <= pairs["ratio"]).all() and (pairs["ratio"] <= pairs["high"]).all()
    points = sum(len(line.get_xdata()) for a in panels for line in a.get_lines()
                 if line.get_marker() not in (None, "None", "", "_"))
    assert points >= len(pairs)  # one point per pair, none averaged across cases


def test_a_fleets_intro_names_a_few_machines_and_counts_its_unfinished_runs():
    from bench.report import modes
    from bench.report.loader import ResultSet, Run
    from bench.report.text import listed

    assert listed(["a", "b"]) == "`a`, `b`"
    assert listed(map(str, range(20))) == ", ".join(f"`{i}`" for i in range(8)) + " and 12 more"
    when = pd.Timestamp(2026, 1, 1, tz="UTC")

    def runs(count: int) -> list:
        return [Run(Path(f"r/m{i % 10}/{i}.json"), f"m{i % 10}", when, {}, 3, [],
                    status="interrupted" if i % 3 else "incomplete") for i in range(count)]

    few = modes.report_notes(ResultSet(pd.DataFrame(), pd.DataFrame(), runs(4)))
    assert len(few) == 4 and "run `1.json` of `m1` was interrupted" in few[1]
    many = modes.report_notes(ResultSet(pd.DataFrame(), pd.DataFrame(), runs(30)))
    assert many == [
        "20 runs on 10 machines (`m0`, `m1`, `m2`, `m3`, `m4`, `m5`, `m6`, `m7` and 2 more) "
        "were interrupted (Ctrl-C): each holds the cases finished before (see Runs).",
        "10 runs on 10 machines (`m0`, `m1`, `m2`, `m3`, `m4`, `m5`, `m6`, `m7` and 2 more) "
        "are incomplete (their process died; the cases finished were recovered from the "
        "journal): each holds the cases finished before (see Runs)."]
