"""The regression gate: compare two sets of results case by case.

``python -m bench.report --compare OLD NEW --fail-slower 10%`` loads both sides,
takes the newest run per (machine, suite, case) on each (or pools all runs with
``--all-runs``) and compares the time per round of cases with the same machine id.
Different machine ids are never compared: their cases are "missing".

A case is *regressed* when NEW's median time is more than the threshold above OLD's
*and* the difference is past the noise; *improved* symmetrically (more than the
threshold below); otherwise *unchanged*. The noise test uses the raw rounds:

* a two-sided Mann-Whitney U test at alpha 0.05 when both sides have at least 3
  rounds and enough rounds for the test to reach alpha at all (3 against 3 cannot:
  the smallest exact two-sided p-value is 2/20 = 0.1);
* otherwise, or without scipy, the [min, max] ranges of the rounds must not overlap.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.loader import CASE_KEY, WarningLog, load_results, select_runs
from bench.tables import NO_VALUE, format_seconds, markdown_table

ALPHA = 0.05
MIN_ROUNDS_FOR_U = 3
STATUS_ORDER = ("regressed", "improved", "unchanged", "missing")


def parse_threshold(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1 (argparse ``type``)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a threshold like 10% or 0.1") from None
    if not raw.endswith("%") and value >= 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is ambiguous: write a percentage (10%) or a fraction below 1 (0.1)")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative threshold")
    return value


def _load_mannwhitneyu() -> Callable | None:
    """scipy's Mann-Whitney U test, or None when scipy is not installed."""
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        return None
    return mannwhitneyu


def smallest_two_sided_p(n_old: int, n_new: int) -> float:
    """The smallest exact two-sided p-value a U test can give for these sample sizes."""
    return 2.0 / math.comb(n_old + n_new, n_old)


def noise_test(old: Sequence[float], new: Sequence[float],
               alpha: float = ALPHA) -> tuple[bool, float | None, str]:
    """Whether ``old`` and ``new`` rounds differ past the noise.

    Returns ``(significant, p_value, test)`` with ``test`` ``"U"`` (Mann-Whitney)
    or ``"range"`` (non-overlapping [min, max]; no p-value).
    """
    mannwhitneyu = _load_mannwhitneyu()
    if (mannwhitneyu is not None and min(len(old), len(new)) >= MIN_ROUNDS_FOR_U
            and smallest_two_sided_p(len(old), len(new)) < alpha):
        p_value = float(mannwhitneyu(old, new, alternative="two-sided").pvalue)
        return p_value < alpha, p_value, "U"
    disjoint = max(old) < min(new) or max(new) < min(old)
    return disjoint, None, "range"


def _rounds(record: dict) -> list[float]:
    """The raw rounds, else the [min, max] of the stats (enough for the range test)."""
    raw = record.get("raw_rounds")
    if isinstance(raw, list) and raw:
        return [float(x) for x in raw]
    values = [record.get("min"), record.get("max")]
    values = [float(v) for v in values if v is not None and not pd.isna(v)]
    return values or [float(record["median"])]


def compare_frames(old: pd.DataFrame, new: pd.DataFrame, threshold: float,
                   alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (machine, suite, case) on either side with its status.

    Columns: status, machine_id, suite, case, old_median, new_median, ratio
    (new/old time), p_value, test, note.
    """
    old_by_key = {tuple(r[k] for k in CASE_KEY): r for r in old.to_dict("records")}
    new_by_key = {tuple(r[k] for k in CASE_KEY): r for r in new.to_dict("records")}
    rows = []
    for key in sorted(set(old_by_key) | set(new_by_key)):
        machine_id, suite, case = key
        row = {"machine_id": machine_id, "suite": suite, "case": case, "old_median": np.nan,
               "new_median": np.nan, "ratio": np.nan, "p_value": np.nan, "test": "", "note": ""}
        before, after = old_by_key.get(key), new_by_key.get(key)
        if before is None or after is None:
            row.update(status="missing", note="only in NEW" if before is None else "only in OLD")
            row["old_median" if after is None else "new_median"] = float(
                (before or after)["median"])
            rows.append(row)
            continue
        old_median, new_median = float(before["median"]), float(after["median"])
        ratio = new_median / old_median if old_median else math.inf
        significant, p_value, test = noise_test(_rounds(before), _rounds(after), alpha)
        if ratio > 1 + threshold and significant:
            status = "regressed"
        elif ratio < 1 - threshold and significant:
            status = "improved"
        else:
            status = "unchanged"
        row.update(status=status, old_median=old_median, new_median=new_median, ratio=ratio,
                   p_value=p_value if p_value is not None else np.nan, test=test)
        rows.append(row)
    columns = ["status", "machine_id", "suite", "case", "old_median", "new_median", "ratio",
               "p_value", "test", "note"]
    table = pd.DataFrame(rows, columns=columns)
    if not table.empty:
        table["_order"] = table["status"].map(STATUS_ORDER.index)
        table = table.sort_values(["_order", "machine_id", "suite", "case"], kind="stable") \
            .drop(columns="_order").reset_index(drop=True)
    return table


def _ratio_text(ratio: float) -> str:
    if pd.isna(ratio):
        return NO_VALUE
    return f"{ratio:.3f} ({100 * (ratio - 1):+.1f}%)"


def render_comparison(table: pd.DataFrame, threshold: float, notes: Sequence[str] = (),
                      alpha: float = ALPHA) -> str:
    """The gate's report: how it decides, notes, the table and a one-line verdict."""
    lines = [
        f"_Regression gate: NEW against OLD, same machine id only. Regressed = median time "
        f"per round more than {100 * threshold:g}% above OLD and past the noise (two-sided "
        f"Mann-Whitney U, alpha {alpha:g}; test `range` = non-overlapping [min, max] of the "
        f"rounds, used with too few rounds or without scipy). Ratio = NEW/OLD time "
        f"(above 1 = slower)._",
        "",
    ]
    lines += [f"- {note}" for note in notes]
    if notes:
        lines.append("")
    rows = []
    for r in table.to_dict("records"):
        rows.append([
            r["status"], r["machine_id"], r["suite"], r["case"],
            format_seconds(r["old_median"]) if not pd.isna(r["old_median"]) else NO_VALUE,
            format_seconds(r["new_median"]) if not pd.isna(r["new_median"]) else NO_VALUE,
            _ratio_text(r["ratio"]),
            f"{r['p_value']:.2g}" if not pd.isna(r["p_value"]) else NO_VALUE,
            r["note"] if r["status"] == "missing" else (r["test"] or NO_VALUE),
        ])
    if rows:
        lines.append(markdown_table(
            ["status", "machine", "suite", "case", "OLD", "NEW", "ratio", "p-value", "test / note"],
            rows, ["l", "l", "l", "l", "r", "r", "r", "r", "l"]))
        lines.append("")
    counts = {s: int((table["status"] == s).sum()) if not table.empty else 0
              for s in STATUS_ORDER}
    verdict = "FAIL" if counts["regressed"] else "PASS"
    lines.append(f"**{verdict}**: " + ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER))
    return "\n".join(lines) + "\n"


def run_gate(old_paths: Sequence[str | Path], new_paths: Sequence[str | Path], threshold: float,
             log: WarningLog, all_runs: bool = False, alpha: float = ALPHA) -> tuple[str, int]:
    """Load both sides, compare and render; returns ``(text, exit status)``.

    Exit status 1 when any case regressed, else 0.
    """
    old = select_runs(load_results(old_paths, log).benchmarks, all_runs)
    new = select_runs(load_results(new_paths, log).benchmarks, all_runs)
    old_machines = set(old["machine_id"]) if not old.empty else set()
    new_machines = set(new["machine_id"]) if not new.empty else set()
    notes = []
    for machine_id in sorted(old_machines - new_machines):
        notes.append(f"machine `{machine_id}` is only in OLD: its cases are missing "
                     f"(results of different machine ids are not comparable)")
    for machine_id in sorted(new_machines - old_machines):
        notes.append(f"machine `{machine_id}` is only in NEW: its cases are missing "
                     f"(results of different machine ids are not comparable)")
    if old_machines and new_machines and not old_machines & new_machines:
        notes.append("OLD and NEW share no machine id: they are not comparable, "
                     "so nothing can regress")
    table = compare_frames(old, new, threshold, alpha)
    text = render_comparison(table, threshold, notes, alpha)
    return text, 1 if (table["status"] == "regressed").any() else 0
