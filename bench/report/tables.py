"""The report's tables: each one a :class:`Table` declaration, all drawn by :func:`render`.

A comparison (the declaration has a ``cell``) has a row per case, a column per
machine/device label, then speedups against the label ``--relative-to`` names; a list has
a row per record. Cells: ``276k/s ±2.0%`` samples/s of the median round, ``±`` the IQR of
the round times as % of their median; ``3.10×`` a speedup (above 1 = faster); ``—`` none.
Marks the caption explains: ``†`` contended, ``‡`` concurrent, ``§`` stopped on the budget
(with its interval), ``‼`` above 100% of peak.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

from bench.report import text as fmt
from bench.report.loader import Run, best_calibration, calibration
from bench.report.selection import is_spoiled, selection_phrase
from bench.report.text import NO_VALUE, ORDERS, has, order, yes

MIXED_PRECISIONS = ("fp16", "bf16")
#: The ``xla`` axis: XLA for TensorFlow (``jit_compile``) and JAX (``jax.jit``),
#: ``torch.compile`` for PyTorch.
COMPILED = "XLA / torch.compile"
COMPILED_VS_NOT = f"{COMPILED} on vs off"
MARKS = {  # a mark in a cell -> its legend, added to the caption of a table that shows it
    "‼": "‼ = above 100%: faster than the best calibration matmul of that dtype (the "
         "calibration was low, or the count is off)",
    "†": "† = contended: other processes took more than the run's threshold of the CPU "
         "(or used the GPU) while it was timed, so the figure is not the machine's speed",
    "‡": "‡ = concurrent: timed while another bench session held the machine",
    "§": "§ = stopped on the budget: its 99% interval (± beside it) did not reach the "
         "precision target before the case's share of the run's budget was spent"}


def speedup(value: float | None, reference: float | None,
            higher_is_better: bool = True) -> float | None:
    """How many times faster ``value`` is than ``reference`` (above 1 = faster): a ratio of
    rates, or of times the other way round. None when either is missing or 0."""
    if not (has(value) and has(reference) and value and reference):
        return None
    return value / reference if higher_is_better else reference / value


# --------------------------------------------------------------------------- the spec

class Column(NamedTuple):
    """A column: its header, a record's cell text, alignment, the field rows sort by."""

    header: str
    show: Callable[[dict], str]
    align: str = "l"
    field: str | None = None


def col(field: str, header: str | None = None, align: str = "l",
        text: Callable[[object], str] = str) -> Column:
    """A column showing one field of each record."""
    return Column(header or field, lambda r: text(r.get(field)), align, field)


CASE = (col("model"), col("batch_size", "batch", text=fmt.format_int), col("precision"),
        col("xla", COMPILED, text=lambda v: "yes" if yes(v) else "no"), col("backend"))


@dataclasses.dataclass(frozen=True)
class Table:
    """One table of the report.

    ``rows`` picks the records from the data (a list table shows them in that order);
    ``caption`` has ``{spread}``, ``{speedup}`` and ``{selection}`` filled in, or is a
    function of the records and ``all_runs``; ``empty`` is the caption without records
    (None: the table is left out). A comparison gives ``cell``, a case's text on one
    machine/device, and for speedup columns ``value`` and ``basis`` (what they compare).
    """

    title: str
    rows: Callable[[object], list[dict]]
    caption: str | Callable[[list[dict], bool], str]
    columns: tuple[Column, ...] = CASE
    empty: str | None = None
    cell: Callable[[dict], str] | None = None
    value: Callable[[dict], float | None] | None = None
    basis: str | None = None
    higher_is_better: bool = True


def _marks(record: dict) -> str:
    marks = "†" * yes(record.get("contended")) + "‡" * yes(record.get("concurrent"))
    if record.get("stop_reason") == "budget":
        width = record.get("ci_halfwidth")
        marks += (f" (99%: ±{100 * width:.1f}%)" if has(width) else "") + "§"
    return marks


def _case_order(record: dict, columns: tuple[Column, ...]) -> tuple:
    """Model (mlp, cnn), batch, precision (fp32, fp16, bf16), XLA off first, backend..."""
    def one(field: str, value: object) -> tuple | bool:
        if field in ORDERS:
            return order(field, value)
        if field == "xla":
            return yes(value)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and has(value)
        return (0, value, "") if numeric else (1, 0.0, str(value))
    return tuple(one(column.field, record.get(column.field)) for column in columns)


def _comparison(table: Table, records: list[dict], reference: str | None) -> tuple:
    """Headers, alignment and rows of a comparison: cases x labels, then speedups."""
    columns = table.columns
    if any(has(r.get("variant")) for r in records):  # reference loops differ in variant only
        columns += (col("variant", text=lambda v: str(v) if has(v) else NO_VALUE),)
    first = reference if table.basis else None  # the column speedups are relative to
    labels = sorted({r["label"] for r in records}, key=lambda label: (label != first, label))
    others = labels[1:] if first in labels else []
    cases: dict[tuple, dict[str, dict]] = {}
    sort_keys = {}
    for record in records:
        case = tuple(column.show(record) for column in columns)
        cases.setdefault(case, {})[record["label"]] = record
        sort_keys[case] = _case_order(record, columns)
    body = []
    for case in sorted(cases, key=sort_keys.get):
        on = cases[case]
        base = table.value(on[first]) if others and first in on else None
        body.append([*case, *(table.cell(on[label]) + _marks(on[label]) if label in on
                              else NO_VALUE for label in labels),
                     *(fmt.format_speedup(speedup(table.value(on[label]), base,
                                                  table.higher_is_better))
                       if label in on else NO_VALUE for label in others)])
    headers = [c.header for c in columns] + labels + [f"speedup {label}" for label in others]
    align = [c.align for c in columns] + ["r"] * (len(labels) + len(others))
    return _drop_empty(headers, align, body, len(columns))


def _no_figure(cell: str) -> bool:
    return cell == NO_VALUE


def _drop_empty(headers: list[str], align: list[str], body: list[list[str]],
                keys: int) -> tuple[list[str], list[str], list[list[str]]]:
    """Leave out the figure columns (after the first ``keys``) and the rows that hold no
    figure: every cell ``—`` (``unavailable`` is a finding: no counter there)."""
    body = [row for row in body if not all(_no_figure(cell) for cell in row[keys:])]
    keep = [i for i in range(len(headers)) if i < keys or
            not all(_no_figure(row[i]) for row in body)]
    return ([headers[i] for i in keep], [align[i] for i in keep],
            [[row[i] for i in keep] for row in body])


def render(table: Table, data: object, reference: str | None = None,
           all_runs: bool = False) -> str | None:
    """The caption and markdown of ``table`` over ``data``, what ``table.rows`` reads (the
    selected frame for most tables); None when it has nothing to show."""
    records = table.rows(data)
    if not records:
        return None if table.empty is None else f"_{table.empty}_"
    if table.cell is None:
        headers, align = [c.header for c in table.columns], [c.align for c in table.columns]
        body = [[column.show(record) for column in table.columns] for record in records]
    else:
        headers, align, body = _comparison(table, records, reference)
    if callable(table.caption):
        text = table.caption(records, all_runs)
    else:
        text = table.caption.format(
            spread="± = interquartile range of the round times as % of their median",
            selection=selection_phrase(all_runs),
            speedup=f"speedup = {table.basis} relative to `{reference}` (above 1 = faster)."
            if reference in {r.get("label") for r in records}
            else f"no speedups: `{reference}` has no result here.")
    text += "".join(f" {legend}." for mark, legend in MARKS.items()
                    if any(mark in cell for row in body for cell in row))
    return f"_{text}_\n\n" + fmt.markdown_table(headers, body, align)


# --------------------------------------------------------------------------- comparisons

def suite(*names: str) -> Callable[[pd.DataFrame], list[dict]]:
    """The records of the given suites."""
    return lambda frame: [] if frame.empty else \
        frame[frame["suite"].isin(names)].to_dict("records")


def _throughput(record: dict) -> str:
    rate = record.get("samples_per_second")
    return f"{fmt.format_si(rate)}/s" + fmt.format_spread(record) if has(rate) else NO_VALUE


def _seconds(field: str) -> Callable[[dict], str]:
    """A time: ``field``, else the median round, and its spread."""
    def cell(record: dict) -> str:
        seconds = _first(record, field, "median")
        return fmt.format_seconds(seconds) + fmt.format_spread(record) if has(seconds) else NO_VALUE
    return cell


def _first(record: dict, *fields: str) -> float | None:
    """The first of ``fields`` that the record has."""
    return next((record[f] for f in fields if has(record.get(f))), None)


def _latency(record: dict) -> str:
    values = [record.get(f"latency_{p}_ms") for p in ("p50", "p90", "p99")]
    return " / ".join(map(fmt.sig3, values)) + " ms" if all(map(has, values)) else NO_VALUE


def _tta_seconds(record: dict) -> float | None:
    return _first(record, "seconds_to_accuracy") if yes(record.get("reached")) else None


def _tta(record: dict) -> str:
    epochs, accuracy, seconds = record.get("epochs"), record.get("final_accuracy"), \
        _tta_seconds(record)
    detail = [f"{int(epochs)} ep"] * has(epochs) + [f"acc {accuracy:.3f}"] * has(accuracy)
    shown = "not reached" if seconds is None else fmt.format_seconds(seconds)
    return shown + fmt.format_spread(record) * (seconds is not None) + (
        f" ({', '.join(detail)})" if detail else "")


def _peak(record: dict) -> str:
    """``56.0% (275 GFLOP/s)``; ``‼`` above 100%; ``—`` without a calibration of the dtype."""
    gflops, share = record.get("gflops"), record.get("peak_share")
    if not has(gflops):
        return NO_VALUE
    rate = f"{fmt.sig3(gflops / 1000)} TFLOP/s" if gflops >= 1000 else \
        f"{fmt.sig3(gflops)} GFLOP/s"
    shown = f"{fmt.sig3(100 * share)}%" + "‼" * (share > 1) if has(share) else NO_VALUE
    return f"{shown} ({rate})"


def _energy(record: dict) -> str:
    """``95.2 J, 630/J, 210 W (nvml)``; ``unavailable`` where nothing measured energy."""
    source, joules = record.get("energy_source"), record.get("energy_joules")
    if not isinstance(source, str) or source in ("", "unavailable") or not has(joules):
        return "unavailable" if isinstance(source, str) and source else NO_VALUE
    per_joule, watts = record.get("samples_per_joule"), record.get("watts")
    return ", ".join([f"{fmt.sig3(joules)} J"] + [f"{fmt.format_si(per_joule)}/J"] * has(
        per_joule) + [f"{fmt.sig3(watts)} W"] * has(watts)) + f" ({source})"


def _with_gflops(records: list[dict]) -> list[dict]:
    """Every record, when some has GFLOP/s; else none (no share of peak to show)."""
    return records if any(has(r.get("gflops")) for r in records) else []


def _rate(record: dict) -> float | None:
    return record.get("samples_per_second")


TRAINING = Table(
    "Training throughput", suite("train"),
    "Training throughput: samples/s of the median timed round (an epoch of 60,000 images, "
    "or the case's fixed number of steps), {spread}; {speedup} {selection}",
    empty="No training results.", cell=_throughput, value=_rate, basis="samples/s")
INFERENCE = Table(
    "Inference throughput", suite("inference"),
    "Inference throughput: samples/s of the median pass over the 10,000 test images, "
    "{spread}; {speedup} {selection}",
    empty="No inference results.", cell=_throughput, value=_rate, basis="samples/s")
LATENCY = Table(
    "Inference latency", suite("latency"),
    "Single-sample inference latency (batch 1): p50 / p90 / p99 in ms; {speedup} {selection}",
    empty="No latency results.", cell=_latency, value=lambda r: r.get("latency_p50_ms"),
    basis="p50 latency", higher_is_better=False)
TIME_TO_ACCURACY = Table(
    "Time to accuracy", suite("tta"),
    "Time to accuracy: wall seconds until the test accuracy reached the target, compile "
    "included (epochs run, final test accuracy); {speedup} {selection}",
    CASE + (col("target_accuracy", "target", text=lambda v: f"{v:.3f}" if has(v) else NO_VALUE),),
    "No time-to-accuracy results.", _tta, _tta_seconds, "time, when both reached the target,",
    higher_is_better=False)
COMPILE = Table(
    "Compile time", suite("compile"),
    "Compile time: seconds to trace and compile the train step (the model is built before "
    "the timer starts), {spread}; {speedup} {selection}",
    empty="No compile-time results.", cell=_seconds("compile_seconds"),
    value=lambda r: _first(r, "compile_seconds", "median"), basis="time",
    higher_is_better=False)
PEAK = Table(
    "Share of calibrated peak",
    lambda frame: _with_gflops(suite("train", "inference")(frame)),
    "Share of peak: achieved GFLOP/s (in brackets) over the best matmul rate measured on "
    "that device in the dtype the case computes in (fp32 float32, fp16 float16, bf16 "
    "bfloat16) by any backend in any run of the machine (best peak, see Machines), so "
    "shares compare across backends; — = no calibration in that dtype on that machine "
    "(schema-1 files calibrated float32 only). FLOPs are counted exactly for the dense and "
    "convolution layers, a multiply-add = 2: inference = the forward pass; training = 3 x "
    "the forward pass (forward, weight gradients, input gradients) less the first layer's "
    "input gradient, which is never computed. The usual 6 x MACs per sample counts that "
    "gradient too: for the MLP it gives 1.46 MFLOP a sample against our 1.06 (its first "
    "layer holds 82% of the work), for the CNN 25.4 against 25.0, so a 6 x MACs figure "
    "reads 38% (MLP) or 2% (CNN) higher than ours for the same training run. {selection}",
    (col("suite"),) + CASE, "No training or inference results with GFLOP/s.", _peak)
ENERGY = Table(
    "Energy", lambda frame: [r for r in suite("train", "inference")(frame)
                             if has(r.get("energy_source"))],
    "Energy: joules per epoch (training) or per pass over the 10,000 test images "
    "(inference), samples per joule and average watts over the timed rounds, with the "
    "counter read: nvml (the GPU's total-energy counter) or rapl (the CPU package); "
    "unavailable = the device has no counter this run could read (never 0). {selection}",
    (col("suite"),) + CASE, cell=_energy)
#: The suites with a table of their own (the rest get :func:`other_suite`).
DEDICATED_SUITES = ("train", "inference", "latency", "tta", "compile", "scaling", "baseline")


def other_suite(name: str, frame: pd.DataFrame) -> Table:
    """A suite without a table of its own: samples/s when every row has it, else time."""
    rates = all(has(r.get("samples_per_second")) for r in suite(name)(frame))
    return Table(f"Suite {name}", suite(name), f"Suite `{name}`: " + (
        "samples/s of the median round" if rates else "median seconds per round")
        + ", {spread}; {speedup} {selection}", empty=f"No `{name}` results.",
        cell=_throughput if rates else _seconds("median"),
        value=_rate if rates else lambda r: r.get("median"),
        basis="samples/s" if rates else "time", higher_is_better=rates)


# --------------------------------------------------------------------------- lists

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
    return sorted(records, key=lambda r: _case_order(r, SCALING.columns[:8]))


SCALING = Table(
    "Scaling", scaling_rows,
    "Scaling: samples/s per replica count, {spread}; speedup = thr(N)/thr(1) and efficiency "
    "= thr(N)/(N·thr(1)) against the 1-replica run of the same setup; test accuracy after "
    "the run's epochs. {selection}",
    (col("label", "machine/device"), col("model"), col("strategy"), col("backend"),
     col("precision"), CASE[3], col("per_replica_batch", "per-replica batch",
                                    text=fmt.format_int),
     col("replicas", align="r", text=fmt.format_int),
     Column("global batch", lambda r: fmt.format_int(_first(r, "global_batch", "batch_size")),
            "r"),
     Column("samples/s", lambda r: _throughput(r) + _marks(r), "r"),
     col("speedup", "speedup vs 1", "r", fmt.format_speedup),
     col("efficiency", align="r", text=lambda v: f"{fmt.sig3(100 * v)}%" if has(v) else NO_VALUE),
     col("test_accuracy", "test accuracy", "r", lambda v: f"{v:.4f}" if has(v) else NO_VALUE)))


def _reference_rows(frame: pd.DataFrame) -> list[dict]:
    """Each reference loop (suite ``baseline``) beside the compiled train step of the same
    machine/device, model, batch, precision and backend (XLA on where both exist)."""
    trains, records = suite("train")(frame), []
    same = ("label", "model", "batch_size", "precision", "backend")
    for r in suite("baseline")(frame):
        steps = [t for t in trains if all(t.get(k) == r.get(k) for k in same)]
        step = ([t for t in steps if yes(t.get("xla"))] or steps or [{}])[0]
        ours, theirs = step.get("seconds_per_epoch"), r.get("seconds_per_epoch")
        records.append({**r, "speedup": speedup(ours, theirs, higher_is_better=False),
                        "ours": fmt.format_seconds(ours) + _marks(step)
                        if has(ours) and ours else NO_VALUE,
                        "theirs": fmt.format_seconds(theirs) + _marks(r)
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
    rows = [b["extra_info"] for b in run.benchmarks]
    spoiled = sum(map(is_spoiled, rows)) if any("contended" in e for e in rows) else NO_VALUE
    return {"run": run.path.name, "machine": run.machine_id,
            "date": f"{run.datetime:%Y-%m-%d %H:%M}",
            "backend": run.machine.get("backend") or NO_VALUE, "data": run.data,
            "status": RUN_STATUS_TEXT.get(run.status, run.status),
            "group": (run.run_group or NO_VALUE) + (f" ({run.repeat})" if run.repeat else ""),
            "cases": len(rows), "failures": len(run.failures), "plan": _plan_text(run),
            # A session beside another one held no lock: every row of it is concurrent.
            "spoiled": len(rows) if run.machine.get("concurrent") is True else spoiled}


def _plan_text(run: Run) -> str:
    """'est. 4.8 min, took 3.7 min, budget 10.0 min, 3 left out' (schema 3), else —."""
    plan = run.plan
    if not plan or not has(plan.get("estimate_seconds")):
        return NO_VALUE
    text = f"est. {fmt.format_minutes(float(plan['estimate_seconds']))}"
    if has(plan.get("elapsed_seconds")):
        text += f", took {fmt.format_minutes(float(plan['elapsed_seconds']))}"
    if has(plan.get("budget_seconds")):
        text += f", budget {fmt.format_minutes(float(plan['budget_seconds']))}"
    if run.not_run:
        text += f", {len(run.not_run)} left out"
    return text


RUNS = Table(
    "Runs", lambda runs: [_run_record(run) for run in sorted(
        runs, key=lambda r: (r.machine_id, r.datetime, r.path.name))],
    "Runs: one result file (one process) each. Status: complete; interrupted = stopped by "
    "Ctrl-C; incomplete = the process died and the cases it finished were recovered from its "
    "journal. A run of a `--bench-repeat` group shows its group id and repeat i/n. Spoiled = "
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
