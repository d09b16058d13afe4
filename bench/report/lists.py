"""The report's list tables: a row per record, not a case per row across machines.

Machines, runs, the cases not run, failures, the run-to-run spread, scaling, the
reference loops and the speedups of mixed precision and XLA / torch.compile, each a
:class:`~bench.report.tables.Table` drawn by :func:`bench.report.tables.render`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report import text as fmt
from bench.report.loader import Run, best_calibration, calibration
from bench.report.selection import is_spoiled
from bench.report.tables import (
    CASE,
    COMPILED,
    COMPILED_VS_NOT,
    MIXED_PRECISIONS,
    Column,
    Table,
    case_order,
    cell_marks,
    col,
    first_of,
    speedup,
    suite,
    throughput,
)
from bench.report.text import NO_VALUE, has, order, yes

PAIR_COLUMNS = ["suite", "label", "backend", "model", "batch_size", "comparison", "ratio",
                "low", "high", "flagged"]


def _share(value: object) -> float:
    """A row's own 99% half-width as a share (0 where it has none, as schema-1 rows)."""
    return float(value) if has(value) and np.isfinite(float(value)) else 0.0


def precision_xla_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Per pair of cases that differ only in precision (fp16/bf16 against fp32) or only in
    XLA / torch.compile (on against off), same suite, machine/device, model, batch and
    backend: the speedup in samples/s. ``low``/``high``: the ratio's interval from both
    rows' own 99% intervals (root of the sum of squared log half-widths; the ratio alone
    where neither has one); ``flagged``: either row contended, concurrent or stopped on the
    budget. Columns :data:`PAIR_COLUMNS`."""
    if frame.empty or "samples_per_second" not in frame:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    same = ["suite", "label", "model", "batch_size", "backend"]
    data = frame.assign(
        samples_per_second=pd.to_numeric(frame["samples_per_second"], errors="coerce"),
        half=[np.log1p(_share(v)) for v in frame.get("ci_halfwidth", [None] * len(frame))],
        flagged=[is_spoiled(r) or r.get("stop_reason") == "budget"
                 for r in frame.to_dict("records")])
    rows = data.loc[data["suite"].isin(["train", "inference"]) & (data["samples_per_second"] > 0),
                    same + ["precision", "xla", "samples_per_second", "half", "flagged"]] \
        .astype({"xla": bool})
    pairs = [(f"{p} vs fp32", rows[rows["precision"] == p], rows[rows["precision"] == "fp32"],
              "xla") for p in MIXED_PRECISIONS]
    pairs.append((COMPILED_VS_NOT, rows[rows["xla"]], rows[~rows["xla"]], "precision"))
    result = []
    for comparison, faster, slower, also in pairs:
        pair = faster.merge(slower, on=same + [also], suffixes=("", "_base"))
        for r in pair.to_dict("records"):
            ratio = r["samples_per_second"] / r["samples_per_second_base"]
            half = float(np.hypot(r["half"], r["half_base"]))
            result.append([r["suite"], r["label"], r["backend"], r["model"], r["batch_size"],
                           comparison, ratio, ratio * np.exp(-half), ratio * np.exp(half),
                           bool(r["flagged"] or r["flagged_base"])])
    return pd.DataFrame(result, columns=PAIR_COLUMNS)


def precision_xla_speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """Geometric-mean speedups in samples/s of mixed precision over fp32 and of XLA /
    torch.compile on over off, per suite (train, inference), machine/device and backend,
    over the pairs of :func:`precision_xla_pairs`. Columns: suite, label, backend,
    comparison, speedup, low and high (extreme ratios), cases."""
    columns = ["suite", "label", "backend", "comparison", "speedup", "low", "high", "cases"]
    pairs = precision_xla_pairs(frame)
    result = []
    for (name, label, backend, comparison), group in pairs.groupby(
            ["suite", "label", "backend", "comparison"]):
        ratios = group["ratio"].to_numpy(dtype=float)
        result.append([name, label, backend, comparison, np.exp(np.log(ratios).mean()),
                       ratios.min(), ratios.max(), len(ratios)])
    return pd.DataFrame(result, columns=columns)


def precision_xla_table(frame: pd.DataFrame) -> Table:
    """A row per suite, machine/device and backend; a column per comparison with pairs."""
    speedups = precision_xla_speedups(frame)
    records: dict[tuple, dict] = {}
    for r in speedups.to_dict("records"):
        records.setdefault((order("suite", r["suite"]), r["label"], r["backend"]), dict(r))[
            r["comparison"]] = (f"{fmt.format_speedup(r['speedup'])} "
                                f"({fmt.format_speedup(r['low'])}–"
                                f"{fmt.format_speedup(r['high'])}, {r['cases']} cases)")
    return Table(
        "Mixed precision and XLA", lambda _: [records[key] for key in sorted(records)],
        f"Speedup of mixed precision over fp32 and of {COMPILED} on over off, in samples/s: "
        "geometric mean over the matching cases (same machine/device, model, batch and "
        "backend), with the lowest and highest ratio. {selection}",
        (col("suite"), col("label", "machine/device"), col("backend")) + tuple(
            col(c, align="r", text=lambda v: v or NO_VALUE) for c in
            (*(f"{p} vs fp32" for p in MIXED_PRECISIONS), COMPILED_VS_NOT)
            if c in set(speedups["comparison"])),
        f"No pairs of cases that differ only in precision or in {COMPILED}.")


SETUP = ["label", "model", "strategy", "backend", "precision", "xla", "per_replica_batch"]


def scaling_rows(frame: pd.DataFrame) -> list[dict]:
    """Scaling records with ``speedup`` thr(N)/thr(1) and ``efficiency`` thr(N)/(N·thr(1))
    against the 1-replica run of the same setup, in the order of the table's columns."""
    records = suite("scaling")(frame)
    one = {tuple(r.get(f) for f in SETUP): r.get("samples_per_second")
           for r in records if r.get("replicas") == 1}
    for r in records:
        base, replicas = one.get(tuple(r.get(f) for f in SETUP)), r.get("replicas")
        r["speedup"] = speedup(r.get("samples_per_second"), base)
        r["efficiency"] = speedup(r.get("samples_per_second"), replicas * base) \
            if r["speedup"] and has(replicas) and replicas else None
    return sorted(records, key=lambda r: case_order(r, SCALING.columns[:8]))


SCALING = Table(
    "Scaling", scaling_rows,
    "Scaling: samples/s per replica count, {spread}; speedup = thr(N)/thr(1) and efficiency "
    "= thr(N)/(N·thr(1)) against the 1-replica run of the same setup; test accuracy after "
    "the run's epochs. {selection}",
    (col("label", "machine/device"), col("model"), col("strategy"), col("backend"),
     col("precision"), CASE[3], col("per_replica_batch", "per-replica batch",
                                    text=fmt.format_int),
     col("replicas", align="r", text=fmt.format_int),
     Column("global batch", lambda r: fmt.format_int(first_of(r, "global_batch", "batch_size")),
            "r"),
     Column("samples/s", lambda r: throughput(r) + cell_marks(r), "r"),
     col("speedup", "speedup vs 1", "r", fmt.format_speedup),
     col("efficiency", align="r", text=lambda v: f"{fmt.sig3(100 * v)}%" if has(v) else NO_VALUE),
     col("test_accuracy", "test accuracy", "r", lambda v: f"{v:.4f}" if has(v) else NO_VALUE)))


def _reference_rows(frame: pd.DataFrame) -> list[dict]:
    """Each reference loop (suite ``baseline``) beside the compiled train step of the same
    machine/device, model, batch, precision and backend (XLA on where both exist)."""
    trains, records = suite("train")(frame), []
    same = ("label", "model", "batch_size", "precision", "backend")
    by_key: dict[tuple, list[dict]] = {}
    for t in trains:
        by_key.setdefault(tuple(t.get(k) for k in same), []).append(t)
    for r in suite("baseline")(frame):
        steps = by_key.get(tuple(r.get(k) for k in same), [])
        step = ([t for t in steps if yes(t.get("xla"))] or steps or [{}])[0]
        ours, theirs = step.get("seconds_per_epoch"), r.get("seconds_per_epoch")
        records.append({**r, "speedup": speedup(ours, theirs, higher_is_better=False),
                        "ours": fmt.format_seconds(ours) + cell_marks(step)
                        if has(ours) and ours else NO_VALUE,
                        "theirs": fmt.format_seconds(theirs) + cell_marks(r)
                        if has(theirs) and theirs else NO_VALUE})
    return sorted(records, key=lambda r: [fmt.format_int(r[k]) if k == "batch_size" else
                                          str(r.get(k)) for k in (*same, "ours", "variant")])


REFERENCE_LOOPS = Table(
    "Against reference loops", _reference_rows,
    "Against reference loops: seconds per epoch of the compiled train step (suite `train`, "
    "XLA on where measured) and of each reference loop (suite `baseline`: keras-fit = "
    "`model.fit` with a whole epoch per execution; tutorial-eager = the tutorial's eager "
    "loop, timed over a fixed number of steps and scaled to an epoch), both from the same "
    "run; speedup = reference time over compiled-step time. {selection}",
    (col("label", "machine/device"), col("model"), CASE[1], col("precision"), col("backend"),
     col("ours", "compiled step s/epoch", "r"),
     Column("reference", lambda r: str(r.get("variant") or r.get("case"))),
     col("theirs", "reference s/epoch", "r"), col("speedup", align="r",
                                                  text=fmt.format_speedup)))
FAILURES = Table(
    "Failures", lambda failures: failures.to_dict("records"),
    lambda records, all_runs: "Failures of every run." if all_runs else (
        "Failures still current: cases whose newest run failed (a case that succeeded "
        "before keeps that result in the tables above)."),
    (col("machine_id", "machine"), col("run"), col("suite"), col("case"),
     col("error", text=fmt.first_line)), "No failures.")


def _gflops(rates: dict) -> str:
    return ", ".join(f"{k} {fmt.format_gflops(float(v))}" for k, v in rates.items() if has(v))


def machine_rows(runs: list[Run]) -> list[dict]:
    """One record per machine id: its newest run's description and calibrations."""
    records = []
    for machine_id in sorted({run.machine_id for run in runs}):
        own = sorted((r for r in runs if r.machine_id == machine_id),
                     key=lambda r: (r.datetime, r.path.name))
        info = own[-1].machine
        # Each framework times its own matmul: with several backends, each one's newest.
        by_backend = {str(r.machine.get("backend")): calibration(r.machine) for r in own}
        best = best_calibration(own).get(machine_id, {})
        records.append({**info, "machine_id": machine_id, "runs": len(own), "calibration": (
            "; ".join(f"{b}: {_gflops(dict(sorted(v.items())))}"
                      for b, v in sorted(by_backend.items())) if len(by_backend) > 1
            else _gflops(dict(sorted(calibration(info).items()))) or NO_VALUE),
            "newest": f"{own[-1].path.name} ({own[-1].datetime:%Y-%m-%d %H:%M} UTC)",
            "best": "; ".join(f"{device} " + _gflops(
                {d: rates[d] for d in sorted(rates, key=lambda d: order("dtype", d))})
                for device, rates in sorted(best.items())) or NO_VALUE})
    return records


MACHINES = Table(
    "Machines", machine_rows,
    "Machines: calibration GFLOP/s is each device's measured float32 matmul rate in the "
    "newest run; each framework times its own matmul, so a machine run under several "
    "backends lists each one's figure. Best peak: the fastest matmul measured on each device "
    "in each dtype by any backend in any run, the denominator of the peak shares below.",
    (col("machine_id", "machine"), col("cpu_model", "CPU", text=lambda v: v or NO_VALUE),
     col("cpu_cores", "cores", "r", fmt.format_int),
     col("gpus", "GPUs", text=lambda v: ", ".join(map(str, v)) if v else "none"),
     col("memory_bytes", "memory", "r", lambda v: f"{v / 1e9:.1f} GB" if v else NO_VALUE),
     Column("versions", lambda m: f"TF {m.get('tensorflow') or NO_VALUE} / "
                                  f"Keras {m.get('keras') or NO_VALUE}"),
     col("runs", align="r"), col("newest", "newest run"),
     col("calibration", "calibration GFLOP/s"), col("best", "best peak GFLOP/s")),
    "No machines.")
RUN_STATUS_TEXT = {"complete": "complete", "interrupted": "interrupted (Ctrl-C)",
                   "incomplete": "incomplete (died; recovered)"}


def _run_record(run: Run) -> dict:
    spoiled = NO_VALUE if run.spoiled is None else run.spoiled
    return {"run": run.path.name, "machine": run.machine_id,
            "date": f"{run.datetime:%Y-%m-%d %H:%M}",
            "backend": run.machine.get("backend") or NO_VALUE, "data": run.data,
            "status": RUN_STATUS_TEXT.get(run.status, run.status),
            "group": (run.run_group or NO_VALUE) + (f" ({run.repeat})" if run.repeat else ""),
            "cases": run.cases, "failures": len(run.failures), "plan": _plan_text(run),
            # A session beside another one held no lock: every row of it is concurrent.
            "spoiled": run.cases if run.machine.get("concurrent") is True else spoiled}


def _plan_text(run: Run) -> str:
    """'est. 4.8 min, took 3.7 min, budget 10.0 min, 3 left out' (schema 3), else —;
    a run of shards: the shards' sums, 'over 4 shards (longest took 1.1 min)'."""
    plan = run.plan
    if not plan or not has(plan.get("estimate_seconds")):
        return NO_VALUE
    text = f"est. {fmt.format_minutes(float(plan['estimate_seconds']))}"
    if has(plan.get("elapsed_seconds")):
        text += f", took {fmt.format_minutes(float(plan['elapsed_seconds']))}"
    if has(plan.get("budget_seconds")):
        text += f", budget {fmt.format_minutes(float(plan['budget_seconds']))}"
    if has(plan.get("longest_shard_seconds")):  # shards merged: their sums, and the longest
        text += (f" over {plan['shards_with_plan']} shards (longest took "
                 f"{fmt.format_minutes(float(plan['longest_shard_seconds']))})")
    if run.not_run:
        text += f", {len(run.not_run)} left out"
    return text


#: Runs the Runs table lists per machine, the newest; one more row counts the rest.
RUNS_PER_MACHINE = 20


def run_rows(runs: list[Run]) -> list[dict]:
    """Each machine's newest :data:`RUNS_PER_MACHINE` runs, oldest first, and a row that
    counts the older ones (report.csv with ``--all-runs`` and the index hold them all)."""
    by_machine: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.machine_id, r.datetime, r.path.name)):
        by_machine.setdefault(run.machine_id, []).append(run)
    rows = []
    for machine_id, mine in by_machine.items():
        older = len(mine) - RUNS_PER_MACHINE
        if older > 0:
            rows.append({**{key: NO_VALUE for key in _RUN_KEYS}, "machine": machine_id,
                         "run": f"(+{older} older run{'s' if older != 1 else ''} not listed)"})
        rows += [_run_record(run) for run in mine[-RUNS_PER_MACHINE:]]
    return rows


_RUN_KEYS = ("run", "machine", "date", "backend", "data", "status", "group", "cases",
             "failures", "plan", "spoiled")

RUNS = Table(
    "Runs", run_rows,
    "Runs: one result file (one process) each, the newest 20 of each machine. Status: "
    "complete; interrupted = stopped by Ctrl-C; incomplete = the process died and the "
    "cases it finished were recovered from its journal. A run of a `--bench-repeat` group "
    "shows its group id and repeat i/n. Spoiled = "
    "rows contended or concurrent (— = not measured: schema-1 file). Plan: the run's "
    "estimate of its time beside the time it took, its budget and the cases it left out "
    "(— = a run before plans).",
    (col("run"), col("machine"), col("date", "date (UTC)"), col("backend"), col("data"),
     col("status"), col("group"), col("cases", align="r"), col("failures", align="r"),
     col("spoiled", align="r"), col("plan")), "No runs.")


def not_run_rows(runs: list[Run], all_runs: bool = False) -> list[dict]:
    """The cases left out by the newest run of each machine (every run's: ``all_runs``)."""
    newest: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: (r.datetime, r.path.name)):
        newest[run.machine_id] = run
    chosen = runs if all_runs else list(newest.values())
    return [{"machine": run.machine_id, "run": run.path.name, **entry}
            for run in sorted(chosen, key=lambda r: (r.machine_id, r.datetime))
            for entry in run.not_run]


NOT_RUN = Table(
    "Not run", lambda runs: not_run_rows(*runs) if isinstance(runs, tuple) else
    not_run_rows(runs),
    "Not run: cases the run's plan or budget left out (`--bench-budget`), each with its "
    "reason; the newest run of each machine (every run with `--all-runs`).",
    (col("machine"), col("run"), col("suite"), col("case"), col("reason")))
SPREAD = Table(
    "Run-to-run spread", lambda spread: sorted(spread.to_dict("records"), key=lambda r: (
        r["label"], order("suite", r["suite"]), r["case"])),
    lambda records, all_runs: (
        "Run-to-run spread: the median time per round of each run (one process) of a case, "
        "fastest, median and slowest run, and spread = slowest / fastest - 1, rows contended "
        "or concurrent left out. A difference smaller than a case's spread is what separate "
        "runs of the same code show on that machine; the gate (`--compare`) judges a change "
        "against it. Beside it, the precision one run claims on its own: the median over "
        "those runs of the 99% interval of the figure (`ci_halfwidth`; — = runs before "
        "intervals). Median spread over the cases: " + "; ".join(
            f"`{m}` {fmt.format_run_spread(v)}" for m, v in
            pd.DataFrame(records).groupby("machine_id")["spread"].median().items()) + "."),
    (col("label", "machine/device"), col("suite"), col("case"), col("runs", align="r"),
     *(col(name, align="r", text=fmt.format_seconds) for name in ("fastest", "median", "slowest")),
     col("spread", align="r", text=fmt.format_run_spread),
     col("within", "within a run (99% interval)", "r",
         lambda v: f"±{100 * v:.1f}%" if has(v) else NO_VALUE)))
