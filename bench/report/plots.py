"""PNG plots of the report, drawn headless (matplotlib's Agg backend).

The data each plot shows comes from pure functions (:func:`throughput_lines`,
:func:`tta_bars` and :func:`bench.report.tables.precision_xla_speedups`), so it can be
checked without matplotlib. Without matplotlib the plots are skipped with a warning.
A plot without data is still written, saying so, so the set of files is the same.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.report.loader import WarningLog
from bench.report.tables import (
    COMPILED,
    COMPILED_VS_NOT,
    MIXED_PRECISIONS,
    precision_xla_speedups,
)
from bench.report.text import has, order, yes

THROUGHPUT_PNG = "throughput_vs_batch.png"
SPEEDUP_PNG = "speedup_precision_xla.png"
TTA_PNG = "time_to_accuracy.png"
PLOT_FILES = (THROUGHPUT_PNG, SPEEDUP_PNG, TTA_PNG)
SUITE_TITLES = {"train": "Training", "inference": "Inference (10,000 test images)"}
DPI = 110


def throughput_lines(frame: pd.DataFrame, suite: str) -> list[dict]:
    """Lines of samples/s against batch size, one per (machine/device, model, backend).

    At each batch size the line takes the fastest precision/XLA setting measured
    there, so every device is shown at its best.
    """
    if frame.empty:
        return []
    rows = frame[(frame["suite"] == suite)]
    if rows.empty or "samples_per_second" not in rows:
        return []
    rows = rows.assign(samples_per_second=pd.to_numeric(rows["samples_per_second"],
                                                        errors="coerce"))
    rows = rows[rows["samples_per_second"].notna()]
    lines = []
    for (label, model, backend), group in rows.groupby(["label", "model", "backend"]):
        best = group.loc[group.groupby("batch_size")["samples_per_second"].idxmax()] \
            .sort_values("batch_size")
        records = best.to_dict("records")
        lines.append({"label": label, "model": model, "backend": backend,
                      "batch_sizes": [int(r["batch_size"]) for r in records],
                      "samples_per_second": [float(r["samples_per_second"]) for r in records],
                      # Points the tables mark: contended or concurrent (†/‡), and
                      # stopped on the budget before their interval was reached (§).
                      "spoiled": [bool(yes(r.get("contended")) or yes(r.get("concurrent")))
                                  for r in records],
                      "budget": [r.get("stop_reason") == "budget" for r in records]})
    lines.sort(key=lambda line: (line["label"], order("model", line["model"]), line["backend"]))
    return lines


def tta_bars(frame: pd.DataFrame) -> list[dict]:
    """One bar per time-to-accuracy case: seconds (or the full run when not reached)."""
    if frame.empty:
        return []
    rows = frame[frame["suite"] == "tta"]
    bars = []
    for r in rows.to_dict("records"):
        reached = yes(r.get("reached"))
        seconds = r.get("seconds_to_accuracy") if reached else r.get("median")
        if not has(seconds) or seconds <= 0:
            continue
        compiled = " torch.compile" if r["backend"] == "torch" else " XLA"
        text = (f"{r['label']}  {r['model']} b{int(r['batch_size'])} {r['precision']}"
                f"{compiled if yes(r.get('xla')) else ''}"
                f"{'' if r['backend'] == 'tensorflow' else ' ' + r['backend']}")
        bars.append({"text": text, "seconds": seconds, "reached": reached,
                     "label": r["label"]})
    bars.sort(key=lambda b: b["text"])
    return bars


def _colors(labels: list[str]) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    return {label: palette[i % len(palette)] for i, label in enumerate(sorted(set(labels)))}


def _no_data(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()


#: How a plot marks the points the tables mark: (flag, marker style, legend text).
POINT_MARKS = (("spoiled", dict(marker="o", markersize=13, markerfacecolor="none",
                                markeredgecolor="red", linestyle="none"),
                "† / ‡ contended or concurrent"),
               ("budget", dict(marker="x", markersize=11, color="black", linestyle="none"),
                "§ stopped on the budget (interval not reached)"))


def _mark_points(axes, line: dict) -> None:
    """Circle a line's contended points and cross its budget-stopped ones; one legend
    entry per kind of mark on the axes."""
    have = {text for text in axes.get_legend_handles_labels()[1]}
    for flag, style, text in POINT_MARKS:
        chosen = [i for i, on in enumerate(line.get(flag, [])) if on]
        if chosen:
            axes.plot([line["batch_sizes"][i] for i in chosen],
                      [line["samples_per_second"][i] for i in chosen], **style,
                      label=text if text not in have else None)
            have.add(text)


def _throughput_figure(figure_class, frame: pd.DataFrame):
    figure = figure_class(figsize=(13, 5.5), layout="constrained")
    axes_pair = figure.subplots(1, 2)
    all_lines = {suite: throughput_lines(frame, suite) for suite in SUITE_TITLES}
    # One colour per machine/device and backend, so two frameworks on one device differ.
    def series(line: dict) -> str:
        return f"{line['label']} {line['backend']}"

    colors = _colors([series(line) for lines in all_lines.values() for line in lines])
    styles = {"mlp": "-", "cnn": "--"}
    markers = {"tensorflow": "o", "jax": "s", "torch": "^"}
    for axes, (suite, title) in zip(axes_pair, SUITE_TITLES.items(), strict=True):
        lines = all_lines[suite]
        if not lines:
            _no_data(axes, f"No {suite} results")
            continue
        for line in lines:
            name = f"{line['label']} {line['model']}"
            if line["backend"] != "tensorflow":
                name += f" ({line['backend']})"
            axes.plot(line["batch_sizes"], line["samples_per_second"],
                      linestyle=styles.get(line["model"], ":"), color=colors[series(line)],
                      marker=markers.get(line["backend"], "d"), label=name)
            _mark_points(axes, line)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("batch size")
        axes.set_ylabel(f"samples/s (best precision and {COMPILED} setting)")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle("Throughput against batch size per machine/device")
    return figure


def _speedup_figure(figure_class, frame: pd.DataFrame):
    figure = figure_class(figsize=(13, 5.5), layout="constrained")
    axes_pair = figure.subplots(1, 2)
    speedups = precision_xla_speedups(frame)
    # One group of bars per machine/device and backend.
    speedups["label"] = speedups["label"] + " " + speedups["backend"]
    comparisons = [f"{p} vs fp32" for p in MIXED_PRECISIONS] + [COMPILED_VS_NOT]
    for axes, (suite, title) in zip(axes_pair, SUITE_TITLES.items(), strict=True):
        rows = speedups[speedups["suite"] == suite]
        if rows.empty:
            _no_data(axes, f"No {suite} pairs")
            continue
        labels = sorted(rows["label"].unique())
        # Fixed slots and colours per comparison so both panels read the same way.
        width = 0.8 / len(comparisons)
        for i, comparison in enumerate(comparisons):
            if comparison not in set(rows["comparison"]):
                continue
            xs, heights, below, above = [], [], [], []
            for j, label in enumerate(labels):
                match = rows[(rows["label"] == label) & (rows["comparison"] == comparison)]
                if match.empty:
                    continue
                r = match.iloc[0]
                xs.append(j + (i - (len(comparisons) - 1) / 2) * width)
                heights.append(r["speedup"])
                # The geometric mean of one ratio can land a rounding error outside
                # [low, high]; matplotlib refuses negative error bars.
                below.append(max(0.0, r["speedup"] - r["low"]))
                above.append(max(0.0, r["high"] - r["speedup"]))
            axes.bar(xs, heights, width=width, label=comparison, yerr=[below, above],
                     capsize=3, color=f"C{i}")
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_xticks(range(len(labels)), labels, rotation=15, ha="right", fontsize="small")
        axes.set_ylabel("speedup in samples/s (geometric mean, min–max)")
        axes.set_title(title)
        axes.legend(fontsize="small")
    figure.suptitle(f"Mixed precision over fp32 and {COMPILED} on over off, per machine/device")
    return figure


def _tta_figure(figure_class, frame: pd.DataFrame):
    bars = tta_bars(frame)
    figure = figure_class(figsize=(10, 1.5 + 0.4 * max(len(bars), 2)), layout="constrained")
    axes = figure.subplots()
    if not bars:
        _no_data(axes, "No time-to-accuracy results")
        return figure
    colors = _colors([b["label"] for b in bars])
    positions = list(range(len(bars)))
    drawn = axes.barh(positions, [b["seconds"] for b in bars],
                      color=[colors[b["label"]] for b in bars])
    for position, patch, bar in zip(positions, drawn, bars, strict=True):
        if not bar["reached"]:
            patch.set_hatch("//")  # per patch: older matplotlib takes no list of hatches
            axes.text(bar["seconds"], position, "  not reached", va="center", fontsize="small")
    axes.set_yticks(positions, [b["text"] for b in bars], fontsize="small")
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("seconds to the target accuracy (compile included); hatched = not reached")
    axes.grid(True, axis="x", which="both", alpha=0.3)
    axes.set_title("Time to accuracy")
    return figure


def write_plots(frame: pd.DataFrame, out_dir: Path, log: WarningLog,
                write: Callable[[Path, bytes], None]) -> list[Path]:
    """Draw the three PNGs into ``out_dir`` through ``write`` (an atomic writer)."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # headless: no display on CI runners
        from matplotlib.figure import Figure
    except ImportError:
        log.warn(out_dir, f"matplotlib is not installed; plots skipped ({', '.join(PLOT_FILES)})")
        return []
    written = []
    for name, draw in ((THROUGHPUT_PNG, _throughput_figure), (SPEEDUP_PNG, _speedup_figure),
                       (TTA_PNG, _tta_figure)):
        figure = draw(Figure, frame)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
        path = out_dir / name
        write(path, buffer.getvalue())
        written.append(path)
    return written


def history_plot_name(machine_id: str) -> str:
    return f"history-{machine_id}.png"


def _history_figure(figure_class, history: pd.DataFrame, steps: pd.DataFrame,
                    machine_id: str):
    """A panel per suite: each case's median run time per commit, the band from its
    fastest to its slowest run, and a triangle where it stepped (up: slower)."""
    machine = history[history["machine_id"] == machine_id]
    suites = sorted(set(machine["suite"]), key=lambda s: order("suite", s))
    commits = machine.drop_duplicates("position").sort_values("position")
    figure = figure_class(figsize=(12, 1.5 + 3.2 * len(suites)), layout="constrained")
    for axes, suite in zip(figure.subplots(len(suites), 1, squeeze=False)[:, 0], suites,
                           strict=True):
        for index, (case, series) in enumerate(machine[machine["suite"] == suite].groupby(
                "case", sort=True)):
            color = f"C{index % 10}"
            axes.plot(series["position"], series["median"], marker="o", markersize=3,
                      color=color, label=case, linewidth=1,
                      linestyle=("-", "--", ":")[index // 10 % 3])  # ten colours, then dashes
            axes.fill_between(series["position"], series["runs"].map(min),
                              series["runs"].map(max), color=color, alpha=0.2, linewidth=0)
            stepped = steps[(steps["machine_id"] == machine_id) & (steps["suite"] == suite)
                            & (steps["case"] == case)]
            for step in stepped.itertuples(index=False):
                y = series.loc[series["position"] == step.position, "median"].iloc[0]
                axes.plot([step.position], [y], marker="^" if step.ratio > 1 else "v",
                          markersize=11, color=color, markeredgecolor="black")
        axes.set_yscale("log")
        axes.set_xticks(list(commits["position"]), list(commits["commit"]), rotation=30,
                        ha="right", fontsize="small")
        axes.set_ylabel("seconds per round (median run)")
        axes.set_title(f"{suite}: time per round over commits")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="x-small", ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(f"{machine_id}: band = fastest to slowest run of a commit; "
                    f"▲ / ▼ = the case stepped slower / faster there")
    return figure


def write_history_plots(history: pd.DataFrame, steps: pd.DataFrame, out_dir: Path,
                        log: WarningLog, write: Callable[[Path, bytes], None]) -> list[Path]:
    """One PNG per machine (:func:`history_plot_name`) into ``out_dir`` through ``write``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        log.warn(out_dir, "matplotlib is not installed; history plots skipped")
        return []
    written = []
    for machine_id in sorted(set(history["machine_id"])):
        buffer = io.BytesIO()
        _history_figure(Figure, history, steps, machine_id).savefig(buffer, format="png",
                                                                    dpi=DPI)
        written.append(out_dir / history_plot_name(machine_id))
        write(written[-1], buffer.getvalue())
    return written
