"""Shards of one run merged into one run of the machine (``--bench-shard I/N``).

Each shard's result file says ``shard: [I, N]`` and its ``run_group`` (shared by the
shards of one run). The report, gate and history read the shards of one (machine,
run group) as one :class:`bench.report.loader.Run`: its path is
``<folder>/<run group>[shards 1,2 of 4]`` (no such file: a name for the run), its time the
first shard's, its cases, failures and cases left out those of all the shards; its rows
keep the shard they came from (column ``shard``, "I/N"). A shard missing from the files
read is one warning naming the run group and the shards that are there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

STATUS_ORDER = ("complete", "interrupted", "incomplete")  # the worst shard's is the run's


def merge_shards(runs: Sequence, log) -> tuple[list, dict[str, tuple[object, str]]]:
    """(the runs with each sharded run merged, {shard file: (merged run, "I/N")})."""
    groups: dict[tuple[str, str], list] = {}
    for run in runs:
        shard = run.machine.get("shard")
        if run.run_group and isinstance(shard, list) and len(shard) == 2:
            groups.setdefault((run.machine_id, run.run_group), []).append(run)
    if not groups:
        return list(runs), {}
    renamed: dict[str, tuple[object, str]] = {}
    merged_of: dict[int, object] = {}
    for (machine_id, group), parts in groups.items():
        parts = sorted(parts, key=lambda r: (int(r.machine["shard"][0]), str(r.path)))
        count = int(parts[0].machine["shard"][1])
        present = sorted({int(r.machine["shard"][0]) for r in parts})
        missing = [i for i in range(1, count + 1) if i not in present]
        if missing:
            log.warn(f"{machine_id} run group {group}",
                     f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing "
                     f"(found {', '.join(f'{i}/{count}' for i in present)}); the run is "
                     f"reported with the cases of the shards found")
        name = f"{group}[shards {','.join(map(str, present))} of {count}]"  # no "/": a name
        statuses = [r.status for r in parts]
        first = min(parts, key=lambda r: r.datetime)
        machine = dict(first.machine, shard=None, shards_found=present, shard_count=count,
                       plan=merged_plan(parts))
        merged = dataclasses.replace(
            first, path=Path(first.path.parent) / name, machine=machine,
            cases=sum(r.cases for r in parts),
            failures=[f for r in parts for f in r.failures],
            not_run=[n for r in parts for n in r.not_run],
            spoiled=None if all(r.spoiled is None for r in parts)
            else sum(r.spoiled or 0 for r in parts),
            status=max(statuses, key=lambda s: STATUS_ORDER.index(s)
                       if s in STATUS_ORDER else len(STATUS_ORDER)))
        for run in parts:
            renamed[str(run.path)] = (merged, f"{run.machine['shard'][0]}/{count}")
            merged_of[id(run)] = merged
    result, placed = [], set()
    for run in runs:  # the merged run where its first shard was
        merged = merged_of.get(id(run), run)
        if id(merged) not in placed:
            placed.add(id(merged))
            result.append(merged)
    return result, renamed


def merged_plan(parts: Sequence) -> dict | None:
    """The plans of a run's shards as one: estimates, times and budgets summed (the
    machine time the run took), cases and leave-outs counted, and the longest shard's
    time (the wall time where the shards ran side by side); None where no shard has one."""
    plans = [r.machine.get("plan") for r in parts if isinstance(r.machine.get("plan"), dict)]
    if not plans:
        return None

    def total(key: str) -> float | None:
        values = [p.get(key) for p in plans]
        numbers = [float(v) for v in values if isinstance(v, (int, float))
                   and not isinstance(v, bool)]
        return round(sum(numbers), 1) if numbers and len(numbers) == len(values) else None

    elapsed = [float(p["elapsed_seconds"]) for p in plans
               if isinstance(p.get("elapsed_seconds"), (int, float))]
    return {**plans[0], **{key: total(key) for key in (
        "cases", "left_out", "estimate_seconds", "elapsed_seconds", "budget_seconds")},
        "shards_with_plan": len(plans),
        "longest_shard_seconds": round(max(elapsed), 1) if elapsed else None}


def relabel(frame: pd.DataFrame, renamed: dict[str, tuple[object, str]]) -> pd.DataFrame:
    """Rows of shard files under their merged run (run, run_file, run_datetime), with the
    column ``shard`` ("I/N"; empty for rows of runs that were not sharded)."""
    if not renamed or frame.empty:
        return frame
    files = frame["run_file"].astype(str)
    hit = files.isin(renamed.keys())
    frame = frame.copy()
    frame["shard"] = files.map(lambda f: renamed[f][1] if f in renamed else None).astype("str")
    for column, value in (("run", lambda m: m.path.name), ("run_file", lambda m: str(m.path)),
                          ("run_datetime", lambda m: m.datetime)):
        if column in frame:
            frame.loc[hit, column] = [value(renamed[f][0]) for f in files[hit]]
    return frame
