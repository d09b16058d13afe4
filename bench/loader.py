"""Find, validate and load the bench suites' result files into pandas.

A result file is what ``pytest --benchmark-json`` writes, with the fashion-bench
block ``machine_info.fashion_bench`` (machine id, devices, calibration) and the list
``fashion_bench_failures`` of cases that raised. Files are kept under
``results/<machine_id>/NNNN_<YYYYmmdd-HHMMSS>.json``; the loader only reads them.

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

#: The newest ``machine_info.fashion_bench.schema`` this module understands.
SUPPORTED_SCHEMA = 1

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
    "machine_id", "label", "run", "run_file", "run_datetime",
    "suite", "case", "model", "backend", "device", "device_kind", "device_name",
    "batch_size", "precision", "xla", "status",
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
RATE_LIKE_METRICS = ("samples_per_second", "gflops", "peak_fraction")

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
    """One result file that passed validation."""

    path: Path
    machine_id: str
    datetime: pd.Timestamp
    machine: dict
    benchmarks: list[dict]
    failures: list[dict]


@dataclasses.dataclass
class ResultSet:
    """Everything loaded from a set of paths.

    ``benchmarks`` is the long form: one row per benchmark per run, the raw rounds
    kept as a list in ``raw_rounds``. ``machines`` holds one row per machine id,
    described by its newest run.
    """

    benchmarks: pd.DataFrame
    failures: pd.DataFrame
    machines: pd.DataFrame
    runs: list[Run]

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
    if isinstance(schema, bool) or not isinstance(schema, int) or schema != SUPPORTED_SCHEMA:
        log.warn(path, f"older/unknown schema (fashion_bench.schema is {schema!r}; "
                       f"this report reads schema {SUPPORTED_SCHEMA}); skipped")
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
               machine=machine, benchmarks=benchmarks, failures=failures)


def device_kind(device: str) -> str:
    """``cpu`` -> ``CPU``, ``gpu:0`` -> ``GPU``, ``tpu:1`` -> ``TPU``."""
    return device.split(":", 1)[0].upper()


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
    row.update({
        "machine_id": run.machine_id,
        "label": f"{run.machine_id}/{extra['device']}",
        "run": run.path.name,
        "run_file": str(run.path),
        "run_datetime": run.datetime,
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
        "newest_run", "newest_datetime"])


def load_results(paths: Iterable[str | Path], log: WarningLog) -> ResultSet:
    """Load every valid result file under ``paths`` (files or folders)."""
    runs = [run for path in find_result_files(paths, log)
            if (run := read_run(path, log)) is not None]
    rows = [_benchmark_row(run, b) for run in runs for b in run.benchmarks]
    if rows:
        benchmarks = _ordered_columns(pd.DataFrame(rows))
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
                     machines=_machines_frame(runs), runs=runs)


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
