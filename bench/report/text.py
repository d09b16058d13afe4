"""How the report writes numbers and tables: shared by the tables, plots, gate and history.

``276k`` (three significant digits with k/M/G), ``0.217 s`` (``41.2 ms`` below 0.1 s),
``3.10×`` (a speedup), ``—`` (no value), padded markdown tables, and the order of rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

NO_VALUE = "—"

#: The order rows follow: known values first, in this order; the others after, by name.
ORDERS = {"suite": {"train": 0, "inference": 1, "latency": 2, "tta": 3, "compile": 4,
                    "scaling": 5, "baseline": 6},
          "model": {"mlp": 0, "cnn": 1}, "precision": {"fp32": 0, "fp16": 1, "bf16": 2},
          "backend": {"tensorflow": 0}, "dtype": {"float32": 0, "float16": 1, "bfloat16": 2}}


def order(kind: str, value: object) -> tuple:
    """Sort key: known values in the order of ``ORDERS[kind]``, the others after by name."""
    return ORDERS[kind].get(value, len(ORDERS[kind])), str(value)


def has(value: object) -> bool:
    """A value was measured: not None, NaN or NA (the loader's markers of "absent")."""
    return value is not None and value is not pd.NA and value == value


def yes(value: object) -> bool:
    """A flag that is set (not False, None or NA)."""
    return value is True or value is np.True_


def sig3(value: float) -> str:
    """Three significant digits, trailing zeros kept (``0.720``, ``12.0``, ``276``)."""
    text = f"{value:#.3g}"
    if "e" in text:  # large values read best in full; tiny ones keep the exponent
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2e}"
    return text.rstrip(".")


def format_si(value: float) -> str:
    """A count with k/M/G suffix and three significant digits: ``276k``, ``1.23M``."""
    rounded = float(f"{value:.3g}")
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(rounded) >= threshold:
            return sig3(rounded / threshold) + suffix
    return sig3(rounded)


def format_seconds(seconds: float) -> str:
    """``0.217 s``, ``41.2 ms``, ``1,234 s``."""
    if seconds < 0.1:
        return f"{sig3(seconds * 1000)} ms"
    return f"{seconds:,.0f} s" if seconds >= 1000 else f"{sig3(seconds)} s"


def format_share(fraction: float) -> str:
    """A spread or change as a percentage: ``0.4%`` (one decimal below 10%), ``15%``."""
    return f"{100 * fraction:.1f}%" if 100 * fraction < 10 else f"{100 * fraction:.0f}%"


def format_spread(record: dict) -> str:
    """`` ±1.2%``: the IQR of a record's rounds relative to their median; none for one round."""
    iqr, median, rounds = (record.get(k) for k in ("iqr", "median", "rounds"))
    return " ±" + format_share(iqr / median) \
        if has(iqr) and has(median) and median and has(rounds) and rounds >= 2 else ""


def format_run_spread(spread: float) -> str:
    """Slowest / fastest run - 1 as a percentage; ``—`` without one."""
    return format_share(spread) if has(spread) else NO_VALUE


def format_speedup(ratio: float | None) -> str:
    """``3.10×``, ``41.2×``, ``250×``; ``—`` without one."""
    if not has(ratio) or not math.isfinite(ratio):
        return NO_VALUE
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:.1f}×" if ratio < 100 else f"{ratio:.0f}×"


def format_gflops(gflops: float) -> str:
    """Calibration figures: ``96.4``, ``800``, ``51,200``."""
    return f"{gflops:,.0f}" if gflops >= 100 else f"{gflops:.1f}"


def format_int(value: object) -> str:
    return str(int(value)) if has(value) else NO_VALUE


def first_line(error: object, width: int = 100) -> str:
    """The first line of an error message, cut to ``width`` characters."""
    line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def escape(text: object) -> str:
    """A cell on one line, whose pipes do not split the row."""
    return str(text).replace("\n", " ").replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]],
                   align: Sequence[str]) -> str:
    """A padded markdown table; ``align`` holds ``"l"`` or ``"r"`` per column."""
    body = [[escape(cell) for cell in row] for row in rows]
    head = [escape(h) for h in headers]
    widths = [max([len(head[i]), 3] + [len(row[i]) for row in body]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w)
                                 for c, w, a in zip(cells, widths, align, strict=True)) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if a == "r" else "-" * w
                              for w, a in zip(widths, align, strict=True)) + " |"
    return "\n".join([line(head), rule] + [line(row) for row in body])


def format_minutes(seconds: float) -> str:
    """A run's length: '45 s', '12.5 min'."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


#: Names a line lists before "and N more" (the report's intro and summary over a fleet).
LIST_LIMIT = 8


def listed(names: Iterable[object], limit: int = LIST_LIMIT, code: bool = True) -> str:
    """Names comma-separated, in backticks (``code``; plain text without); past ``limit``,
    the first ones and "and N more" (200 machine ids make no line anyone reads)."""
    names = [f"`{name}`" if code else str(name) for name in names]
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"
