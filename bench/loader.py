"""Find, validate and load the bench suites' result files into pandas.

A result file is what ``pytest --benchmark-json`` writes, with the fashion-bench
block ``machine_info.fashion_bench`` (machine id, devices, calibration) and the list
``fashion_bench_failures`` of cases that raised. Files are kept under
``results/<machine_id>/NNNN_<YYYYmmdd-HHMMSS>.json`` (runs on synthetic data under
``results/synthetic/<machine_id>/``); the loader only reads them.

Schema 1 and 2 are read. Schema 2 adds, per run, ``data`` (``fashion-mnist`` or
``synthetic``), ``run_group``/``repeat`` (runs made by one ``--bench-repeat N``),
``calibration_gflops_by_dtype`` and the top-level ``fashion_bench_status``; per row,
``contention``/``contended``/``concurrent``, ``compute_dtype``, ``peak_gflops``, the
energy figures and ``test_accuracy``. Schema-1 files get the defaults a schema-1 run
implies (real data, complete, float32 calibration only, contention not measured).

Bad input never raises: each skipped file gives exactly one warning line that names
it (see :class:`WarningLog`), so a report over a folder with one broken file still
covers everything else.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

#: The ``machine_info.fashion_bench.schema`` versions this module reads; the last is the newest.
SUPPORTED_SCHEMAS = (1, 2)
SUPPORTED_SCHEMA = SUPPORTED_SCHEMAS[-1]

#: ``data`` of runs on real Fashion-MNIST (also what schema-1 files mean) and of the
#: harness's random stand-in, which the report leaves out unless asked.
REAL_DATA = "fashion-mnist"
SYNTHETIC_DATA = "synthetic"
#: Top-level ``fashion_bench_status`` of a result file (absent in old files: complete).
RUN_COMPLETE = "complete"
RUN_STATUSES = (RUN_COMPLETE, "interrupted", "incomplete")

#: The dtype a case computes in, for rows that do not say (schema 1): its precision.
COMPUTE_DTYPE_OF_PRECISION = {
    "fp32": "float32", "fp16": "float16", "bf16": "bfloat16",
    "float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16",
}

#: Fields of ``machine_info.fashion_bench`` without which a file cannot be placed.
REQUIRED_MACHINE_FIELDS = ("schema", "machine_id")

#: ``extra_info`` fields every benchmark must carry (the table rows and columns).
#: ``device_kind`` is not among them: when absent it follows from ``device``.
REQUIRED_EXTRA_FIELDS = (
    "case", "suite", "model", "backend", "device", "batch_size", "precision", "xla",
)

#: One result per (machine, suite, case) and run; the case id already names the device.
CASE_KEY = ["machine_id", "suite", "case"]

#: Columns that lead the long-form table; the other ``extra_info`` fields follow.
LEADING_COLUMNS = [
    "machine_id", "label", "run", "run_file", "run_datetime", "run_status", "data",
    "run_group", "repeat",
    "suite", "case", "model", "backend", "device", "device_kind", "device_name",
    "batch_size", "precision", "compute_dtype", "xla", "status",
    "contended", "concurrent", "contention",
]
STATS_COLUMNS = [
    "median", "iqr", "q1", "q3", "stddev", "mean", "min", "max", "rounds", "iterations",
]
FAILURE_COLUMNS = [
    "machine_id", "run", "run_file", "run_datetime", "suite", "case", "name", "error",
]

#: Metrics proportional to the time of one round: pooled by rescaling to the pooled median.
TIME_LIKE_METRICS = ("seconds_per_epoch", "seconds_per_batch")
#: Metrics inversely proportional to the time of one round (work per round / time).
RATE_LIKE_METRICS = ("samples_per_second", "gflops", "peak_fraction", "peak_share")
#: Row flags that spoil a row if any pooled run had them.
SPOILED_FLAGS = ("contended", "concurrent")

_FILENAME_TIME = re.compile(r"(\d{8}-\d{6})")


class WarningLog:
    """Collects warnings and prints each at once as one line on stderr.

    ``--strict`` turns a non-empty log into exit status 2 at the end of the run.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warn(self, where: object, message: str) -> None:
        """Record and print ``warning: <where>: <message>``; ``where`` names the file."""
        line = f"warning: {where}: {message}"
        self.messages.append(line)
        # sys.stderr is looked up at call time so that redirected streams see it.
        print(line, file=sys.stderr)

    def __len__(self) -> int:
        return len(self.messages)


@dataclasses.dataclass
class Run:
    """One result file that passed validation.

    ``status`` is the file's ``fashion_bench_status`` (``complete``, ``interrupted`` for
    a session stopped by Ctrl-C, ``incomplete`` for one recovered from the journal of a
    process that died); ``data`` is ``fashion-mnist`` or ``synthetic``.
    """

    path: Path
    machine_id: str
    datetime: pd.Timestamp
    machine: dict
    benchmarks: list[dict]
    failures: list[dict]
    status: str = RUN_COMPLETE
    data: str = REAL_DATA

    @property
    def run_group(self) -> str | None:
        group = self.machine.get("run_group")
        return str(group) if group else None

    @property
    def repeat(self) -> str | None:
        """``"2/3"`` for repeat 2 of 3 of a ``--bench-repeat`` group, else None."""
        repeat = self.machine.get("repeat")
        if isinstance(repeat, list) and len(repeat) == 2:
            return f"{repeat[0]}/{repeat[1]}"
        return None


@dataclasses.dataclass
class ResultSet:
    """Everything loaded from a set of paths.

    ``benchmarks`` is the long form: one row per benchmark per run, the raw rounds
    kept as a list in ``raw_rounds``. ``machines`` holds one row per machine id,
    described by its newest run. ``synthetic_left_out`` counts the runs on synthetic
    data that were not loaded (``include_synthetic`` loads them).
    """

    benchmarks: pd.DataFrame
    failures: pd.DataFrame
    machines: pd.DataFrame
    runs: list[Run]
    synthetic_left_out: int = 0

    @property
    def empty(self) -> bool:
        return self.benchmarks.empty and self.failures.empty


def find_result_files(paths: Iterable[str | Path], log: WarningLog) -> list[Path]:
    """Expand files and folders (searched recursively for ``*.json``), in sorted order.

    A folder without any ``*.json`` and a path that does not exist each give a warning.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.json") if p.is_file())
            if not files:
                log.warn(path, "no result files (*.json) in this folder")
        elif path.is_file():
            files = [path]
        else:
            log.warn(path, "does not exist")
            files = []
        for file in files:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(file)
    return found


def _run_datetime(document: dict, path: Path) -> pd.Timestamp:
    """The run's time: the file's ``datetime``, else the stamp in its name, else its mtime."""
    stamp = document.get("datetime")
    if isinstance(stamp, str):
        try:
            when = pd.Timestamp(stamp)
        except (ValueError, TypeError, OverflowError):
            when = None
        if when is not None and not pd.isna(when):
            return when.tz_convert("UTC") if when.tzinfo else when.tz_localize("UTC")
    match = _FILENAME_TIME.search(path.name)
    if match:
        try:
            when = pd.to_datetime(match.group(1), format="%Y%m%d-%H%M%S")
            return pd.Timestamp(when).tz_localize("UTC")
        except ValueError:
            pass
    return pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC")


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _missing_benchmark_fields(benchmark: object) -> list[str]:
    """Required fields a benchmark entry lacks or holds with the wrong type."""
    if not isinstance(benchmark, dict):
        return ["benchmark entry"]
    extra = benchmark.get("extra_info")
    stats = benchmark.get("stats")
    missing = []
    if not isinstance(extra, dict):
        missing.append("extra_info")
    else:
        for field in REQUIRED_EXTRA_FIELDS:
            value = extra.get(field)
            if field == "batch_size":
                valid = isinstance(value, int) and not isinstance(value, bool) and value > 0
            elif field == "xla":
                valid = isinstance(value, bool)
            else:
                valid = isinstance(value, str) and value != ""
            if not valid:
                missing.append(f"extra_info.{field}")
    if not isinstance(stats, dict):
        missing.append("stats")
    else:
        median = stats.get("median")
        if not _is_number(median) or median <= 0:
            missing.append("stats.median")
        data = stats.get("data")
        if data is not None and not (isinstance(data, list)
                                     and all(_is_number(x) and x >= 0 for x in data)):
            missing.append("stats.data")
    return missing


def _text(value: object) -> str:
    """A failure's field as text ("" when absent)."""
    return "" if value is None else str(value)


def read_run(path: Path, log: WarningLog) -> Run | None:
    """Read and validate one result file; on any problem warn once and return None."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        log.warn(path, "is not JSON (not UTF-8 text); skipped")
        return None
    except OSError as error:
        log.warn(path, f"cannot be read ({error.strerror or error}); skipped")
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        log.warn(path, f"is not JSON ({error.msg} at line {error.lineno}); skipped")
        return None

    if not (isinstance(document, dict)
            and isinstance(document.get("machine_info"), dict)
            and isinstance(document.get("benchmarks"), list)):
        log.warn(path, "is JSON but not a pytest-benchmark result file "
                       "(no machine_info and benchmarks); skipped")
        return None
    machine = document["machine_info"].get("fashion_bench")
    if machine is None:
        log.warn(path, "is a pytest-benchmark file from some other project "
                       "(machine_info has no fashion_bench block); skipped")
        return None
    if not isinstance(machine, dict):
        log.warn(path, "older/unknown schema "
                       "(machine_info.fashion_bench is not an object); skipped")
        return None
    schema = machine.get("schema")
    readable = f"this report reads schemas {SUPPORTED_SCHEMAS[0]}-{SUPPORTED_SCHEMA}"
    if (not isinstance(schema, bool) and isinstance(schema, int)
            and schema > SUPPORTED_SCHEMA):
        log.warn(path, f"newer schema {schema} ({readable}): written by a newer "
                       f"fashion-bench; update this checkout (git pull, or pip install -U) "
                       f"to read it; skipped")
        return None
    if isinstance(schema, bool) or schema not in SUPPORTED_SCHEMAS:
        log.warn(path, f"older/unknown schema (fashion_bench.schema is {schema!r}; "
                       f"{readable}); skipped")
        return None
    missing = [f"fashion_bench.{f}" for f in REQUIRED_MACHINE_FIELDS if f not in machine]
    if "machine_id" in machine and not (isinstance(machine["machine_id"], str)
                                        and machine["machine_id"].strip()
                                        and "/" not in machine["machine_id"]):
        missing.append("fashion_bench.machine_id (a name without '/')")
    for benchmark in document["benchmarks"]:
        missing += [f for f in _missing_benchmark_fields(benchmark) if f not in missing]
    failures_raw = document.get("fashion_bench_failures", [])
    if not isinstance(failures_raw, list) or not all(isinstance(f, dict) for f in failures_raw):
        missing.append("fashion_bench_failures (a list of objects)")
    run_status = document.get("fashion_bench_status", RUN_COMPLETE)
    if run_status not in RUN_STATUSES:
        missing.append(f"fashion_bench_status (one of {', '.join(RUN_STATUSES)})")
    data = machine.get("data") or REAL_DATA
    if not isinstance(data, str):
        missing.append("fashion_bench.data (a string)")
    if missing:
        log.warn(path, f"older/unknown schema (missing or invalid {', '.join(missing)}); skipped")
        return None

    machine_id = str(machine["machine_id"])
    benchmarks = []
    failures = [
        {"suite": _text(f.get("suite")), "case": _text(f.get("case")),
         "name": _text(f.get("name")), "error": _text(f.get("error"))}
        for f in failures_raw
    ]
    for benchmark in document["benchmarks"]:
        status = benchmark["extra_info"].get("status", "ok")
        if status != "ok":
            # A benchmark that ran but reports a failed status belongs with the failures.
            extra = benchmark["extra_info"]
            failures.append({"suite": extra["suite"], "case": extra["case"],
                             "name": benchmark.get("name"), "error": f"status {status}"})
        else:
            benchmarks.append(benchmark)

    if not benchmarks:
        if failures:
            log.warn(path, f"every case failed ({len(failures)} failure"
                           f"{'s' if len(failures) != 1 else ''}; listed in the report)")
        else:
            log.warn(path, "holds no benchmarks and no failures; skipped")
            return None
    return Run(path=path, machine_id=machine_id, datetime=_run_datetime(document, path),
               machine=machine, benchmarks=benchmarks, failures=failures, status=run_status,
               data=data)


def device_kind(device: str) -> str:
    """``cpu`` -> ``CPU``, ``gpu:0`` -> ``GPU``, ``tpu:1`` -> ``TPU``."""
    return device.split(":", 1)[0].upper()


def compute_dtype_of(row: dict) -> str | None:
    """The dtype a row computes in: its ``compute_dtype``, else its precision's."""
    dtype = row.get("compute_dtype")
    if isinstance(dtype, str) and dtype:
        return dtype
    return COMPUTE_DTYPE_OF_PRECISION.get(str(row.get("precision")))


def _flag(value: object) -> bool | None:
    """A row flag: True/False as recorded, None where it was not measured (schema 1)."""
    return bool(value) if isinstance(value, (bool, np.bool_)) else None


def _benchmark_row(run: Run, benchmark: dict) -> dict:
    """Flatten one benchmark into a long-form row."""
    extra = benchmark["extra_info"]
    stats = benchmark["stats"]
    raw = stats.get("data")
    raw_rounds = [float(x) for x in raw] if isinstance(raw, list) else []
    row = dict(extra)
    if not isinstance(row.get("device_kind"), str):
        row["device_kind"] = device_kind(extra["device"])
    calibration = _calibration(run.machine)
    # A session that ran beside another one says so in its machine block and its rows.
    concurrent = _flag(extra.get("concurrent"))
    if run.machine.get("concurrent") is True:
        concurrent = True
    row.update({
        "machine_id": run.machine_id,
        "label": f"{run.machine_id}/{extra['device']}",
        "run": run.path.name,
        "run_file": str(run.path),
        "run_datetime": run.datetime,
        "run_status": run.status,
        "data": run.data,
        "run_group": run.run_group,
        "repeat": run.repeat,
        "compute_dtype": compute_dtype_of(extra),
        "contended": _flag(extra.get("contended")),
        "concurrent": concurrent,
        "name": benchmark.get("name"),
        "group": benchmark.get("group"),
        "calibration_gflops": calibration.get(extra["device"]),
        "raw_rounds": raw_rounds,
    })
    for column in STATS_COLUMNS:
        value = stats.get(column)
        row[column] = value if isinstance(value, (int, float)) else np.nan
    if not isinstance(stats.get("rounds"), int):
        row["rounds"] = len(raw_rounds) if raw_rounds else 1
    return row


def _calibration(machine: dict) -> dict:
    """``calibration_gflops`` when it is an object, else empty (it is optional)."""
    calibration = machine.get("calibration_gflops")
    return dict(calibration) if isinstance(calibration, dict) else {}


def calibration_by_dtype(machine: dict) -> dict[str, dict[str, float]]:
    """``{device: {dtype: GFLOP/s}}`` of one run.

    Schema 2 has ``calibration_gflops_by_dtype``; ``calibration_gflops`` (every schema)
    is the float32 figure.
    """
    rates: dict[str, dict[str, float]] = {}
    by_dtype = machine.get("calibration_gflops_by_dtype")
    if isinstance(by_dtype, dict):
        for device, values in by_dtype.items():
            if isinstance(values, dict):
                for dtype, value in values.items():
                    if _is_number(value) and value > 0:
                        rates.setdefault(str(device), {})[str(dtype)] = float(value)
    for device, value in _calibration(machine).items():
        if _is_number(value) and value > 0:
            rates.setdefault(str(device), {}).setdefault("float32", float(value))
    return rates


def best_calibration(runs: Iterable[Run]) -> dict[str, dict[str, dict[str, float]]]:
    """``{machine_id: {device: {dtype: best GFLOP/s}}}``: the denominator of peak shares.

    The best matmul rate measured on a device in a dtype by any backend in any run of
    the machine: a framework-neutral figure, so a share of it is comparable across
    backends and above 100% only when a model truly beat that matmul.
    """
    best: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        for device, rates in calibration_by_dtype(run.machine).items():
            slot = best.setdefault(run.machine_id, {}).setdefault(device, {})
            for dtype, value in rates.items():
                slot[dtype] = max(value, slot.get(dtype, 0.0))
    return best


def _add_peak_shares(frame: pd.DataFrame, runs: list[Run]) -> pd.DataFrame:
    """``best_peak_gflops`` (the denominator) and ``peak_share`` = gflops over it.

    No calibration of the row's dtype on its machine: both NaN, never a share of the
    float32 figure.
    """
    best = best_calibration(runs)
    denominators = [
        best.get(m, {}).get(d, {}).get(t, np.nan) if isinstance(t, str) else np.nan
        for m, d, t in zip(frame["machine_id"], frame["device"], frame["compute_dtype"],
                           strict=True)
    ]
    frame["best_peak_gflops"] = denominators
    if "gflops" in frame:
        frame["peak_share"] = pd.to_numeric(frame["gflops"], errors="coerce") \
            / frame["best_peak_gflops"]
    else:
        frame["peak_share"] = np.nan
    return frame


def _ordered_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Leading identity columns, then stats, then the remaining extra_info fields sorted."""
    lead = [c for c in LEADING_COLUMNS + STATS_COLUMNS if c in frame.columns]
    tail = sorted(c for c in frame.columns if c not in lead and c != "raw_rounds")
    return frame[lead + tail + ["raw_rounds"]]


def _machines_frame(runs: list[Run]) -> pd.DataFrame:
    """One row per machine id, described by its newest run."""
    rows = []
    by_machine: dict[str, list[Run]] = {}
    for run in runs:
        by_machine.setdefault(run.machine_id, []).append(run)
    for machine_id in sorted(by_machine):
        machine_runs = sorted(by_machine[machine_id], key=lambda r: (r.datetime, r.path.name))
        newest = machine_runs[-1]
        info = newest.machine
        rows.append({
            "machine_id": machine_id,
            "best_peak_gflops": best_calibration(machine_runs).get(machine_id, {}),
            "cpu_model": info.get("cpu_model"),
            "cpu_cores": info.get("cpu_cores"),
            "gpus": [str(g) for g in info["gpus"]] if isinstance(info.get("gpus"), list) else [],
            "memory_bytes": info.get("memory_bytes"),
            "backend": info.get("backend"),
            "tensorflow": info.get("tensorflow"),
            "keras": info.get("keras"),
            "cuda": info.get("cuda"),
            "calibration_gflops": _calibration(info),
            # Each framework times its own matmul: the newest calibration of every backend.
            "calibration_by_backend": {str(run.machine.get("backend")): _calibration(run.machine)
                                       for run in machine_runs},
            "runs": len(machine_runs),
            "newest_run": newest.path.name,
            "newest_datetime": newest.datetime,
        })
    return pd.DataFrame(rows, columns=[
        "machine_id", "cpu_model", "cpu_cores", "gpus", "memory_bytes", "backend",
        "tensorflow", "keras", "cuda", "calibration_gflops", "calibration_by_backend", "runs",
        "newest_run", "newest_datetime", "best_peak_gflops"])


def load_results(paths: Iterable[str | Path], log: WarningLog,
                 include_synthetic: bool = False) -> ResultSet:
    """Load every valid result file under ``paths`` (files or folders).

    Runs on synthetic data are counted in ``synthetic_left_out`` and not loaded, unless
    ``include_synthetic``.
    """
    runs = [run for path in find_result_files(paths, log)
            if (run := read_run(path, log)) is not None]
    synthetic = [run for run in runs if run.data == SYNTHETIC_DATA]
    if not include_synthetic:
        runs = [run for run in runs if run.data != SYNTHETIC_DATA]
    rows = [_benchmark_row(run, b) for run in runs for b in run.benchmarks]
    if rows:
        benchmarks = _ordered_columns(_add_peak_shares(pd.DataFrame(rows), runs))
        benchmarks = benchmarks.sort_values(["machine_id", "run_datetime", "run", "suite", "case"],
                                            kind="stable").reset_index(drop=True)
    else:
        benchmarks = pd.DataFrame(columns=LEADING_COLUMNS + STATS_COLUMNS + ["raw_rounds"])
    failure_rows = [
        {"machine_id": run.machine_id, "run": run.path.name, "run_file": str(run.path),
         "run_datetime": run.datetime, **failure}
        for run in runs for failure in run.failures
    ]
    failures = pd.DataFrame(failure_rows, columns=FAILURE_COLUMNS)
    return ResultSet(benchmarks=benchmarks, failures=failures,
                     machines=_machines_frame(runs), runs=runs,
                     synthetic_left_out=0 if include_synthetic else len(synthetic))


# --------------------------------------------------------------------------- selection

def select_newest(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the newest run's row for each (machine, suite, case)."""
    if frame.empty:
        return frame.copy()
    ordered = frame.sort_values(["run_datetime", "run"], kind="stable")
    newest = ordered.drop_duplicates(subset=CASE_KEY, keep="last")
    return newest.sort_values(CASE_KEY, kind="stable").reset_index(drop=True)


def _median_of(values: pd.Series) -> float:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return float(numbers.median()) if len(numbers) else np.nan


def _pool_group(group: pd.DataFrame) -> dict:
    """Pool several runs of one case: statistics of all raw rounds together.

    Rates and per-round times are rescaled to the pooled median (the work per round
    is the same in every run); other numeric metrics are the median across runs;
    anything else comes from the newest run.
    """
    group = group.sort_values(["run_datetime", "run"], kind="stable")
    row = group.iloc[-1].to_dict()
    rounds = [x for raw in group["raw_rounds"] for x in raw]
    if rounds and all(len(raw) for raw in group["raw_rounds"]):
        data = np.asarray(rounds, dtype=float)
        q1, median, q3 = np.percentile(data, [25, 50, 75])
        row.update(median=float(median), q1=float(q1), q3=float(q3), iqr=float(q3 - q1),
                   mean=float(data.mean()), min=float(data.min()), max=float(data.max()),
                   stddev=float(data.std(ddof=1)) if len(data) > 1 else 0.0,
                   rounds=len(data))
    else:
        # Some run lacks raw rounds: fall back to the median of the runs' statistics.
        for column in ("median", "iqr", "q1", "q3", "stddev", "mean"):
            row[column] = _median_of(group[column])
        row.update(min=float(group["min"].min()), max=float(group["max"].max()),
                   rounds=int(group["rounds"].sum()))
    pooled_median = row["median"]
    medians = group["median"].astype(float)
    for column in group.columns:
        if column in STATS_COLUMNS or column in ("raw_rounds", "batch_size", "replicas",
                                                 "per_replica_batch", "global_batch"):
            continue
        values = group[column]
        if column in SPOILED_FLAGS:
            flags = [v for v in values if isinstance(v, (bool, np.bool_))]
            row[column] = any(flags) if flags else None
            continue
        if column == "contention":
            row[column] = pd.to_numeric(values, errors="coerce").max()
            continue
        if column in RATE_LIKE_METRICS:
            work = pd.to_numeric(values, errors="coerce") * medians
            row[column] = _median_of(work) / pooled_median if pooled_median else np.nan
        elif column in TIME_LIKE_METRICS:
            share = pd.to_numeric(values, errors="coerce") / medians
            row[column] = _median_of(share) * pooled_median
        elif (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
              and not column.endswith("_bytes") and column != "run_datetime"):
            row[column] = _median_of(values)
    row["raw_rounds"] = rounds
    row["runs"] = len(group)
    return row


def pool_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (machine, suite, case) pooling all runs (``--all-runs``)."""
    if frame.empty:
        return frame.copy()
    rows = [_pool_group(group) for _, group in frame.groupby(CASE_KEY, sort=True)]
    return pd.DataFrame(rows)[list(frame.columns) + ["runs"]].reset_index(drop=True)


def select_runs(frame: pd.DataFrame, all_runs: bool) -> pd.DataFrame:
    """The rows the tables use: newest run per case, or all runs pooled."""
    return pool_runs(frame) if all_runs else select_newest(frame)


def current_failures(results: ResultSet, all_runs: bool) -> pd.DataFrame:
    """Failures to list in the report.

    By default a failure is listed when it is the newest record of its (machine,
    suite, case): no run at the same time or later succeeded. Such a case keeps its
    last successful result in the other tables. With ``all_runs`` every failure is listed.
    """
    failures = results.failures
    if failures.empty or all_runs:
        return failures.sort_values(["machine_id", "run_datetime", "suite", "case"],
                                    kind="stable").reset_index(drop=True)
    newest_failures = failures.sort_values(["run_datetime", "run"], kind="stable") \
        .drop_duplicates(subset=CASE_KEY, keep="last")
    latest_success: dict[tuple, pd.Timestamp] = {}
    if not results.benchmarks.empty:
        for key, when in results.benchmarks.groupby(CASE_KEY)["run_datetime"].max().items():
            latest_success[key] = when
    keep = [
        not (key in latest_success and latest_success[key] >= when)
        for key, when in zip(
            newest_failures[CASE_KEY].itertuples(index=False, name=None),
            newest_failures["run_datetime"], strict=True)
    ]
    return newest_failures[keep].sort_values(["machine_id", "suite", "case"], kind="stable") \
        .reset_index(drop=True)


def is_missing(value: object) -> bool:
    """True for None and NaN (cells of optional metrics)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_spoiled(record: dict) -> bool:
    """A row timed while others used the machine: ``contended`` or ``concurrent``."""
    return any(record.get(flag) is True or isinstance(record.get(flag), np.bool_)
               and bool(record.get(flag)) for flag in SPOILED_FLAGS)


def spoiled_mask(frame: pd.DataFrame) -> pd.Series:
    """Per row of ``frame``: :func:`is_spoiled`."""
    if frame.empty:
        return pd.Series([], dtype=bool, index=frame.index)
    mask = pd.Series(False, index=frame.index)
    for flag in SPOILED_FLAGS:
        if flag in frame:
            mask |= frame[flag].map(lambda v: v is True or (isinstance(v, np.bool_) and bool(v)))
    return mask


def run_spread(frame: pd.DataFrame) -> pd.DataFrame:
    """Run-to-run spread of each (machine, suite, case) with at least two runs.

    The unit is a run (one result file, one process): its median time per round. Rows
    marked contended or concurrent are left out, since they measure the other load.
    Columns: machine_id, suite, case, label, runs, fastest, median, slowest, spread
    (slowest / fastest - 1, the figure a 10% threshold is held against).
    """
    columns = ["machine_id", "suite", "case", "label", "runs", "fastest", "median",
               "slowest", "spread"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    usable = frame[~spoiled_mask(frame)]
    rows = []
    for (machine_id, suite, case), group in usable.groupby(CASE_KEY, sort=True):
        medians = pd.to_numeric(group["median"], errors="coerce").dropna()
        medians = medians[medians > 0]
        if len(medians) < 2:
            continue
        rows.append({"machine_id": machine_id, "suite": suite, "case": case,
                     "label": group["label"].iloc[0], "runs": len(medians),
                     "fastest": float(medians.min()), "median": float(medians.median()),
                     "slowest": float(medians.max()),
                     "spread": float(medians.max() / medians.min() - 1.0)})
    return pd.DataFrame(rows, columns=columns)
