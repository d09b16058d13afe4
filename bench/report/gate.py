"""The regression gate as a command: load OLD and NEW, judge, report, set the exit status.

:func:`run_gate` is what ``python -m bench.report --compare OLD NEW`` runs: it checks both
sides exist and hold results of a shared machine id, compares them case by case with the
rule of :mod:`bench.report.compare`, and renders the table, what was left out and the
verdict (PASS or FAIL) with why; :func:`gate_exit_status` turns the table into the exit
status.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench.report.compare import (
    ALPHA,
    OVERALL_ALPHA,
    OVERALL_SUITE,
    STATUS_ORDER,
    compare_results,
)
from bench.report.loader import ResultSet, WarningLog, load_results
from bench.report.modes import EXIT_BAD_INPUT, MAX_RUN_NOTES
from bench.report.text import (
    NO_VALUE,
    format_run_spread,
    format_seconds,
    listed,
    markdown_table,
)
from bench.stats import FAILED, MISSING, SLOWER, UNDECIDED

#: The gate's exit statuses; 2 (bad input) is the report's EXIT_BAD_INPUT.
EXIT_PASS = 0
EXIT_FAIL = 1


class GateInputError(Exception):
    """OLD or NEW cannot be compared at all (exit status 2); the message is one line."""


# --------------------------------------------------------------------------- rendering

def _ratio_text(ratio: float, low: float = math.nan, high: float = math.nan) -> str:
    if pd.isna(ratio):
        return NO_VALUE
    interval = f" [{low:.3f}–{high:.3f}]" if not (pd.isna(low) or pd.isna(high)) else ""
    return f"{ratio:.3f} ({100 * (ratio - 1):+.1f}%){interval}"


def leans_slower(table: pd.DataFrame, threshold: float) -> pd.Series:
    """Rows left undecided while their ratio is past the threshold, slower, or unknown
    (every run of a side contended): what ``--strict`` fails on, a slowdown the runs
    could not yet tell from noise."""
    if table.empty:
        return pd.Series(False, index=table.index, dtype=bool)
    ratio = pd.to_numeric(table["ratio"], errors="coerce")
    return (table["status"] == UNDECIDED) & ((ratio > 1 + threshold) | ratio.isna())


def _p_text(p_value: float, needed: float) -> str:
    if pd.isna(p_value):
        return NO_VALUE
    return f"{p_value:.2g} ({'<' if p_value < needed else '≥'} {needed:.2g})"


def _figure(value: float, relative: bool) -> str:
    if pd.isna(value):
        return NO_VALUE
    return f"{value:.3f}×" if relative else format_seconds(value)


def explain_rule(threshold: float, alpha: float = ALPHA) -> str:
    """The caption of the gate's table: how a case is judged."""
    return (
        f"_Regression gate: NEW against OLD, same machine id only, every run on each side "
        f"(a run = one result file, one process). A case's evidence is its median time "
        f"per round in each run. Slower = the median of NEW's run medians more than "
        f"{100 * threshold:g}% above OLD's **and** past the run-to-run noise: a one-sided "
        f"t-test on the logarithms of the run medians (pooled variance) at p below "
        f"{alpha:g}/N, N the cases compared on that machine, so unchanged code fails a "
        f"machine's gate at most {100 * alpha:g}% of the time. `{OVERALL_SUITE}` compares "
        f"each run's geometric mean over the cases, relative to OLD, at p < "
        f"{OVERALL_ALPHA:g}. Faster: the same rule the other way. Same = the interval "
        f"(geometric-mean ratio at 1 - 2 x that p, in brackets beside the ratio) inside "
        f"±{100 * threshold:g}%. Undecided = anything else: too few runs, or an interval "
        f"reaching past the threshold (when slower than it, the note says how many runs a "
        f"side would decide it). Spread = slowest / fastest run median - 1. Ratio = NEW/OLD "
        f"time (above 1 = slower). Rows timed "
        f"while other processes took the machine (contended, concurrent) are left out._")


#: Rows the gate lists besides those that fail it (``--print full``: every row).
MAX_ROWS = 60


def listed_rows(table: pd.DataFrame, threshold: float, strict: bool, max_rows: int | None,
                allow_missing: bool = False) -> tuple[pd.DataFrame, str]:
    """The rows to list, in the table's order: every row that fails the gate (slower;
    failed and missing unless ``allow_missing``; under ``strict`` the undecided leaning
    slower too), and the first ``max_rows`` of the rest (None: all); and a line counting
    those not listed."""
    if max_rows is None or len(table) <= max_rows:
        return table, ""
    failing = table["status"].isin([SLOWER] if allow_missing else [SLOWER, FAILED, MISSING])
    if strict:
        failing |= leans_slower(table, threshold)
    rest = table.index[~failing]
    keep = failing.copy()
    keep[rest[:max_rows]] = True
    hidden = table[~keep]
    if hidden.empty:
        return table, ""
    counts = hidden["status"].value_counts()
    parts = ", ".join(f"{int(counts[s])} {s}" for s in STATUS_ORDER if s in counts)
    return table[keep], (f"…and {len(hidden)} more row(s) not listed ({parts}); every row "
                         f"that fails the gate is listed. `--print full` lists them all.")


def render_comparison(table: pd.DataFrame, threshold: float, notes: Sequence[str] = (),
                      left_out: pd.DataFrame | None = None, allow_missing: bool = False,
                      strict: bool = False, alpha: float = ALPHA,
                      max_rows: int | None = MAX_ROWS, verdict_only: bool = False) -> str:
    """The gate's report: the rule, notes, the table (the rows :func:`listed_rows` keeps),
    what was left out and the verdict; ``verdict_only``: the verdict line alone."""
    lines = [explain_rule(threshold, alpha), ""]
    lines += [f"- {note}" for note in notes]
    if notes:
        lines.append("")
    shown, hidden_line = listed_rows(table, threshold, strict, max_rows, allow_missing)
    rows = []
    for r in shown.to_dict("records"):
        relative = bool(r.get("relative"))
        rows.append([
            r["status"], r["machine_id"], r["suite"], r["case"],
            f"{r['old_runs']}/{r['new_runs']}",
            _figure(r["old_median"], relative), _figure(r["new_median"], relative),
            f"{format_run_spread(r['old_spread'])}/{format_run_spread(r['new_spread'])}",
            _ratio_text(r["ratio"], r.get("low", math.nan), r.get("high", math.nan)),
            _p_text(r["p_value"], r["p_needed"]),
            r["note"] or NO_VALUE,
        ])
    if rows:
        lines.append(markdown_table(
            ["status", "machine", "suite", "case", "runs OLD/NEW", "OLD", "NEW",
             "spread OLD/NEW", "ratio", "p (needed)", "note"],
            rows, ["l", "l", "l", "l", "r", "r", "r", "r", "r", "r", "l"]))
        lines.append("")
    if hidden_line:
        lines += [hidden_line, ""]
    if left_out is not None and not left_out.empty:
        lines.append(f"Left out: {len(left_out)} row(s) contended or concurrent "
                     f"(timed while other processes took the machine):")
        lines.append("")
        spoiled = left_out if max_rows is None else left_out.head(max_rows)
        lines.append(markdown_table(
            ["side", "machine", "run", "suite", "case", "why"],
            [[str(v) for v in r] for r in spoiled.itertuples(index=False)], ["l"] * 6))
        if len(spoiled) < len(left_out):
            lines.append(f"\n…and {len(left_out) - len(spoiled)} more (`--print full` "
                         f"lists them all).")
        lines.append("")
    counts = {s: int((table["status"] == s).sum()) if not table.empty else 0
              for s in STATUS_ORDER}
    leaning = int(leans_slower(table, threshold).sum())
    reasons = []
    if counts[SLOWER]:
        reasons.append("slower cases")
    if (counts[MISSING] or counts[FAILED]) and not allow_missing:
        reasons.append("missing or failed cases")
    if strict and leaning:
        reasons.append("undecided cases slower than the threshold or unjudged, under --strict")
    verdict = "FAIL" if reasons else "PASS"
    line = f"**{verdict}**: " + ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER)
    if left_out is not None and not left_out.empty:
        line += f"; {len(left_out)} row(s) left out (contended or concurrent)"
    if reasons:
        line += f" (fails on: {', '.join(reasons)})"
    elif leaning:
        line += (f" ({leaning} undecided case(s) slower than the threshold or unjudged "
                 f"pass; --strict fails on them)")
    if allow_missing and (counts[MISSING] or counts[FAILED]):
        line += " (missing and failed cases allowed by --allow-missing)"
    if verdict_only:
        return line + "\n"
    lines.append(line)
    return "\n".join(lines) + "\n"


def gate_exit_status(table: pd.DataFrame, allow_missing: bool, strict: bool,
                     threshold: float = math.inf) -> int:
    """1 when a case is slower, is missing/failed (unless allowed), or, under ``strict``,
    is undecided while slower than ``threshold``; else 0."""
    statuses = set(table["status"]) if not table.empty else set()
    failing = {SLOWER} | (set() if allow_missing else {MISSING, FAILED})
    if strict and leans_slower(table, threshold).any():
        return EXIT_FAIL
    return EXIT_FAIL if statuses & failing else EXIT_PASS


# --------------------------------------------------------------------------- loading

def _check_exists(side: str, paths: Sequence[str | Path]) -> None:
    """A side that names nothing, or only folders without result files: GateInputError."""
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise GateInputError(f"{side} {str(given)!r} does not exist; name a result "
                                 f"file or a folder of them")
    if all(Path(p).is_dir() and not any(Path(p).rglob("*.json")) for p in paths):
        raise GateInputError(f"{side} {', '.join(map(str, paths))!r} holds no result "
                             f"files (*.json)")


def _check_results(side: str, paths: Sequence[str | Path], results: ResultSet) -> None:
    if not results.benchmarks.empty:
        return
    where = ", ".join(map(str, paths))
    if results.synthetic_left_out and not results.runs:
        raise GateInputError(
            f"{side} {where!r} holds only runs on synthetic data "
            f"({results.synthetic_left_out}); --include-synthetic compares them")
    raise GateInputError(f"{side} {where!r} holds no usable results (see the warnings above)"
                         if not results.runs else
                         f"{side} {where!r} holds no successful case (every case failed)")


def side_notes(side: str, results: ResultSet) -> list[str]:
    """Notes on one side: runs on synthetic data left out, incomplete runs used (over
    :data:`MAX_RUN_NOTES`, counted per status with a few machines named)."""
    notes = []
    if results.synthetic_left_out:
        notes.append(f"{side}: {results.synthetic_left_out} run(s) on synthetic data left "
                     f"out (--include-synthetic compares them)")
    unfinished = [run for run in results.runs if run.status != "complete"]
    if len(unfinished) > MAX_RUN_NOTES:
        for status in sorted({run.status for run in unfinished}):
            mine = [run for run in unfinished if run.status == status]
            machines = sorted({run.machine_id for run in mine})
            notes.append(f"{side}: {len(mine)} runs on {len(machines)} machine(s) "
                         f"({listed(machines)}) are {status}; their finished cases are "
                         f"used, the rest count as missing")
        return notes
    for run in unfinished:
        notes.append(f"{side}: run `{run.path.name}` of `{run.machine_id}` is "
                     f"{run.status}; its finished cases are used, the rest count as "
                     f"missing")
    return notes


def run_gate(old_paths: Sequence[str | Path], new_paths: Sequence[str | Path], threshold: float,
             log: WarningLog, allow_missing: bool = False, strict: bool = False,
             include_synthetic: bool = False, alpha: float = ALPHA,
             index: object = None, print_mode: str = "summary") -> tuple[str, int]:
    """Load both sides, compare and render; returns ``(text, exit status)``.

    Exit status 0 pass, 1 fail (see :func:`gate_exit_status`), 2 when a side names
    nothing or holds no results, or the sides share no machine id (the text is then one
    ``error:`` line). ``print_mode``: summary lists every row that fails the gate and
    :data:`MAX_ROWS` of the others; full every row; none the verdict line alone.
    """
    try:
        _check_exists("OLD", old_paths)
        _check_exists("NEW", new_paths)
        old = load_results(old_paths, log, include_synthetic, index)
        new = load_results(new_paths, log, include_synthetic, index)
        _check_results("OLD", old_paths, old)
        _check_results("NEW", new_paths, new)
        old_machines, new_machines = set(old.benchmarks["machine_id"]), set(
            new.benchmarks["machine_id"])
        if not old_machines & new_machines:
            raise GateInputError(
                f"OLD and NEW share no machine id, and results of different machines are "
                f"never compared (OLD: {', '.join(sorted(old_machines))}; "
                f"NEW: {', '.join(sorted(new_machines))})")
    except GateInputError as error:
        return f"error: {error}\n", EXIT_BAD_INPUT
    notes = side_notes("OLD", old) + side_notes("NEW", new)
    for side, only in (("OLD", sorted(old_machines - new_machines)),
                       ("NEW", sorted(new_machines - old_machines))):
        if only:
            notes.append(f"{len(only)} machine(s) only in {side}, not compared (results of "
                         f"different machine ids are not comparable): {listed(only)}")
    table, left_out = compare_results(old, new, threshold, alpha)
    text = render_comparison(table, threshold, notes, left_out, allow_missing, strict, alpha,
                             max_rows=None if print_mode == "full" else MAX_ROWS,
                             verdict_only=print_mode == "none")
    return text, gate_exit_status(table, allow_missing, strict, threshold)
