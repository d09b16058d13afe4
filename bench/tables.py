"""Render the report's markdown tables from the long-form results.

Every ``render_*`` function is pure: it takes the selected rows (one per machine,
suite and case, see :func:`bench.loader.select_runs`) and returns a caption line
plus a markdown table as a string, so tests can compare it with stored text.

Cell formats (each caption repeats the one it uses):

* throughput ``276k/s ±2.0%``: samples per second of the median round, ``±`` the
  interquartile range (IQR) of the round times as a percentage of their median;
  no ``±`` when there is a single round;
* time ``0.217 s ±1.2%`` (``41.2 ms`` below 0.1 s), same spread;
* speedup ``3.10×``: how many times faster than the baseline machine/device
  (above 1 = faster), from throughput or time;
* ``—``: no result.

Marks after a cell (each caption with a marked cell gives the legend): ``†`` contended
(other processes took more than the session's ``max_contention`` share of the CPU while
the row was timed, or used its GPU), ``‡`` concurrent (timed while another bench session
held the machine), ``‼`` a share of peak above 100%.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from bench.loader import Run, is_missing, is_spoiled

NO_VALUE = "—"
MODEL_ORDER = {"mlp": 0, "cnn": 1}
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "bf16": 2}
BACKEND_ORDER = {"tensorflow": 0}
#: Suites with a table of their own; any other suite gets a generic table.
DEDICATED_SUITES = ("train", "inference", "latency", "tta", "compile", "scaling", "baseline")
SUITE_ORDER = {"train": 0, "inference": 1, "latency": 2, "tta": 3, "compile": 4, "scaling": 5,
               "baseline": 6}
#: Mixed-precision and XLA comparisons drawn in the plot and the table.
MIXED_PRECISIONS = ("fp16", "bf16")
ERROR_WIDTH = 100

CONTENDED_MARK = "†"
CONCURRENT_MARK = "‡"
ABOVE_PEAK_MARK = "‼"
MARK_LEGEND = {
    CONTENDED_MARK: (f"{CONTENDED_MARK} = contended: other processes took more than the "
                     f"run's threshold of the CPU (or used the GPU) while it was timed, "
                     f"so the figure is not the machine's speed"),
    CONCURRENT_MARK: (f"{CONCURRENT_MARK} = concurrent: timed while another bench session "
                      f"held the machine"),
}


# --------------------------------------------------------------------------- formatting

def sig3(value: float) -> str:
    """Three significant digits, trailing zeros kept (``0.720``, ``12.0``, ``276``)."""
    text = f"{value:#.3g}"
    if "e" in text:
        # Large values: callers scale most of them first; the rest read best in full.
        # Tiny ones keep the exponent rather than rounding to 0.
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2e}"
    return text.rstrip(".")


def format_si(value: float) -> str:
    """A count with k/M/G suffix and three significant digits: ``276k``, ``1.23M``."""
    rounded = float(f"{value:.3g}")
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(rounded) >= threshold:
            return sig3(rounded / threshold) + suffix
    return sig3(rounded)


def format_rate(samples_per_second: float) -> str:
    return f"{format_si(samples_per_second)}/s"


def format_seconds(seconds: float) -> str:
    """``0.217 s``, ``41.2 ms``, ``1,234 s``."""
    if seconds < 0.1:
        return f"{sig3(seconds * 1000)} ms"
    if seconds >= 1000:
        return f"{seconds:,.0f} s"
    return f"{sig3(seconds)} s"


def format_spread(iqr: float, median: float, rounds: float) -> str:
    """`` ±1.2%``: IQR of the rounds relative to their median; empty for one round."""
    if is_missing(iqr) or is_missing(median) or not median or is_missing(rounds) or rounds < 2:
        return ""
    percent = 100.0 * iqr / median
    return f" ±{percent:.1f}%" if percent < 10 else f" ±{percent:.0f}%"


def format_run_spread(spread: float) -> str:
    """Slowest / fastest run - 1 as a percentage: ``0.4%``, ``15%``; ``—`` for one run."""
    if is_missing(spread):
        return NO_VALUE
    percent = 100.0 * spread
    return f"{percent:.1f}%" if percent < 10 else f"{percent:.0f}%"


def format_speedup(ratio: float | None) -> str:
    """``3.10×``, ``41.2×``, ``250×``."""
    if ratio is None or is_missing(ratio) or not math.isfinite(ratio):
        return NO_VALUE
    if ratio < 10:
        return f"{ratio:.2f}×"
    if ratio < 100:
        return f"{ratio:.1f}×"
    return f"{ratio:.0f}×"


def format_percent(fraction: float) -> str:
    return f"{sig3(100.0 * fraction)}%"


def format_flops(gflops: float) -> str:
    return f"{sig3(gflops / 1000)} TFLOP/s" if gflops >= 1000 else f"{sig3(gflops)} GFLOP/s"


def format_gflops_plain(gflops: float) -> str:
    """Calibration figures: ``96.4``, ``800``, ``51,200``."""
    return f"{gflops:,.0f}" if gflops >= 100 else f"{gflops:.1f}"


def format_bytes(count: float) -> str:
    return f"{count / 1e9:.1f} GB"


def escape_cell(text: object) -> str:
    """Keep a cell on one line and its pipes from splitting the row."""
    return str(text).replace("\n", " ").replace("|", "\\|")


def first_line(error: object, width: int = ERROR_WIDTH) -> str:
    line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def number(value: object) -> float | None:
    """A finite float, or None for missing/NaN/non-numeric values."""
    if value is None or isinstance(value, bool):
        return None
    try:
        converted = float(value)
    except (TypeError, ValueError):
        return None
    return converted if math.isfinite(converted) else None


def is_true(value: object) -> bool:
    """True only for real booleans that are true (not for NaN or the string "False")."""
    return value is True or (isinstance(value, (np.bool_,)) and bool(value))


# --------------------------------------------------------------------------- markdown

def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]],
                   align: Sequence[str]) -> str:
    """A padded markdown table; ``align`` holds ``"l"`` or ``"r"`` per column."""
    body = [[escape_cell(cell) for cell in row] for row in rows]
    head = [escape_cell(h) for h in headers]
    widths = [max([len(head[i])] + [len(row[i]) for row in body] + [3])
              for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.rjust(w) if a == "r" else cell.ljust(w)
                  for cell, w, a in zip(cells, widths, align, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if a == "r" else ("-" * w)
                              for w, a in zip(widths, align, strict=True)) + " |"
    return "\n".join([line(head), rule] + [line(row) for row in body])


def caption(text: str) -> str:
    return f"_{text}_"


def cell_marks(record: dict) -> str:
    """``†`` for a contended row, ``‡`` for a concurrent one (see :data:`MARK_LEGEND`)."""
    marks = ""
    if record.get("contended") is True or (isinstance(record.get("contended"), np.bool_)
                                           and bool(record.get("contended"))):
        marks += CONTENDED_MARK
    if record.get("concurrent") is True or (isinstance(record.get("concurrent"), np.bool_)
                                            and bool(record.get("concurrent"))):
        marks += CONCURRENT_MARK
    return marks


def marks_legend(rows: pd.DataFrame | Iterable[dict]) -> str:
    """The legend of the marks that occur in ``rows`` ("" when none does)."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    present = {mark for record in records for mark in cell_marks(record)}
    return "".join(f" {MARK_LEGEND[mark]}." for mark in MARK_LEGEND if mark in present)


def selection_phrase(all_runs: bool) -> str:
    if all_runs:
        return ("All runs pooled: statistics of every round of every run of a case; "
                "other metrics are medians across runs.")
    return "Newest run per machine and case (`--all-runs` pools all runs)."


# --------------------------------------------------------------------------- baseline

def default_baseline(frame: pd.DataFrame) -> str | None:
    """The first CPU machine/device label in sorted order (else the first label)."""
    if frame.empty:
        return None
    cpu = sorted(frame.loc[frame["device_kind"] == "CPU", "label"].unique())
    return cpu[0] if cpu else sorted(frame["label"].unique())[0]


def choose_baseline(frame: pd.DataFrame, requested: str | None) -> tuple[str | None, str | None]:
    """Resolve ``--baseline`` (a machine id or a machine/device label).

    Returns ``(label, problem)``: ``problem`` describes why ``requested`` could not
    be used (the default is returned then), else None.
    """
    default = default_baseline(frame)
    if not requested or frame.empty:
        return default, None
    labels = sorted(frame["label"].unique())
    if requested in labels:
        return requested, None
    of_machine = frame[frame["machine_id"] == requested]
    if not of_machine.empty:
        cpu = sorted(of_machine.loc[of_machine["device_kind"] == "CPU", "label"].unique())
        return (cpu or sorted(of_machine["label"].unique()))[0], None
    return default, (f"--baseline {requested!r} matches no machine id or machine/device "
                     f"label; using {default} (labels: {', '.join(labels)})")


# --------------------------------------------------------------------------- case tables

@dataclasses.dataclass(frozen=True)
class KeyColumn:
    """A row-key column: the field, its header and how to show it."""

    field: str
    header: str
    show: Callable[[object], str] = str


CASE_COLUMNS = (
    KeyColumn("model", "model"),
    KeyColumn("batch_size", "batch", lambda v: str(int(v))),
    KeyColumn("precision", "precision"),
    KeyColumn("xla", "XLA", lambda v: "yes" if is_true(v) else "no"),
    KeyColumn("backend", "backend"),
)


VARIANT_COLUMN = KeyColumn("variant", "variant",
                           lambda v: NO_VALUE if is_missing(v) else str(v))


def order_key(mapping: dict, value: object) -> tuple:
    """Sort known values by ``mapping``, unknown ones after them by name."""
    return (mapping.get(value, len(mapping)), str(value))


def case_sort_key(record: dict, columns: Sequence[KeyColumn]) -> tuple:
    """Order rows: model (mlp, cnn), batch, precision (fp32, fp16, bf16), no XLA first."""
    key = []
    for column in columns:
        value = record.get(column.field)
        if column.field == "suite":
            key.append(order_key(SUITE_ORDER, value))
        elif column.field == "model":
            key.append(order_key(MODEL_ORDER, value))
        elif column.field == "precision":
            key.append(order_key(PRECISION_ORDER, value))
        elif column.field == "backend":
            key.append(order_key(BACKEND_ORDER, value))
        elif column.field == "xla":
            key.append(is_true(value))
        else:
            numeric = number(value)
            key.append((0, numeric, "") if numeric is not None else (1, 0.0, str(value)))
    return tuple(key)


@dataclasses.dataclass(frozen=True)
class Metric:
    """What a comparison table shows: the cell text and the value speedups use."""

    cell: Callable[[dict], str]
    value: Callable[[dict], float | None]
    higher_is_better: bool


def _ordered_labels(frame: pd.DataFrame, baseline: str | None) -> list[str]:
    labels = sorted(frame["label"].unique())
    if baseline in labels:
        labels.remove(baseline)
        labels.insert(0, baseline)
    return labels


def comparison_table(frame: pd.DataFrame, metric: Metric, baseline: str | None,
                     key_columns: Sequence[KeyColumn] = CASE_COLUMNS) -> str:
    """Rows: cases; columns: machine/device labels, then speedups over ``baseline``.

    Speedup columns are left out when the baseline has no result in ``frame``.
    """
    if "variant" in frame.columns and frame["variant"].notna().any():
        # Reference loops (suite "baseline") differ only in their variant.
        key_columns = tuple(key_columns) + (VARIANT_COLUMN,)
    records = frame.to_dict("records")
    labels = _ordered_labels(frame, baseline)
    cells: dict[tuple, dict[str, dict]] = {}
    sort_keys: dict[tuple, tuple] = {}
    for record in records:
        key = tuple(column.show(record.get(column.field)) for column in key_columns)
        cells.setdefault(key, {})[record["label"]] = record
        sort_keys[key] = case_sort_key(record, key_columns)
    with_speedup = baseline in labels
    others = [label for label in labels if label != baseline] if with_speedup else []
    headers = [c.header for c in key_columns] + labels + [f"speedup {label}" for label in others]
    align = ["l"] * len(key_columns) + ["r"] * (len(labels) + len(others))
    rows = []
    for key in sorted(cells, key=lambda k: sort_keys[k]):
        by_label = cells[key]
        row = list(key)
        row += [metric.cell(by_label[label]) + cell_marks(by_label[label])
                if label in by_label else NO_VALUE for label in labels]
        base = metric.value(by_label[baseline]) if baseline in by_label else None
        for label in others:
            value = metric.value(by_label[label]) if label in by_label else None
            ratio = None
            if base and value:
                ratio = value / base if metric.higher_is_better else base / value
            row.append(format_speedup(ratio))
        rows.append(row)
    return markdown_table(headers, rows, align)


def _with_caption(text: str, table: str,
                  rows: pd.DataFrame | Iterable[dict] | None = None) -> str:
    """Caption and table; with ``rows``, the caption ends with the legend of their marks."""
    if rows is not None:
        text += marks_legend(rows)
    return caption(text) + "\n\n" + table


def _speedup_phrase(frame: pd.DataFrame, baseline: str | None, basis: str) -> str:
    if baseline in set(frame["label"]):
        return f"speedup = {basis} relative to the baseline `{baseline}` (above 1 = faster)."
    return f"no speedups: the baseline `{baseline}` has no result here."


SPREAD_PHRASE = "± = interquartile range of the round times as % of their median"


def _suite(frame: pd.DataFrame, suite: str) -> pd.DataFrame:
    return frame[frame["suite"] == suite] if not frame.empty else frame


def _throughput_cell(record: dict) -> str:
    rate = number(record.get("samples_per_second"))
    if rate is None:
        return NO_VALUE
    return format_rate(rate) + format_spread(record.get("iqr"), record.get("median"),
                                             record.get("rounds"))


THROUGHPUT = Metric(cell=_throughput_cell,
                    value=lambda r: number(r.get("samples_per_second")),
                    higher_is_better=True)


def render_training_table(frame: pd.DataFrame, baseline: str | None, all_runs: bool) -> str:
    """Training samples/s by case and machine/device."""
    rows = _suite(frame, "train")
    if rows.empty:
        return caption("No training results.")
    text = (f"Training throughput: samples/s of the median timed round (an epoch of "
            f"60,000 images, or the case's fixed number of steps), "
            f"{SPREAD_PHRASE}; {_speedup_phrase(rows, baseline, 'samples/s')} "
            f"{selection_phrase(all_runs)}")
    return _with_caption(text, comparison_table(rows, THROUGHPUT, baseline), rows)


def render_inference_table(frame: pd.DataFrame, baseline: str | None, all_runs: bool) -> str:
    """Inference samples/s over the test set by case and machine/device."""
    rows = _suite(frame, "inference")
    if rows.empty:
        return caption("No inference results.")
    text = (f"Inference throughput: samples/s of the median pass over the 10,000 test "
            f"images, {SPREAD_PHRASE}; {_speedup_phrase(rows, baseline, 'samples/s')} "
            f"{selection_phrase(all_runs)}")
    return _with_caption(text, comparison_table(rows, THROUGHPUT, baseline), rows)


def _latency_cell(record: dict) -> str:
    values = [number(record.get(f"latency_{p}_ms")) for p in ("p50", "p90", "p99")]
    if any(v is None for v in values):
        return NO_VALUE
    return " / ".join(sig3(v) for v in values) + " ms"


LATENCY = Metric(cell=_latency_cell, value=lambda r: number(r.get("latency_p50_ms")),
                 higher_is_better=False)


def render_latency_table(frame: pd.DataFrame, baseline: str | None, all_runs: bool) -> str:
    """Single-sample latency percentiles p50 / p90 / p99."""
    rows = _suite(frame, "latency")
    if rows.empty:
        return caption("No latency results.")
    text = (f"Single-sample inference latency (batch 1): p50 / p90 / p99 in ms; "
            f"{_speedup_phrase(rows, baseline, 'p50 latency')} {selection_phrase(all_runs)}")
    return _with_caption(text, comparison_table(rows, LATENCY, baseline), rows)


def _tta_cell(record: dict) -> str:
    epochs = number(record.get("epochs"))
    accuracy = number(record.get("final_accuracy"))
    detail = []
    if epochs is not None:
        detail.append(f"{int(epochs)} ep")
    if accuracy is not None:
        detail.append(f"acc {accuracy:.3f}")
    suffix = f" ({', '.join(detail)})" if detail else ""
    seconds = number(record.get("seconds_to_accuracy"))
    if not is_true(record.get("reached")) or seconds is None:
        return "not reached" + suffix
    return (format_seconds(seconds) + format_spread(record.get("iqr"), record.get("median"),
                                                    record.get("rounds")) + suffix)


def _tta_value(record: dict) -> float | None:
    return number(record.get("seconds_to_accuracy")) if is_true(record.get("reached")) else None


TIME_TO_ACCURACY = Metric(cell=_tta_cell, value=_tta_value, higher_is_better=False)
TTA_COLUMNS = CASE_COLUMNS + (KeyColumn("target_accuracy", "target", lambda v: f"{float(v):.3f}"
                                        if number(v) is not None else NO_VALUE),)


def render_tta_table(frame: pd.DataFrame, baseline: str | None, all_runs: bool) -> str:
    """Wall seconds (compile included) until the test accuracy reached the target."""
    rows = _suite(frame, "tta")
    if rows.empty:
        return caption("No time-to-accuracy results.")
    text = (f"Time to accuracy: wall seconds until the test accuracy reached the target, "
            f"compile included (epochs run, final test accuracy); "
            f"{_speedup_phrase(rows, baseline, 'time, when both reached the target,')} "
            f"{selection_phrase(all_runs)}")
    return _with_caption(text, comparison_table(rows, TIME_TO_ACCURACY, baseline, TTA_COLUMNS),
                         rows)


def _compile_seconds(record: dict) -> float | None:
    seconds = number(record.get("compile_seconds"))
    return seconds if seconds is not None else number(record.get("median"))


def _compile_cell(record: dict) -> str:
    seconds = _compile_seconds(record)
    if seconds is None:
        return NO_VALUE
    return format_seconds(seconds) + format_spread(record.get("iqr"), record.get("median"),
                                                   record.get("rounds"))


COMPILE = Metric(cell=_compile_cell, value=_compile_seconds, higher_is_better=False)


def render_compile_table(frame: pd.DataFrame, baseline: str | None, all_runs: bool) -> str:
    """Seconds to trace and compile the training step."""
    rows = _suite(frame, "compile")
    if rows.empty:
        return caption("No compile-time results.")
    text = (f"Compile time: seconds to trace and compile the train step (the model is built "
            f"before the timer starts), {SPREAD_PHRASE}; "
            f"{_speedup_phrase(rows, baseline, 'time')} {selection_phrase(all_runs)}")
    return _with_caption(text, comparison_table(rows, COMPILE, baseline), rows)


def _time_cell(record: dict) -> str:
    seconds = number(record.get("median"))
    if seconds is None:
        return NO_VALUE
    return format_seconds(seconds) + format_spread(record.get("iqr"), record.get("median"),
                                                   record.get("rounds"))


TIME_PER_ROUND = Metric(cell=_time_cell, value=lambda r: number(r.get("median")),
                        higher_is_better=False)


def render_other_suite_table(frame: pd.DataFrame, suite: str, baseline: str | None,
                             all_runs: bool) -> str:
    """A suite without a table of its own: samples/s when every row has it, else time."""
    rows = _suite(frame, suite)
    if rows.empty:
        return caption(f"No `{suite}` results.")
    rates = pd.to_numeric(rows.get("samples_per_second"), errors="coerce") \
        if "samples_per_second" in rows else None
    if rates is not None and rates.notna().all():
        metric, what, basis = THROUGHPUT, "samples/s of the median round", "samples/s"
    else:
        metric, what, basis = TIME_PER_ROUND, "median seconds per round", "time"
    text = (f"Suite `{suite}`: {what}, {SPREAD_PHRASE}; "
            f"{_speedup_phrase(rows, baseline, basis)} {selection_phrase(all_runs)}")
    return _with_caption(text, comparison_table(rows, metric, baseline), rows)


def _peak_cell(record: dict) -> str:
    """``56.0% (275 GFLOP/s)``; ``‼`` above 100%; ``—`` without a calibration of the dtype."""
    gflops = number(record.get("gflops"))
    if gflops is None:
        return NO_VALUE
    share = number(record.get("peak_share"))
    text = NO_VALUE if share is None else format_percent(share) + (
        ABOVE_PEAK_MARK if share > 1.0 else "")
    return f"{text} ({format_flops(gflops)})"


PEAK = Metric(cell=_peak_cell, value=lambda r: number(r.get("peak_share")),
              higher_is_better=True)
PEAK_COLUMNS = (KeyColumn("suite", "suite"),) + CASE_COLUMNS

#: How the suites count FLOPs (fashion_core.models.flops_per_sample and
#: train_flops_per_sample), against the usual 6 x MACs per sample for training.
FLOP_CONVENTION = (
    "FLOPs are counted exactly for the dense and convolution layers, a multiply-add = 2: "
    "inference = the forward pass; training = 3 x the forward pass (forward, weight "
    "gradients, input gradients) less the first layer's input gradient, which is never "
    "computed. The usual 6 x MACs per sample counts that gradient too: for the MLP it "
    "gives 1.46 MFLOP a sample against our 1.06 (its first layer holds 82% of the work), "
    "for the CNN 25.4 against 25.0, so a 6 x MACs figure reads 38% (MLP) or 2% (CNN) "
    "higher than ours for the same training run.")


def render_peak_table(frame: pd.DataFrame, all_runs: bool) -> str:
    """Achieved GFLOP/s as a share of the best calibration of the device in the row's dtype."""
    if frame.empty:
        return caption("No training or inference results.")
    rows = frame[frame["suite"].isin(["train", "inference"])]
    if rows.empty or "gflops" not in rows or rows["gflops"].isna().all():
        return caption("No training or inference results with GFLOP/s.")
    text = ("Share of peak: achieved GFLOP/s (in brackets) over the best matmul rate "
            "measured on that device in the dtype the case computes in (fp32 float32, fp16 "
            "float16, bf16 bfloat16) by any backend in any run of the machine (best peak, "
            "see Machines), so shares compare across backends; — = no calibration in that "
            "dtype on that machine (schema-1 files calibrated float32 only). "
            + FLOP_CONVENTION + " " + selection_phrase(all_runs))
    shares = pd.to_numeric(rows.get("peak_share"), errors="coerce") \
        if "peak_share" in rows else pd.Series(dtype=float)
    if (shares > 1.0).any():
        text += (f" {ABOVE_PEAK_MARK} = above 100%: faster than the best calibration matmul "
                 f"of that dtype (the calibration was low, or the count is off).")
    table = comparison_table(rows, PEAK, baseline=None, key_columns=PEAK_COLUMNS)
    return _with_caption(text, table, rows)


def _energy_cell(record: dict) -> str:
    """``95.2 J, 630/J, 210 W (nvml)``; ``unavailable`` where nothing measured energy."""
    source = record.get("energy_source")
    if not isinstance(source, str) or not source:
        return NO_VALUE
    joules = number(record.get("energy_joules"))
    if source == "unavailable" or joules is None:
        return "unavailable"
    parts = [f"{sig3(joules)} J"]
    per_joule = number(record.get("samples_per_joule"))
    watts = number(record.get("watts"))
    if per_joule is not None:
        parts.append(f"{format_si(per_joule)}/J")
    if watts is not None:
        parts.append(f"{sig3(watts)} W")
    return ", ".join(parts) + f" ({source})"


ENERGY = Metric(cell=_energy_cell, value=lambda r: number(r.get("samples_per_joule")),
                higher_is_better=True)


def render_energy_table(frame: pd.DataFrame, all_runs: bool) -> str | None:
    """Joules per epoch or pass, samples per joule and watts; None without energy fields."""
    if frame.empty or "energy_source" not in frame:
        return None
    rows = frame[frame["suite"].isin(["train", "inference"]) & frame["energy_source"].notna()]
    if rows.empty:
        return None
    text = ("Energy: joules per epoch (training) or per pass over the 10,000 test images "
            "(inference), samples per joule and average watts over the timed rounds, with "
            "the counter read: nvml (the GPU's total-energy counter) or rapl (the CPU "
            "package); unavailable = the device has no counter this run could read (never "
            "0). " + selection_phrase(all_runs))
    table = comparison_table(rows, ENERGY, baseline=None, key_columns=PEAK_COLUMNS)
    return _with_caption(text, table, rows)


# --------------------------------------------------------------------------- precision/XLA

def precision_xla_speedups(frame: pd.DataFrame) -> pd.DataFrame:
    """Geometric-mean speedups of mixed precision over fp32 and of XLA over no XLA.

    Pairs are matched within one machine/device, suite (train, inference), model,
    batch size and backend (and XLA setting for precision, precision for XLA).
    Columns: suite, label, backend, comparison, speedup, low, high, cases.
    """
    columns = ["suite", "label", "backend", "comparison", "speedup", "low", "high", "cases"]
    if frame.empty or "samples_per_second" not in frame:
        return pd.DataFrame(columns=columns)
    rows = frame[frame["suite"].isin(["train", "inference"])
                 & frame["samples_per_second"].notna()]
    rows = rows[["suite", "label", "model", "batch_size", "backend", "precision", "xla",
                 "samples_per_second"]].copy()
    rows["xla"] = rows["xla"].map(is_true)
    rows["samples_per_second"] = pd.to_numeric(rows["samples_per_second"], errors="coerce")
    rows = rows[rows["samples_per_second"] > 0]
    shared = ["suite", "label", "model", "batch_size", "backend"]
    pairs = []
    for precision in MIXED_PRECISIONS:
        mixed = rows[rows["precision"] == precision]
        fp32 = rows[rows["precision"] == "fp32"]
        joined = mixed.merge(fp32, on=shared + ["xla"], suffixes=("", "_base"))
        pairs.append(joined.assign(comparison=f"{precision} vs fp32"))
    joined = rows[rows["xla"]].merge(rows[~rows["xla"]], on=shared + ["precision"],
                                     suffixes=("", "_base"))
    pairs.append(joined.assign(comparison="XLA vs no XLA"))
    result = []
    for pair in pairs:
        if pair.empty:
            continue
        pair = pair.assign(ratio=pair["samples_per_second"] / pair["samples_per_second_base"])
        keys = ["suite", "label", "backend", "comparison"]
        for (suite, label, backend, comparison), group in pair.groupby(keys):
            ratios = group["ratio"].to_numpy(dtype=float)
            result.append({"suite": suite, "label": label, "backend": backend,
                           "comparison": comparison,
                           "speedup": float(np.exp(np.log(ratios).mean())),
                           "low": float(ratios.min()), "high": float(ratios.max()),
                           "cases": len(ratios)})
    return pd.DataFrame(result, columns=columns)


def render_precision_xla_table(frame: pd.DataFrame, all_runs: bool) -> str:
    """Per machine/device and suite: the speedups of :func:`precision_xla_speedups`."""
    speedups = precision_xla_speedups(frame)
    if speedups.empty:
        return caption("No pairs of cases that differ only in precision or XLA.")
    comparisons = [f"{p} vs fp32" for p in MIXED_PRECISIONS] + ["XLA vs no XLA"]
    comparisons = [c for c in comparisons if c in set(speedups["comparison"])]
    cells: dict[tuple, dict[str, str]] = {}
    for record in speedups.to_dict("records"):
        key = (record["suite"], record["label"], record["backend"])
        cells.setdefault(key, {})[record["comparison"]] = (
            f"{format_speedup(record['speedup'])} "
            f"({format_speedup(record['low'])}–{format_speedup(record['high'])}, "
            f"{record['cases']} cases)")
    rows = [[suite, label, backend]
            + [cells[(suite, label, backend)].get(c, NO_VALUE) for c in comparisons]
            for suite, label, backend in sorted(
                cells, key=lambda k: (order_key(SUITE_ORDER, k[0]), k[1], k[2]))]
    text = ("Speedup of mixed precision over fp32 and of XLA over no XLA, in samples/s: "
            "geometric mean over the matching cases (same machine/device, model, batch "
            "and backend), with the lowest and highest ratio. " + selection_phrase(all_runs))
    table = markdown_table(["suite", "machine/device", "backend"] + comparisons, rows,
                           ["l", "l", "l"] + ["r"] * len(comparisons))
    return _with_caption(text, table)


# --------------------------------------------------------------------------- scaling

SCALING_GROUP = ["label", "model", "strategy", "backend", "precision", "xla", "per_replica_batch"]


def scaling_rows(frame: pd.DataFrame) -> list[dict]:
    """Scaling results with ``speedup`` = thr(N)/thr(1), ``efficiency`` = thr(N)/(N*thr(1))."""
    rows = _suite(frame, "scaling")
    if rows.empty:
        return []
    records = [dict(r) for r in rows.to_dict("records")]
    for record in records:
        record["xla"] = is_true(record.get("xla"))
    single: dict[tuple, float] = {}
    for record in records:
        if number(record.get("replicas")) == 1:
            single[tuple(record.get(f) for f in SCALING_GROUP)] = number(
                record.get("samples_per_second"))
    for record in records:
        base = single.get(tuple(record.get(f) for f in SCALING_GROUP))
        rate = number(record.get("samples_per_second"))
        replicas = number(record.get("replicas"))
        if base and rate and replicas:
            record["speedup"] = rate / base
            record["efficiency"] = rate / (replicas * base)
        else:
            record["speedup"] = record["efficiency"] = None
    records.sort(key=lambda r: (
        r["label"], order_key(MODEL_ORDER, r.get("model")), str(r.get("strategy")),
        order_key(BACKEND_ORDER, r.get("backend")), order_key(PRECISION_ORDER, r.get("precision")),
        r["xla"], number(r.get("per_replica_batch")) or 0, number(r.get("replicas")) or 0))
    return records


def _int_text(value: object) -> str:
    numeric = number(value)
    return str(int(numeric)) if numeric is not None else NO_VALUE


def render_scaling_table(frame: pd.DataFrame, all_runs: bool) -> str | None:
    """Throughput per replica count with efficiency and test accuracy; None without rows."""
    records = scaling_rows(frame)
    if not records:
        return None
    headers = ["machine/device", "model", "strategy", "backend", "precision", "XLA",
               "per-replica batch", "replicas", "global batch", "samples/s",
               "speedup vs 1", "efficiency", "test accuracy"]
    rows = []
    for r in records:
        accuracy = number(r.get("test_accuracy"))
        rows.append([
            r["label"], str(r.get("model")), str(r.get("strategy")), str(r.get("backend")),
            str(r.get("precision")), "yes" if r["xla"] else "no",
            _int_text(r.get("per_replica_batch")), _int_text(r.get("replicas")),
            _int_text(r.get("global_batch", r.get("batch_size"))),
            _throughput_cell(r) + cell_marks(r), format_speedup(r["speedup"]),
            format_percent(r["efficiency"]) if r["efficiency"] is not None else NO_VALUE,
            f"{accuracy:.4f}" if accuracy is not None else NO_VALUE,
        ])
    text = ("Scaling: samples/s per replica count, " + SPREAD_PHRASE + "; speedup = thr(N)/thr(1) "
            "and efficiency = thr(N)/(N·thr(1)) against the 1-replica run of the same setup; "
            "test accuracy after the run's epochs. " + selection_phrase(all_runs))
    return _with_caption(text, markdown_table(headers, rows, ["l"] * 7 + ["r"] * 6), records)


# --------------------------------------------------------------------------- reference loops

def render_reference_table(frame: pd.DataFrame, all_runs: bool) -> str | None:
    """The compiled step against the reference loops (suite ``baseline``) of the same run.

    Each reference row (Keras ``fit``, the tutorial's eager loop) is put beside the
    ``train`` row of the same machine/device, model, batch, precision and backend (XLA
    on where both exist), so the ratio compares two figures measured in one run.
    Returns None when there are no reference rows.
    """
    references = _suite(frame, "baseline")
    trains = _suite(frame, "train")
    if references.empty:
        return None
    keys = ["label", "model", "batch_size", "precision", "backend"]
    headers = ["machine/device", "model", "batch", "precision", "backend",
               "compiled step s/epoch", "reference", "reference s/epoch", "speedup"]
    rows, shown = [], []
    for record in references.to_dict("records"):
        same = trains
        for key in keys:
            same = same[same[key] == record.get(key)]
        if not same.empty and same["xla"].map(is_true).any():
            same = same[same["xla"].map(is_true)]
        compiled = same.iloc[0].to_dict() if not same.empty else {}
        ours = number(compiled.get("seconds_per_epoch"))
        theirs = number(record.get("seconds_per_epoch"))
        shown += [record, compiled]
        rows.append([record["label"], str(record.get("model")), _int_text(record.get("batch_size")),
                     str(record.get("precision")), str(record.get("backend")),
                     format_seconds(ours) + cell_marks(compiled) if ours else NO_VALUE,
                     str(record.get("variant") or record.get("case")),
                     format_seconds(theirs) + cell_marks(record) if theirs else NO_VALUE,
                     format_speedup(theirs / ours if ours and theirs else None)])
    rows.sort()
    text = ("Against reference loops: seconds per epoch of the compiled train step "
            "(suite `train`, XLA on where measured) and of each reference loop (suite "
            "`baseline`: keras-fit = `model.fit` with a whole epoch per execution; "
            "tutorial-eager = the tutorial's eager loop, timed over a fixed number of steps "
            "and scaled to an epoch), both from the same run; speedup = reference time over "
            "compiled-step time. " + selection_phrase(all_runs))
    return _with_caption(text, markdown_table(headers, rows, ["l"] * 5 + ["r", "l", "r", "r"]),
                         shown)


# --------------------------------------------------------------------------- failures, machines

def render_failures_table(failures: pd.DataFrame, all_runs: bool) -> str:
    """Cases that raised: machine, run file, suite, case and the error's first line."""
    if failures.empty:
        return caption("No failures.")
    rows = [[str(r["machine_id"]), str(r["run"]), str(r["suite"]), str(r["case"]),
             first_line(r["error"])] for r in failures.to_dict("records")]
    if all_runs:
        text = "Failures of every run."
    else:
        text = ("Failures still current: cases whose newest run failed (a case that "
                "succeeded before keeps that result in the tables above).")
    return _with_caption(text, markdown_table(["machine", "run", "suite", "case", "error"],
                                              rows, ["l"] * 5))


def render_machines_table(machines: pd.DataFrame) -> str:
    """Machines with their newest run and calibration GFLOP/s per device."""
    if machines.empty:
        return caption("No machines.")
    rows = []
    for m in machines.to_dict("records"):
        calibration = m.get("calibration_gflops") or {}
        by_backend = m.get("calibration_by_backend") or {}
        if len(by_backend) > 1:
            calibration_text = "; ".join(
                f"{backend}: " + ", ".join(f"{device} {format_gflops_plain(float(value))}"
                                           for device, value in sorted(values.items())
                                           if number(value) is not None)
                for backend, values in sorted(by_backend.items()))
        else:
            calibration_text = ", ".join(f"{device} {format_gflops_plain(float(value))}"
                                         for device, value in sorted(calibration.items())
                                         if number(value) is not None) or NO_VALUE
        rows.append([
            str(m["machine_id"]),
            str(m.get("cpu_model") or NO_VALUE),
            _int_text(m.get("cpu_cores")),
            ", ".join(m.get("gpus") or []) or "none",
            format_bytes(m["memory_bytes"]) if number(m.get("memory_bytes")) else NO_VALUE,
            f"TF {m.get('tensorflow') or NO_VALUE} / Keras {m.get('keras') or NO_VALUE}",
            str(m["runs"]),
            f"{m['newest_run']} ({m['newest_datetime']:%Y-%m-%d %H:%M} UTC)",
            calibration_text,
            best_peak_text(m.get("best_peak_gflops")),
        ])
    headers = ["machine", "CPU", "cores", "GPUs", "memory", "versions", "runs",
               "newest run", "calibration GFLOP/s", "best peak GFLOP/s"]
    text = ("Machines: calibration GFLOP/s is each device's measured float32 matmul rate in "
            "the newest run; each framework times its own matmul, so a machine run under "
            "several backends lists each one's figure. Best peak: the fastest matmul measured "
            "on each device in each dtype by any backend in any run, the denominator of the "
            "peak shares below.")
    return _with_caption(text, markdown_table(headers, rows, ["l", "l", "r", "l", "r", "l",
                                                              "r", "l", "l", "l"]))


DTYPE_ORDER = {"float32": 0, "float16": 1, "bfloat16": 2}


def best_peak_text(best: object) -> str:
    """``cpu float32 492, bfloat16 310; gpu:0 float32 51,200``."""
    if not isinstance(best, dict) or not best:
        return NO_VALUE
    parts = []
    for device, rates in sorted(best.items()):
        figures = ", ".join(f"{dtype} {format_gflops_plain(float(rates[dtype]))}"
                            for dtype in sorted(rates, key=lambda d: order_key(DTYPE_ORDER, d)))
        parts.append(f"{device} {figures}")
    return "; ".join(parts)


#: A run's ``fashion_bench_status`` as the Runs table shows it.
RUN_STATUS_TEXT = {
    "complete": "complete",
    "interrupted": "interrupted (Ctrl-C)",
    "incomplete": "incomplete (died; recovered)",
}


def render_runs_table(runs: Sequence[Run]) -> str:
    """Every run (result file): when, backend, data, status, group, cases, spoiled rows."""
    if not runs:
        return caption("No runs.")
    rows = []
    for run in sorted(runs, key=lambda r: (r.machine_id, r.datetime, r.path.name)):
        extras = [b["extra_info"] for b in run.benchmarks]
        measured = any("contended" in e for e in extras)
        spoiled = sum(1 for e in extras if is_spoiled(e)) if measured else None
        if run.machine.get("concurrent") is True:
            spoiled = len(extras)
        group = run.run_group or NO_VALUE
        if run.repeat:
            group += f" ({run.repeat})"
        rows.append([
            run.path.name, run.machine_id, f"{run.datetime:%Y-%m-%d %H:%M}",
            str(run.machine.get("backend") or NO_VALUE), run.data,
            RUN_STATUS_TEXT.get(run.status, run.status), group, str(len(run.benchmarks)),
            str(len(run.failures)), NO_VALUE if spoiled is None else str(spoiled),
        ])
    text = ("Runs: one result file (one process) each. Status: complete; interrupted = "
            "stopped by Ctrl-C; incomplete = the process died and the cases it finished were "
            "recovered from its journal. A run of a `--bench-repeat` group shows its group "
            "id and repeat i/n. Spoiled = rows contended or concurrent (— = not measured: "
            "schema-1 file).")
    headers = ["run", "machine", "date (UTC)", "backend", "data", "status", "group",
               "cases", "failures", "spoiled"]
    return _with_caption(text, markdown_table(headers, rows, ["l"] * 7 + ["r"] * 3))


def render_spread_table(spread: pd.DataFrame) -> str | None:
    """Run-to-run spread of each case with several runs (see :func:`bench.loader.run_spread`)."""
    if spread is None or spread.empty:
        return None
    records = sorted(spread.to_dict("records"), key=lambda r: (
        r["label"], order_key(SUITE_ORDER, r["suite"]), r["case"]))
    rows = [[r["label"], r["suite"], r["case"], str(int(r["runs"])), format_seconds(r["fastest"]),
             format_seconds(r["median"]), format_seconds(r["slowest"]),
             format_run_spread(r["spread"])] for r in records]
    medians = spread.groupby("machine_id")["spread"].median()
    summary = "; ".join(f"`{machine}` {format_run_spread(value)}"
                        for machine, value in medians.items())
    text = ("Run-to-run spread: the median time per round of each run (one process) of a "
            "case, fastest, median and slowest run, and spread = slowest / fastest - 1, "
            "rows contended or concurrent left out. A difference smaller than a case's "
            "spread is what separate runs of the same code show on that machine; the gate "
            "(`--compare`) judges a change against it. Median spread over the cases: "
            + summary + ".")
    headers = ["machine/device", "suite", "case", "runs", "fastest", "median", "slowest",
               "spread"]
    return _with_caption(text, markdown_table(headers, rows, ["l"] * 3 + ["r"] * 5))


# --------------------------------------------------------------------------- whole report

def build_report(machines: pd.DataFrame, selected: pd.DataFrame, failures: pd.DataFrame,
                 baseline: str | None, all_runs: bool, run_count: int,
                 warnings: Sequence[str] = (), runs: Sequence[Run] = (),
                 spread: pd.DataFrame | None = None, notes: Sequence[str] = ()) -> str:
    """The whole REPORT.md: intro, machines, runs, every table, failures and warnings.

    ``runs`` gives the Runs table, ``spread`` (:func:`bench.loader.run_spread`) the
    run-to-run spread table, ``notes`` lines under the intro (runs left out, incomplete).
    """
    machine_ids = list(machines["machine_id"]) if not machines.empty else []
    labels = sorted(selected["label"].unique()) if not selected.empty else []
    intro = [
        "# Fashion-MNIST benchmark report",
        "",
        f"{run_count} run{'s' if run_count != 1 else ''} on {len(machine_ids)} "
        f"machine{'s' if len(machine_ids) != 1 else ''} "
        f"({', '.join(f'`{m}`' for m in machine_ids) or 'none'}); "
        f"{len(labels)} machine/device column{'s' if len(labels) != 1 else ''}. "
        + selection_phrase(all_runs),
        "",
        (f"Speedups are against the baseline `{baseline}` (`--baseline` changes it)."
         if baseline else "No baseline: no results."),
        "",
    ]
    if notes:
        intro += [f"Note: {note}" for note in notes] + [""]
    intro += ["## Machines", "", render_machines_table(machines)]
    if runs:
        intro += ["", "## Runs", "", render_runs_table(runs)]
    sections = [
        ("Training throughput", render_training_table(selected, baseline, all_runs)),
        ("Inference throughput", render_inference_table(selected, baseline, all_runs)),
        ("Inference latency", render_latency_table(selected, baseline, all_runs)),
        ("Time to accuracy", render_tta_table(selected, baseline, all_runs)),
        ("Compile time", render_compile_table(selected, baseline, all_runs)),
        ("Share of calibrated peak", render_peak_table(selected, all_runs)),
        ("Mixed precision and XLA", render_precision_xla_table(selected, all_runs)),
    ]
    scaling = render_scaling_table(selected, all_runs)
    if scaling is not None:
        sections.append(("Scaling", scaling))
    reference = render_reference_table(selected, all_runs)
    if reference is not None:
        sections.append(("Against reference loops", reference))
    energy = render_energy_table(selected, all_runs)
    if energy is not None:
        sections.append(("Energy", energy))
    other_suites = sorted(set(selected["suite"]) - set(DEDICATED_SUITES)) \
        if not selected.empty else []
    for suite in other_suites:
        sections.append((f"Suite {suite}",
                         render_other_suite_table(selected, suite, baseline, all_runs)))
    spread_table = render_spread_table(spread)
    if spread_table is not None:
        sections.append(("Run-to-run spread", spread_table))
    sections.append(("Failures", render_failures_table(failures, all_runs)))
    if warnings:
        sections.append(("Warnings", "\n".join(f"- {escape_cell(w)}" for w in warnings)))
    parts = ["\n".join(intro)]
    for heading, body in sections:
        parts.append(f"## {heading}\n\n{body}")
    return "\n\n".join(parts) + "\n"
