"""Load result files (``results/<machine_id>/<run id>.json``, only read) into one frame.

:attr:`ResultSet.benchmarks`, the long form that the tables, the CSV and the plots read,
has a row per benchmark per run: the :class:`bench.store.schema.Row` fields with the schema's
types (numbers as floats, NaN where absent; flags nullable, None where not measured), the
run's fields, pytest-benchmark's statistics and the raw rounds. Bad input never raises:
each skipped file is one warning line naming it (:class:`WarningLog`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.shards import merge_shards, relabel
from bench.store import schema
from bench.store.results import ResultFileError, read_result, result_files_with_keys

#: One result per (machine, suite, case) and run; the case id already names the device.
CASE_KEY = ["machine_id", "suite", "case"]
#: The long form's leading columns; the other row fields follow, sorted, then raw rounds.
LEADING_COLUMNS = [
    "machine_id", "label", "run", "run_file", "run_datetime", "run_status", "data",
    "run_group", "repeat", "suite", "case", "model", "backend", "device", "device_kind",
    "device_name", "batch_size", "precision", "compute_dtype", "xla", "status",
    "contended", "concurrent", "contention",
    "median", "iqr", "q1", "q3", "stddev", "mean", "min", "max", "rounds", "iterations"]
STATS_COLUMNS = LEADING_COLUMNS[-10:]
FAILURE_COLUMNS = ["machine_id", "run", "run_file", "run_datetime", "suite", "case", "name",
                   "error"]


class WarningLog:
    """Collects warnings, printing each at once as one line on stderr (``--strict``: exit 2)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warn(self, where: object, message: str) -> None:
        """Record and print ``warning: <where>: <message>``; ``where`` names the file."""
        self.messages.append(f"warning: {where}: {message}")
        print(self.messages[-1], file=sys.stderr)  # looked up now: redirected streams see it


@dataclasses.dataclass
class Run:
    """One result file that passed validation.

    ``status``: complete, interrupted (Ctrl-C) or incomplete (recovered from the journal of
    a process that died). ``run_group``/``repeat``: the ``--bench-repeat`` group and "i/n".
    ``commit``: the id measured (``+``: with uncommitted changes); ``commit_time``: when it
    was made (``commit_info``), else ``datetime``.
    """

    path: Path
    machine_id: str
    datetime: pd.Timestamp
    machine: dict
    cases: int  # benchmarks that ran and passed (each a row of the long form)
    failures: list[dict]
    status: str = "complete"
    data: str = schema.REAL_DATA
    run_group: str | None = None
    repeat: str | None = None
    commit: str | None = None
    commit_time: pd.Timestamp | None = None
    not_run: list[dict] = dataclasses.field(default_factory=list)  # left out (schema 3)
    #: Rows timed while others took the machine; None where the run measured no contention.
    spoiled: int | None = None

    @property
    def plan(self) -> dict | None:
        """The run's plan (schema 3): its estimate, budget and the time it took."""
        plan = self.machine.get("plan")
        return plan if isinstance(plan, dict) else None


@dataclasses.dataclass
class ResultSet:
    """The long form, the failures and the runs loaded; ``synthetic_left_out`` counts the
    runs on synthetic data not loaded."""

    benchmarks: pd.DataFrame
    failures: pd.DataFrame
    runs: list[Run]
    synthetic_left_out: int = 0

    @property
    def empty(self) -> bool:
        return self.benchmarks.empty and self.failures.empty


def find_result_files(paths: Iterable[str | Path], log: WarningLog) -> list[tuple[Path, str]]:
    """Files, and folders searched recursively for ``*.json``: each file once, in order,
    with its real path; a warning for a folder without any and a path that does not exist."""
    found: dict[str, Path] = {}
    for path in map(Path, paths):
        files = result_files_with_keys([path])
        if not files:
            log.warn(path, "no result files (*.json) in this folder" if path.is_dir()
                     else "does not exist")
        for file, key in files:
            found.setdefault(key, file)
    return [(file, key) for key, file in found.items()]


def _timestamp(value: object) -> pd.Timestamp | None:
    """An ISO 8601 text as a UTC timestamp (naive = UTC); None when it is not one."""
    try:
        when = pd.Timestamp(value) if isinstance(value, str) else None
    except (ValueError, TypeError, OverflowError):
        return None
    if when is None or pd.isna(when):
        return None
    return when.tz_convert("UTC") if when.tzinfo else when.tz_localize("UTC")


def read_run(path: Path, log: WarningLog) -> Run | None:
    """Read and validate one result file; on any problem warn once and return None."""
    run, _, warnings = parse_file(path)
    for message in warnings:
        log.warn(path, message)
    return run


def parse_file(path: Path) -> tuple[Run | None, list[dict], list[str]]:
    """One result file: its :class:`Run` (None where it is not one), its long-form rows
    (:func:`benchmark_row`) and the warnings it gives, each ending in what was done."""
    try:
        document = read_result(path)
    except ResultFileError as error:
        return None, [], [str(error)]
    machine = document["machine_info"]["fashion_bench"]
    failures = [{key: "" if f.get(key) is None else str(f[key])
                 for key in ("suite", "case", "name", "error")}
                for f in document.get("fashion_bench_failures", [])]
    benchmarks, failed = [], []  # a benchmark that ran but says it failed is a failure
    for benchmark in document["benchmarks"]:
        (benchmarks if benchmark["extra_info"].get("status", "ok") == "ok" else failed) \
            .append(benchmark)
    failures += [{"suite": b["extra_info"]["suite"], "case": b["extra_info"]["case"],
                  "name": b.get("name"), "error": f"status {b['extra_info']['status']}"}
                 for b in failed]
    not_run = [{key: "" if n.get(key) is None else str(n[key])
                for key in ("suite", "case", "reason")}
               for n in document.get("fashion_bench_not_run", [])]
    if not benchmarks and not failures and not not_run:
        return None, [], ["holds no benchmarks and no failures; skipped"]
    warnings = [f"every case failed ({len(failures)} failure"
                f"{'s' if len(failures) != 1 else ''}; listed in the report)"] \
        if not benchmarks and failures else []
    # The run's time: its datetime, else the stamp in the file's name, else the file's mtime.
    stamp = re.search(r"(\d{8})-(\d{6})", path.name)
    when = _timestamp(document.get("datetime")) or (
        _timestamp(f"{stamp[1]}T{stamp[2]}") if stamp else None) or pd.Timestamp(
        path.stat().st_mtime, unit="s", tz="UTC")
    commit = document.get("commit_info") if isinstance(document.get("commit_info"), dict) else {}
    repeat = machine.get("repeat")
    extras = [b["extra_info"] for b in benchmarks]
    spoiled = sum(map(_spoiled, extras)) if any("contended" in e for e in extras) else None
    run = Run(path, machine["machine_id"], when, machine, len(benchmarks), failures,
              document.get("fashion_bench_status", "complete"),
              machine.get("data") or schema.REAL_DATA,
              str(machine["run_group"]) if machine.get("run_group") else None,
              f"{repeat[0]}/{repeat[1]}" if isinstance(repeat, list) and len(repeat) == 2
              else None, str(commit["id"]) + "+" * bool(commit.get("dirty"))
              if commit.get("id") else None,
              _timestamp(commit.get("time")) or _timestamp(commit.get("author_time")) or when,
              not_run, spoiled)
    return run, [benchmark_row(run, b) for b in benchmarks], warnings


def _spoiled(extra: dict) -> bool:
    """Timed while other processes took the machine (the report's † and ‡)."""
    return extra.get("contended") is True or extra.get("concurrent") is True


def calibration(machine: dict) -> dict[str, float]:
    """``calibration_gflops``: float32 GFLOP/s per device (every schema), else empty."""
    rates = machine.get("calibration_gflops")
    return dict(rates) if isinstance(rates, dict) else {}


def best_calibration(runs: Iterable[Run]) -> dict[str, dict[str, dict[str, float]]]:
    """``{machine_id: {device: {dtype: best GFLOP/s}}}``: the denominator of peak shares.

    The best matmul measured on a device in a dtype by any backend in any run of the
    machine (``calibration_gflops_by_dtype``; schema 1: ``calibration_gflops``, float32): a
    framework-neutral figure, so shares compare across backends.
    """
    best: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        by_dtype = run.machine.get("calibration_gflops_by_dtype")
        rates = [(device, dtype, value)
                 for device, values in (by_dtype.items() if isinstance(by_dtype, dict) else ())
                 for dtype, value in (values.items() if isinstance(values, dict) else ())]
        rates += [(device, "float32", value) for device, value in calibration(run.machine).items()]
        for device, dtype, value in rates:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                slot = best.setdefault(run.machine_id, {}).setdefault(str(device), {})
                slot[str(dtype)] = max(float(value), slot.get(str(dtype), 0.0))
    return best


def benchmark_row(run: Run, benchmark: dict) -> dict:
    """One long-form row: the row fields, the run's, the statistics and the raw rounds."""
    extra, stats = benchmark["extra_info"], benchmark["stats"]
    row = {**extra, **{column: stats[column] if isinstance(stats.get(column), (int, float))
                       else np.nan for column in STATS_COLUMNS}}
    row.update({
        "machine_id": run.machine_id, "label": f"{run.machine_id}/{extra['device']}",
        "run": run.path.name, "run_file": str(run.path), "run_datetime": run.datetime,
        "run_status": run.status, "data": run.data, "run_group": run.run_group,
        "repeat": run.repeat, "name": benchmark.get("name"), "group": benchmark.get("group"),
        "device_kind": extra.get("device_kind") if isinstance(extra.get("device_kind"), str)
        else extra["device"].split(":", 1)[0].upper(),
        "compute_dtype": extra.get("compute_dtype")
        or schema.COMPUTE_DTYPE.get(extra["precision"]),
        # Schema 1 measured no contention (None); a session that ran beside another one
        # says so in its machine block.
        "contended": extra.get("contended"),
        "concurrent": run.machine.get("concurrent") is True or extra.get("concurrent"),
        "calibration_gflops": calibration(run.machine).get(extra["device"]),
        "raw_rounds": [float(x) for x in stats.get("data") or []],
    })
    if not isinstance(stats.get("rounds"), int):
        row["rounds"] = len(row["raw_rounds"]) or 1
    return row


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Each row-schema column of its declared type: numbers numeric (NaN where absent),
    optional flags nullable booleans (None where not measured)."""
    for name, (kind, required) in schema.COLUMN_TYPES.items():
        if name in frame and kind is bool and not required:
            frame[name] = frame[name].map(
                lambda v: bool(v) if isinstance(v, (bool, np.bool_)) else None).astype("boolean")
        elif name in frame and kind in (int, float):
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
            frame[name] = frame[name].astype(float) if kind is float else frame[name]
    return frame


def load_results(paths: Iterable[str | Path], log: WarningLog,
                 include_synthetic: bool = False, index: object = None) -> ResultSet:
    """Every valid result file under ``paths`` (files or folders), as a :class:`ResultSet`.

    Runs on synthetic data are counted, not loaded, unless ``include_synthetic``.
    ``index``: a :class:`bench.report.index.ResultsIndex` to read through (each new or
    changed file is parsed once, into the index); None reads every file. Either way the
    result is the same, down to the order of rows and warnings.
    """
    paths = [Path(p) for p in paths]
    files = find_result_files(paths, log)
    if index is not None:
        parsed = index.runs(files, roots=[p for p in paths if p.is_dir()])
    else:
        parsed = []
        frames: dict[Path, list[dict]] = {}
        for path, _ in files:
            run, rows, warnings = parse_file(path)
            parsed.append((path, run, warnings))
            frames[path] = rows
    found = []
    for path, run, warnings in parsed:
        for message in warnings:
            log.warn(path, message)
        if run is not None:
            found.append(run)
    kept = [run for run in found if include_synthetic or run.data != schema.SYNTHETIC_DATA]
    runs, renamed = merge_shards(kept, log)  # the shards of one run as one run
    failures = pd.DataFrame(
        [{"machine_id": run.machine_id, "run": run.path.name, "run_file": str(run.path),
          "run_datetime": run.datetime, **failure} for run in runs for failure in run.failures],
        columns=FAILURE_COLUMNS)
    if index is not None:
        frame = index.rows([run.path for run in kept])  # the index keeps the real paths
    else:
        rows = [row for run in kept for row in frames[run.path]]
        frame = typed(pd.DataFrame(rows)) if rows else pd.DataFrame()
    if frame.empty:
        return ResultSet(pd.DataFrame(columns=LEADING_COLUMNS + ["raw_rounds"]), failures,
                         runs, len(found) - len(kept))
    frame = relabel(canonical(frame), renamed)
    # The share of peak: gflops over the best calibration of the row's device and dtype on
    # its machine (none of that dtype: no share, never a share of the float32 figure).
    best = best_calibration(runs)
    frame["best_peak_gflops"] = [best.get(m, {}).get(d, {}).get(t, np.nan) for m, d, t in zip(
        frame["machine_id"], frame["device"], frame["compute_dtype"], strict=True)]
    frame["peak_share"] = frame["gflops"] / frame["best_peak_gflops"] \
        if "gflops" in frame else np.nan
    lead = [c for c in LEADING_COLUMNS if c in frame]
    frame = frame[lead + sorted(set(frame) - {*lead, "raw_rounds"}) + ["raw_rounds"]]
    return ResultSet(frame.sort_values(["machine_id", "run_datetime", "run", "suite", "case"],
                                       kind="stable").reset_index(drop=True),
                     failures, runs, len(found) - len(kept))


#: Columns holding a list of numbers per row (absent: an empty list for raw rounds).
LIST_COLUMNS = ("raw_rounds", "canary_seconds")
_NO_ROUNDS = np.zeros(0)


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """The long form's one representation, whether rows came from files or the index:
    the schema's types (:func:`typed`); lists as numpy arrays of floats (None where a row
    has none, raw rounds excepted: an empty array); timestamps in UTC at microseconds;
    text columns as text (NaN where absent)."""
    frame = typed(frame.copy())
    for column in LIST_COLUMNS:
        if column in frame:
            frame[column] = [value if isinstance(value, np.ndarray) and value.dtype == float
                             else np.asarray(value, dtype=float)
                             if isinstance(value, (list, tuple, np.ndarray))
                             else (_NO_ROUNDS if column == "raw_rounds" else None)
                             for value in frame[column]]
    for column in ("run_datetime",):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    for column in frame:
        if frame[column].dtype == object and column not in LIST_COLUMNS and \
                frame[column].map(lambda v: v is None or isinstance(v, str)
                                  or (isinstance(v, float) and math.isnan(v))).all():
            frame[column] = frame[column].astype("str")
    return frame
