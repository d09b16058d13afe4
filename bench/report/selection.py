"""The rows a report shows: the newest run of each case, or all its runs pooled
(``--all-runs``); the failures still current; the rows spoiled by other load.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bench.report.loader import CASE_KEY, STATS_COLUMNS, ResultSet, typed
from bench.report.text import listed

#: How ``--all-runs`` pools a figure of several runs: rates (work / time) and times are
#: rescaled to the pooled median round; the case's own numbers are the newest run's.
RATE_LIKE = ("samples_per_second", "gflops", "peak_fraction", "peak_share")
TIME_LIKE = ("seconds_per_epoch", "seconds_per_batch")
NOT_POOLED = ("raw_rounds", "batch_size", "replicas", "per_replica_batch", "global_batch",
              "run_datetime", *STATS_COLUMNS)
#: Row flags that spoil a row: timed while other processes took the machine.
SPOILED_FLAGS = ("contended", "concurrent")


def selection_phrase(all_runs: bool) -> str:
    """What :func:`select_runs` chose, in the words of a caption."""
    if all_runs:
        return ("All runs pooled: statistics of every round of every run of a case; "
                "other metrics are medians across runs.")
    return "Newest run per machine and case (`--all-runs` pools all runs)."


def select_newest(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the newest run's row for each (machine, suite, case)."""
    if frame.empty:
        return frame.copy()
    newest = frame.sort_values(["run_datetime", "run"], kind="stable") \
        .drop_duplicates(subset=CASE_KEY, keep="last")
    return newest.sort_values(CASE_KEY, kind="stable").reset_index(drop=True)


def _median(values: pd.Series) -> float:
    return pd.to_numeric(values, errors="coerce").median()


def _pool(group: pd.DataFrame) -> dict:
    """Several runs of one case as one: the statistics of all their rounds together.

    Rates and times per round are rescaled to the pooled median (each run did the same
    work per round); other numbers are the median across runs; a flag is set when any
    run had it; the rest is the newest run's.
    """
    group = group.sort_values(["run_datetime", "run"], kind="stable")
    row = group.iloc[-1].to_dict()
    # A run without raw rounds (an old pytest-benchmark) counts its median as one round.
    data = np.asarray([x for raw, median in zip(group["raw_rounds"], group["median"],
                                                strict=True)
                       for x in (raw if len(raw) else [median])])
    q1, pooled, q3 = np.percentile(data, [25, 50, 75])
    row.update(median=pooled, q1=q1, q3=q3, iqr=q3 - q1, mean=data.mean(), min=data.min(),
               max=data.max(), stddev=data.std(ddof=1) if len(data) > 1 else 0.0,
               rounds=len(data), raw_rounds=list(data), runs=len(group))
    for column, values in group.items():
        numbers = pd.to_numeric(values, errors="coerce") \
            if pd.api.types.is_numeric_dtype(values) else None
        if column in SPOILED_FLAGS:
            flags = values.dropna()
            row[column] = bool(flags.any()) if len(flags) else None
        elif column == "contention":
            row[column] = numbers.max()
        elif column in RATE_LIKE:
            row[column] = _median(numbers * group["median"]) / pooled
        elif column in TIME_LIKE:
            row[column] = _median(numbers / group["median"]) * pooled
        elif (numbers is not None and column not in NOT_POOLED
              and not pd.api.types.is_bool_dtype(values) and not column.endswith("_bytes")):
            row[column] = _median(numbers)
    return row


def select_runs(frame: pd.DataFrame, all_runs: bool) -> pd.DataFrame:
    """The rows the tables show: the newest run per case, or (``all_runs``) all pooled."""
    if not all_runs or frame.empty:
        return select_newest(frame)
    return typed(pd.DataFrame([_pool(group) for _, group in frame.groupby(CASE_KEY)],
                              columns=[*frame.columns, "runs"]))


def current_failures(results: ResultSet, all_runs: bool) -> pd.DataFrame:
    """Failures to list: with ``all_runs`` every one; else those still current.

    A failure is current when no run of its (machine, suite, case) at the same time or
    later succeeded; a case that succeeded before keeps that result in the tables.
    """
    failures = results.failures
    if failures.empty or all_runs:
        return failures.sort_values(["machine_id", "run_datetime", "suite", "case"],
                                    kind="stable").reset_index(drop=True)
    newest = failures.sort_values(["run_datetime", "run"], kind="stable") \
        .drop_duplicates(subset=CASE_KEY, keep="last")
    succeeded = results.benchmarks.groupby(CASE_KEY)["run_datetime"].max().to_dict() \
        if not results.benchmarks.empty else {}
    current = [key not in succeeded or succeeded[key] < when for key, when in zip(
        newest[CASE_KEY].itertuples(index=False, name=None), newest["run_datetime"],
        strict=True)]
    return newest[current].sort_values(["machine_id", "suite", "case"], kind="stable") \
        .reset_index(drop=True)


def is_spoiled(record: dict) -> bool:
    """A row timed while others used the machine: ``contended`` or ``concurrent``."""
    return any(record.get(flag) is True or record.get(flag) is np.True_
               for flag in SPOILED_FLAGS)


def spoiled_mask(frame: pd.DataFrame) -> pd.Series:
    """Per row of ``frame``: :func:`is_spoiled`."""
    mask = pd.Series(False, index=frame.index, dtype=bool)
    for flag in SPOILED_FLAGS:
        if flag in frame:
            column = frame[flag]
            if column.dtype == bool or str(column.dtype) == "boolean":  # True, False, NA
                mask |= column.eq(True).fillna(False).astype(bool)
            else:
                mask |= column.map(lambda v: v is True or v is np.True_).astype(bool)
    return mask


def parse_commits(text: str) -> list[str]:
    """``--commit``'s value: commit ids or prefixes (4 to 40 hex digits), comma-separated;
    ValueError naming the bad one."""
    prefixes = [part.strip().lower() for part in text.split(",") if part.strip()]
    bad = [p for p in prefixes if not re.fullmatch(r"[0-9a-f]{4,40}", p)]
    if not prefixes or bad:
        raise ValueError(f"{(bad or [text])[0]!r} is not a commit id (4 to 40 hex digits, "
                         f"e.g. 39bb0c7; several: 39bb0c7,0ea3f8b)")
    return prefixes


def only_commits(results: ResultSet, prefixes: list[str]) -> ResultSet:
    """The runs (with their rows and failures) that measured a commit starting with one of
    ``prefixes`` (a run with uncommitted changes, ``abc+``, counts as its commit).
    ValueError when none did, naming the commits there are (newest first)."""
    def matches(commit: str | None) -> bool:
        return bool(commit) and any(commit.rstrip("+").lower().startswith(p) for p in prefixes)

    keep = [run for run in results.runs if matches(run.commit)]
    if not keep:
        newest: dict[str, tuple] = {}
        for run in results.runs:
            commit = (run.commit or "unknown").rstrip("+")
            key = commit[:10] if re.fullmatch(r"[0-9a-fA-F]+", commit) else commit
            when, count = newest.get(key, (run.datetime, 0))
            newest[key] = (max(when, run.datetime), count + 1)
        there = listed((f"{commit} ({count} run{'s' if count != 1 else ''})"
                        for commit, (_, count) in sorted(
                            newest.items(), key=lambda item: item[1][0], reverse=True)),
                       code=False)
        raise ValueError(f"no run measured {', '.join(prefixes)}; the runs read measured "
                         f"{there or 'nothing'}")
    files = {str(run.path) for run in keep}
    frame, failures = results.benchmarks, results.failures
    return ResultSet(frame[frame["run_file"].astype(str).isin(files)].reset_index(drop=True)
                     if not frame.empty else frame,
                     failures[failures["run_file"].astype(str).isin(files)]
                     .reset_index(drop=True) if not failures.empty else failures,
                     keep, results.synthetic_left_out)
