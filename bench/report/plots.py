"""PNG plots of the report, drawn headless (matplotlib's Agg backend).

The data each plot shows comes from pure functions (:func:`throughput_lines`,
:func:`tta_bars` and :func:`bench.report.lists.precision_xla_speedups`), so it can be
checked without matplotlib. Without matplotlib the plots are skipped with a warning.
A plot without data is still written, saying so, so the set of files is the same.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.report.lists import precision_xla_pairs
from bench.report.loader import WarningLog
from bench.report.tables import COMPILED, COMPILED_VS_NOT, MIXED_PRECISIONS
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
                      "budget": [r.get("stop_reason") == "budget" for r in records],
                      "halfwidths": [float(r["ci_halfwidth"]) if has(r.get("ci_halfwidth"))
                                     and 0 < float(r["ci_halfwidth"]) < 10 else 0.0
                                     for r in records]})
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
                     "label": r["label"], "budget": r.get("stop_reason") == "budget"})
    bars.sort(key=lambda b: b["text"])
    return bars


def _colors(labels: list[str]) -> dict[str, str]:
    """One colour per machine/device label, the same in every plot of a report."""
    palette = [f"C{i}" for i in range(10)]
    return {label: palette[i % len(palette)] for i, label in enumerate(sorted(set(labels)))}


#: One marker per model, one line style per backend, in every plot.
MODEL_MARKERS = {"mlp": "o", "cnn": "s"}
BACKEND_STYLES = {"tensorflow": "-", "jax": "--", "torch": ":"}


def _no_data(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()


def _legend_below(figure, entries: list[tuple]) -> None:
    """One legend for the figure, below the panels (never on the data): ``entries`` are
    (handle, text) pairs."""
    if entries:
        figure.legend([handle for handle, _ in entries], [text for _, text in entries],
                      loc="outside lower center", ncol=min(4, len(entries)),
                      fontsize="small", frameon=False)


#: What the hollow marker and the red ring mean where a plot draws both.
HOLLOW_BUDGET = "hollow: stopped on the budget (§)"
RED_RING = "red ring: contended or concurrent (†/‡)"


def _key_handles(labels: list[str], colors: dict[str, str], models: list[str],
                 backends: list[str] = (), hollow: str = HOLLOW_BUDGET,
                 ring: str | None = RED_RING) -> list[tuple]:
    """Legend entries: a colour per machine/device, a marker per model, a line style per
    backend, then the point marks: hollow (``hollow`` says what it means) and, unless
    ``ring`` is None, the red ring."""
    from matplotlib.lines import Line2D

    handles = [(Line2D([], [], color=colors[label], linewidth=6), label) for label in labels]
    handles += [(Line2D([], [], color="grey", marker=MODEL_MARKERS.get(m, "d"),
                        linestyle="none"), f"model {m}") for m in models]
    handles += [(Line2D([], [], color="grey", linestyle=BACKEND_STYLES.get(b, "-.")),
                 f"backend {b}") for b in backends]
    handles.append((Line2D([], [], color="grey", marker="o", markerfacecolor="white",
                           linestyle="none"), hollow))
    if ring is not None:
        handles.append((Line2D([], [], marker="o", markersize=11, markerfacecolor="none",
                               markeredgecolor="red", linestyle="none"), ring))
    return handles


def _error(values: list[float], halves: list[float]) -> list[list[float]]:
    """Asymmetric error bars of a log axis from 99% half-widths given as shares."""
    return [[v - v / (1 + h) for v, h in zip(values, halves, strict=True)],
            [v * h for v, h in zip(values, halves, strict=True)]]


def _throughput_figure(figure_class, frame: pd.DataFrame):
    figure = figure_class(figsize=(14, 6.5), layout="constrained")
    axes_pair = figure.subplots(1, 2)
    all_lines = {suite: throughput_lines(frame, suite) for suite in SUITE_TITLES}
    every = [line for lines in all_lines.values() for line in lines]
    colors = _colors([line["label"] for line in every])
    for axes, (suite, title) in zip(axes_pair, SUITE_TITLES.items(), strict=True):
        lines = all_lines[suite]
        if not lines:
            _no_data(axes, f"No {suite} results")
            continue
        for line in lines:
            color = colors[line["label"]]
            marker = MODEL_MARKERS.get(line["model"], "d")
            xs, ys = line["batch_sizes"], line["samples_per_second"]
            axes.errorbar(xs, ys, yerr=_error(ys, line["halfwidths"]), color=color,
                          linestyle=BACKEND_STYLES.get(line["backend"], "-."), marker=marker,
                          capsize=2, linewidth=1.3)
            hollow = [i for i, on in enumerate(line["budget"]) if on]
            if hollow:
                axes.plot([xs[i] for i in hollow], [ys[i] for i in hollow], linestyle="none",
                          marker=marker, markerfacecolor="white", markeredgecolor=color)
            spoiled = [i for i, on in enumerate(line["spoiled"]) if on]
            if spoiled:
                axes.plot([xs[i] for i in spoiled], [ys[i] for i in spoiled], linestyle="none",
                          marker="o", markersize=13, markerfacecolor="none",
                          markeredgecolor="red")
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("batch size")
        axes.set_ylabel(f"samples/s (best precision and {COMPILED} setting; 99% interval)")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
    _legend_below(figure, _key_handles(
        sorted(colors), colors, sorted({line["model"] for line in every},
                                       key=lambda m: order("model", m)),
        sorted({line["backend"] for line in every}, key=lambda b: order("backend", b))))
    figure.suptitle("Throughput against batch size: a colour per machine/device, a marker "
                    "per model, a line style per backend")
    return figure


def _speedup_figure(figure_class, frame: pd.DataFrame):
    """Each pair of cases one point (no bar or whisker spans cases that differ): x = the
    comparison and backend, y = the speedup on a log axis, colour = machine/device,
    marker = model, the pair's own 99% interval as its error bar."""
    figure = figure_class(figsize=(13, 10), layout="constrained")
    axes_pair = figure.subplots(2, 1)
    pairs = precision_xla_pairs(frame)
    colors = _colors(list(pairs["label"]))
    labels = sorted(colors)
    comparisons = [f"{p} vs fp32" for p in MIXED_PRECISIONS] + [COMPILED_VS_NOT]
    for axes, (suite, title) in zip(axes_pair, SUITE_TITLES.items(), strict=True):
        rows = pairs[pairs["suite"] == suite]
        if rows.empty:
            _no_data(axes, f"No {suite} pairs")
            continue
        slots = [(c, b) for c in comparisons for b in
                 sorted(set(rows["backend"]), key=lambda b: order("backend", b))
                 if not rows[(rows["comparison"] == c) & (rows["backend"] == b)].empty]
        for x, (comparison, backend) in enumerate(slots):
            chosen = rows[(rows["comparison"] == comparison) & (rows["backend"] == backend)]
            for r in chosen.to_dict("records"):
                offset = (labels.index(r["label"]) - (len(labels) - 1) / 2) * 0.8 / \
                    max(len(labels), 1)
                color = colors[r["label"]]
                axes.errorbar([x + offset], [r["ratio"]],
                              yerr=[[r["ratio"] - r["low"]], [r["high"] - r["ratio"]]],
                              color=color, marker=MODEL_MARKERS.get(r["model"], "d"),
                              markerfacecolor="white" if r["flagged"] else color,
                              linestyle="none", capsize=2)
        axes.axhline(1.0, color="black", linewidth=0.8)
        axes.set_yscale("log")
        axes.set_xticks(range(len(slots)), [f"{SHORT_COMPARISON.get(c, c)}\n{b}"
                                            for c, b in slots], fontsize="small")
        for x in range(1, len(slots)):  # a rule between comparisons
            if slots[x][0] != slots[x - 1][0]:
                axes.axvline(x - 0.5, color="grey", linewidth=0.8)
        axes.set_xlim(-0.6, len(slots) - 0.4)
        axes.set_ylabel("speedup in samples/s (log; above 1 = faster)")
        axes.set_title(title)
        axes.grid(True, axis="y", which="both", alpha=0.3)
    _legend_below(figure, _key_handles(
        labels, colors, sorted(set(pairs["model"]), key=lambda m: order("model", m)),
        hollow="hollow: a row stopped on the budget, contended or concurrent", ring=None))
    figure.suptitle(f"Mixed precision over fp32, {COMPILED} on over off: a point per pair of "
                    f"cases (same machine/device, model, batch, backend), 99% interval")
    return figure


SHORT_COMPARISON = {COMPILED_VS_NOT: "XLA / compile on/off"}


def _tta_figure(figure_class, frame: pd.DataFrame):
    bars = tta_bars(frame)
    figure = figure_class(figsize=(10, 1.5 + 0.4 * max(len(bars), 2)), layout="constrained")
    axes = figure.subplots()
    if not bars:
        _no_data(axes, "No time-to-accuracy results")
        return figure
    colors = _colors([b["label"] for b in bars])
    positions = list(range(len(bars)))
    # Points, not bars: a bar's length on a log axis depends on where the axis starts.
    for position, bar in zip(positions, bars, strict=True):
        color = colors[bar["label"]]
        axes.axhline(position, color="grey", linewidth=0.5, alpha=0.4)
        axes.plot([bar["seconds"]], [position], marker="o", markersize=8, linestyle="none",
                  color=color, markerfacecolor=color if bar["reached"] else "white")
        if not bar["reached"]:
            why = " (budget)" if bar.get("budget") else ""
            axes.text(bar["seconds"], position, f"   not reached{why}", va="center",
                      fontsize="small")
    axes.set_yticks(positions, [b["text"] for b in bars], fontsize="small")
    for tick, bar in zip(axes.get_yticklabels(), bars, strict=True):
        tick.set_color(colors[bar["label"]])
    axes.invert_yaxis()
    axes.set_xscale("log")
    seconds = [bar["seconds"] for bar in bars]
    # Room on the right for the words beside points not reached.
    axes.set_xlim(min(seconds) / 1.5, max(seconds) * (1.5 if all(
        bar["reached"] for bar in bars) else 6))
    axes.set_xlabel("seconds to the target accuracy, compile included (log);\nhollow = not "
                    "reached (epoch cap or budget): the run's time")
    axes.grid(True, axis="x", which="both", alpha=0.3)
    axes.set_title("Time to accuracy: a colour per machine/device")
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
