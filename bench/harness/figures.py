"""The closing table of a bench session, and the texts of a result row people read.

pytest-benchmark ends a session with its own table: 250 characters wide, in microseconds,
with every statistic and "(inf)" columns, for figures that are seconds per epoch. This
table names what a reader looks for (:func:`summary_table`): the case, the median of its
timed rounds in the figure's unit (an epoch, a pass over the test set, a call) and per
sample (s/ms/µs, samples/s with k/M), the 99% interval as ±%, the rounds and why they
stopped. pytest-benchmark's own table stays available: ``--bench-benchmark-table``, or
any of its display options (:data:`BENCHMARK_TABLE_OPTIONS`), shows it as well
(:func:`wants_benchmark_table`); otherwise :func:`hide_benchmark_table` keeps what its
summary does less the table. :func:`outcome_text` is the same figures on one line, for
the line a finished case gets (:mod:`bench.harness.progress`). Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: pytest-benchmark's options that shape its own table: given, its table is shown too.
BENCHMARK_TABLE_OPTIONS = ("--benchmark-columns", "--benchmark-sort", "--benchmark-group-by",
                           "--benchmark-name", "--benchmark-time-unit",
                           "--benchmark-histogram", "--benchmark-compare")
#: Their defaults (pytest-benchmark 4-5), to tell an option set in an ini file or addopts.
_BENCHMARK_DEFAULTS = {"benchmark_columns": None, "benchmark_sort": "min",
                       "benchmark_group_by": "group", "benchmark_name": "normal",
                       "benchmark_time_unit": None, "benchmark_histogram": [],
                       "benchmark_compare": []}
#: What a suite's figure is per: its statistics are kept in that unit (bench.measure.rounds).
UNITS = {"train": "epoch", "scaling": "epoch", "baseline": "epoch", "inference": "pass",
         "latency": "call", "tta": "run", "compile": "compile"}
#: The closing table's heading of a suite's rows.
HEADINGS = {"train": "train: median per epoch", "scaling": "scaling: median per epoch",
            "baseline": "baseline: median per epoch",
            "inference": "inference: median per pass over the test set",
            "latency": "latency: median per call (one sample)",
            "tta": "tta: median time to the target accuracy",
            "compile": "compile: median time to compile the train step"}
#: Said under the table.
LEGEND = ("median of the timed rounds; ±99%: the half-width of its 99% interval",
          "pytest-benchmark's own table: --bench-benchmark-table")


def _sig3(value: float) -> str:
    """Three significant digits: ``2.31``, ``48.2``, ``645``, ``1234``."""
    if value >= 999.5:
        return f"{value:.0f}"
    return f"{value:#.3g}".rstrip(".")


def format_time(seconds: float | None) -> str:
    """``2.31 s``, ``48.2 ms``, ``23.5 µs``, ``812 ns``; ``-`` where unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= scale * 0.9995:
            return f"{_sig3(seconds / scale)} {unit}"
    return f"{_sig3(seconds * 1e9)} ns"


def format_rate(per_second: float | None) -> str:
    """``645/s``, ``42.5k/s``, ``1.20M/s``; ``-`` where unknown."""
    if per_second is None or not math.isfinite(per_second) or per_second <= 0:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= scale * 0.9995:
            return f"{_sig3(per_second / scale)}{suffix}/s"
    return f"{_sig3(per_second)}/s"


def format_share(share: float | None) -> str:
    """A 99% half-width as ``±1.2%``; ``-`` where there is none (fixed rounds, one round)."""
    if share is None or not math.isfinite(share):
        return "-"
    return f"±{share * 100:.1f}%" if share < 1 else f"±{share * 100:.0f}%"


def headline(row: dict) -> dict[str, str]:
    """A result row (pytest-benchmark's ``as_dict``: ``stats``, ``extra_info``) as the
    texts people read: ``median`` of the timed rounds, a ``unit`` of the figure
    (``/epoch``, ``/pass`` over the test set, ``/call``: pytest-benchmark keeps the
    statistics per unit), ``sample`` (time a sample), ``rate`` (samples/s),
    ``interval`` (the 99% half-width), ``rounds`` and ``stop``."""
    info = row.get("extra_info") or {}
    stats = row.get("stats") or {}
    median = stats.get("median")
    unit = UNITS.get(info.get("suite"))
    rate = info.get("samples_per_second")
    rounds = info.get("rounds", stats.get("rounds"))
    return {"median": format_time(median), "unit": f"/{unit}" if unit and median else "",
            "sample": format_time(1 / rate) if rate else "-",
            "rate": format_rate(rate),
            "interval": format_share(info.get("ci_halfwidth")),
            "rounds": str(rounds) if rounds is not None else "-",
            "stop": info.get("stop_reason") or "-"}


def row_label(row: dict) -> str:
    """``train mlp-cpu-b128-fp32-xla``: suite and case (one id runs in several suites);
    a benchmark of no case goes by its test's name."""
    info = row.get("extra_info") or {}
    if info.get("case"):
        return f"{info.get('suite', '?')} {info['case']}"
    return str(row.get("name") or row.get("fullname") or "?")


def outcome_text(row: dict) -> str:
    """``48.2 ms/epoch, 42.5k samples/s, ±1.2% (99%), 5 rounds, converged``."""
    texts = headline(row)
    parts = [texts["median"] + texts["unit"]]
    if texts["rate"] != "-":
        parts.append(texts["rate"].replace("/s", " samples/s"))
    if texts["interval"] != "-":
        parts.append(f"{texts['interval']} (99%)")
    parts.append(f"{texts['rounds']} rounds")
    if texts["stop"] != "-":
        parts.append(texts["stop"])
    return ", ".join(parts)


def summary_table(rows: Iterable[dict]) -> list[str]:
    """The closing table: a header, then the rows of each suite under a heading that says
    what their median is per (an epoch, a pass over the test set, a call), in the order
    they ran. Figures align on the right, names and reasons on the left; 80 columns wide
    for the usual case ids."""
    headers = ("case", "median", "per sample", "samples/s", "±99%", "rounds", "stop")
    suites: dict[str, list[tuple[str, ...]]] = {}
    for row in rows:
        info, texts = row.get("extra_info") or {}, headline(row)
        label = info["case"] if info.get("case") else row_label(row)
        rate = texts["rate"][:-2] if texts["rate"].endswith("/s") else texts["rate"]
        suites.setdefault(info.get("suite") or "", []).append(
            (label, texts["median"], texts["sample"], rate, texts["interval"],
             texts["rounds"], texts["stop"]))
    body = [cells for members in suites.values() for cells in members]
    if not body:
        return []
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]

    def line(cells) -> str:
        return "  ".join(cell.ljust(width) if i in (0, 6) else cell.rjust(width) for i, (
            cell, width) in enumerate(zip(cells, widths, strict=True))).rstrip()

    lines = [line(headers)]
    for suite, members in suites.items():
        lines.append(HEADINGS.get(suite, f"{suite or 'other'}: median per round"))
        lines.extend(line(cells) for cells in members)
    return lines


def wants_benchmark_table(config) -> bool:
    """``--bench-benchmark-table``, or one of pytest-benchmark's display options given (on
    the command line, or set away from its default in an ini file or ``PYTEST_ADDOPTS``)."""
    option = config.option
    if getattr(option, "bench_benchmark_table", False):
        return True
    args = [str(a) for a in config.invocation_params.args]
    if any(a == flag or a.startswith(flag + "=") for a in args
           for flag in BENCHMARK_TABLE_OPTIONS):
        return True
    return any(getattr(option, name, default) not in (default, None, False)
               for name, default in _BENCHMARK_DEFAULTS.items())


def hide_benchmark_table(bs) -> bool:
    """Make pytest-benchmark's session (``config._benchmarksession``) skip its table at the
    end while still doing the rest of its summary: the regression check of
    ``--benchmark-compare-fail`` and the cProfile tables. Returns False, leaving the table
    alone, where the session is not of the shape this knows (pytest-benchmark 4-5)."""
    if not all(hasattr(bs, name) for name in ("display", "check_regressions",
                                              "display_cprofile", "groups", "quiet")):
        return False

    def display_without_table(tr) -> None:
        if not bs.groups:
            return
        bs.check_regressions()
        if not bs.quiet:
            bs.display_cprofile(tr)

    bs.display = display_without_table
    return True
