"""The report's tables: each one a :class:`Table` declaration, all drawn by :func:`render`.

A comparison (the declaration has a ``cell``) has a row per case, a column per
machine/device label, then speedups against the label ``--relative-to`` names; a list has
a row per record. Cells: ``276k/s ±2.0%`` samples/s of the median round, ``±`` the IQR of
the round times as % of their median; ``3.10×`` a speedup (above 1 = faster); ``—`` none.
Marks the caption explains: ``†`` contended, ``‡`` concurrent, ``§`` stopped on the budget
(with its interval), ``‼`` above 100% of peak.

Here: the spec, the renderer and the comparisons of cases across machines; the list
tables (machines, runs, not run, failures, run-to-run spread, scaling, reference loops,
mixed precision and XLA) are in :mod:`bench.report.lists`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import pandas as pd

from bench.report import text as fmt
from bench.report.selection import selection_phrase
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


def cell_marks(record: dict) -> str:
    marks = "†" * yes(record.get("contended")) + "‡" * yes(record.get("concurrent"))
    if record.get("stop_reason") == "budget":
        width = record.get("ci_halfwidth")
        marks += (f" (99%: ±{100 * width:.1f}%)" if has(width) else "") + "§"
    return marks


def case_order(record: dict, columns: tuple[Column, ...]) -> tuple:
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
        sort_keys[case] = case_order(record, columns)
    body = []
    for case in sorted(cases, key=sort_keys.get):
        on = cases[case]
        base = table.value(on[first]) if others and first in on else None
        body.append([*case, *(table.cell(on[label]) + cell_marks(on[label]) if label in on
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


def throughput(record: dict) -> str:
    rate = record.get("samples_per_second")
    return f"{fmt.format_si(rate)}/s" + fmt.format_spread(record) if has(rate) else NO_VALUE


def _seconds(field: str) -> Callable[[dict], str]:
    """A time: ``field``, else the median round, and its spread."""
    def cell(record: dict) -> str:
        seconds = first_of(record, field, "median")
        return fmt.format_seconds(seconds) + fmt.format_spread(record) if has(seconds) else NO_VALUE
    return cell


def first_of(record: dict, *fields: str) -> float | None:
    """The first of ``fields`` that the record has."""
    return next((record[f] for f in fields if has(record.get(f))), None)


def _latency(record: dict) -> str:
    values = [record.get(f"latency_{p}_ms") for p in ("p50", "p90", "p99")]
    return " / ".join(map(fmt.sig3, values)) + " ms" if all(map(has, values)) else NO_VALUE


def _tta_seconds(record: dict) -> float | None:
    return first_of(record, "seconds_to_accuracy") if yes(record.get("reached")) else None


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
    empty="No training results.", cell=throughput, value=_rate, basis="samples/s")
INFERENCE = Table(
    "Inference throughput", suite("inference"),
    "Inference throughput: samples/s of the median pass over the 10,000 test images, "
    "{spread}; {speedup} {selection}",
    empty="No inference results.", cell=throughput, value=_rate, basis="samples/s")
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
    value=lambda r: first_of(r, "compile_seconds", "median"), basis="time",
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
        cell=throughput if rates else _seconds("median"),
        value=_rate if rates else lambda r: r.get("median"),
        basis="samples/s" if rates else "time", higher_is_better=rates)
