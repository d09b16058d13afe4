"""The report's first sections: the answer at a glance, and every verdict across machines.

:func:`summary_section` is what a reader sees first (at most 40 lines whatever the number
of machines: :data:`MAX_MACHINES` rows a table, the rest counted): each machine/device
against the reference with its verdict and interval, overall and for training, inference
and latency; the fastest setting of each for training and for inference; what was left
out. :func:`verdicts_section` lists every case's verdict (:mod:`bench.report.verdicts`).
"""

from __future__ import annotations

import math

import pandas as pd

from bench.report import text as fmt
from bench.report.selection import spoiled_mask
from bench.report.verdicts import ALL_SUITES, ASSUMED_RUN_SD, setting_of
from bench.stats import FASTER, SAME, SLOWER, UNDECIDED

#: Rows of a summary table; further machines/devices are counted, not listed.
MAX_MACHINES = 12
SUITE_HEADERS = {"train": "training", "inference": "inference", "latency": "latency"}
VERDICT_ORDER = {SLOWER: 0, FASTER: 1, SAME: 2, UNDECIDED: 3}


def ratio_text(ratio: float, low: float, high: float) -> str:
    """``2.02× [1.19–3.43]``: a ratio and its interval (``—`` where there is none)."""
    if not fmt.has(ratio):
        return fmt.NO_VALUE
    def one(x: float) -> str:
        return fmt.sig3(x) if x < 1000 else fmt.format_si(x)
    if not (fmt.has(low) and fmt.has(high)):
        return f"{one(ratio)}×"
    return f"{one(ratio)}× [{one(low)}–{one(high)}]"


def _commits_phrase(commits: set[str] | None) -> str:
    """What the summary's caption says of the commits the runs measured."""
    if commits is not None and len(commits) == 1:
        return f"Every run measured one commit, `{next(iter(commits))[:10]}`."
    return ("Every run of a machine/device counts, whatever its commit: a code change "
            "between the sides' runs is part of the difference (Runs lists the commits; "
            "`--commit` keeps one).")


def _caption(reference: str, threshold: float, commits: set[str] | None = None) -> str:
    return (f"_Each machine/device against `{reference}` (`--relative-to`): speed ratio "
            f"(above 1 = faster), the geometric mean over the cases both ran, with its 99% "
            f"interval from the run-to-run spread (one run a side: an assumed "
            f"{100 * math.expm1(ASSUMED_RUN_SD):.0f}% a run, so only a large difference "
            f"decides); verdict at ±{100 * threshold:g}% (`--threshold`). "
            f"{_commits_phrase(commits)} Every case: section Verdicts across machines._")


def _verdict_table(headers: list[str], rows: list[list[str]]) -> str:
    """The summary's rows (:func:`_verdict_rows`) as markdown: machine/device, cases, all
    cases, verdict, then a column per suite."""
    return fmt.markdown_table(headers, rows, ["l", "r", "r", "l"] + ["r"] * (len(headers) - 4))


def _verdict_rows(summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    suites = [s for s in SUITE_HEADERS if s in set(summary["suite"])]
    headers = ["machine/device", "cases", "all cases", "verdict",
               *(SUITE_HEADERS[s] for s in suites)]
    rows = []
    for label, group in summary.groupby("label", sort=True):
        by = {r["suite"]: r for r in group.to_dict("records")}
        overall = by[ALL_SUITES]
        rows.append([f"`{label}`", str(overall["cases"]),
                     ratio_text(overall["ratio"], overall["low"], overall["high"]),
                     f"**{overall['verdict']}**",
                     *(f"{ratio_text(by[s]['ratio'], by[s]['low'], by[s]['high'])} "
                       f"{by[s]['verdict']}" if s in by else fmt.NO_VALUE for s in suites)])
    return headers, rows


def fastest_settings(selected: pd.DataFrame) -> list[list[str]]:
    """Per machine/device: its fastest training and inference setting (samples/s of the
    shown run; rows contended or concurrent left out)."""
    if selected.empty or "samples_per_second" not in selected:
        return []
    usable = selected[~spoiled_mask(selected)]
    rows = []
    for label, group in usable.groupby("label", sort=True):
        cells = []
        for suite in ("train", "inference"):
            rates = pd.to_numeric(group.loc[group["suite"] == suite, "samples_per_second"],
                                  errors="coerce").dropna()
            if rates.empty:
                cells.append(fmt.NO_VALUE)
                continue
            best = group.loc[rates.idxmax()]
            cells.append(f"`{setting_of(best['case'])}`: "
                         f"{fmt.format_si(float(rates.max()))}/s")
        rows.append([f"`{label}`", *cells])
    return rows


def left_out_line(selected: pd.DataFrame, verdicts: pd.DataFrame, reference: str,
                  not_run: int, failures: int, spoiled: int) -> str:
    """What the verdicts could not speak for, in one line."""
    labels = set(selected["label"]) - {reference} if not selected.empty else set()
    compared = set(verdicts["label"]) if not verdicts.empty else set()
    parts = []
    if labels - compared:
        parts.append(f"no case in common with the reference: "
                     f"{fmt.listed(sorted(labels - compared))}")
    if not selected.empty:
        others = selected[selected["label"] != reference]
        shown = {(r["label"], r["suite"], setting_of(r["case"]))
                 for r in others.to_dict("records")}
        judged = {(r["label"], r["suite"], r["setting"]) for r in verdicts.to_dict("records")}
        if shown - judged:
            parts.append(f"{len(shown - judged)} case(s) of other machines/devices with no "
                         f"counterpart on the reference")
    if not_run:
        parts.append(f"{not_run} case(s) not run by the plan or budget (section Not run)")
    if failures:
        parts.append(f"{failures} failure(s) (section Failures)")
    if spoiled:
        parts.append(f"{spoiled} row(s) contended or concurrent, left out of the verdicts")
    return "Left out: " + ("; ".join(parts) if parts else "nothing") + "."


def summary_section(selected: pd.DataFrame, verdicts: pd.DataFrame, summary: pd.DataFrame,
                    reference: str | None, threshold: float, not_run: int = 0,
                    failures: int = 0, spoiled: int = 0,
                    commits: set[str] | None = None) -> str:
    """The Summary section's body (without its heading): at most 40 lines. ``commits``:
    the commits the runs measured (one: the caption names it)."""
    if reference is None:
        return "_No results._"
    lines = [_caption(reference, threshold, commits), ""]
    if summary.empty:
        lines.append("_No machine/device shares a case with the reference: no verdict._")
    else:
        headers, rows = _verdict_rows(summary)
        more = len(rows) - MAX_MACHINES
        lines.append(_verdict_table(headers, rows[:MAX_MACHINES]))
        if more > 0:
            lines.append(f"\n…and {more} more machine/device(s): every one in section "
                         f"Verdicts across machines.")
    fastest = fastest_settings(selected)
    if fastest:
        lines += ["", "_Fastest setting of each machine/device (samples/s, the run the "
                      "tables show):_", ""]
        lines.append(fmt.markdown_table(["machine/device", "training", "inference"],
                                        fastest[:MAX_MACHINES], ["l", "l", "l"]))
        if len(fastest) > MAX_MACHINES:
            lines.append(f"\n…and {len(fastest) - MAX_MACHINES} more.")
    lines += ["", left_out_line(selected, verdicts, reference, not_run, failures, spoiled)]
    return "\n".join(lines)


def verdicts_section(verdicts: pd.DataFrame, threshold: float,
                     summary: pd.DataFrame | None = None) -> str | None:
    """Every case's verdict, machine/device by machine/device (None when there is none);
    first, where the summary listed only :data:`MAX_MACHINES` of them, every
    machine/device's summary row."""
    if verdicts.empty:
        return None
    overall = ""
    if summary is not None and not summary.empty:
        headers, rows = _verdict_rows(summary)
        if len(rows) > MAX_MACHINES:
            overall = (f"_Every machine/device over all its cases and by suite (the summary "
                       f"lists the first {MAX_MACHINES}):_\n\n{_verdict_table(headers, rows)}"
                       f"\n\n")
    ordered = verdicts.assign(_v=verdicts["verdict"].map(VERDICT_ORDER),
                              _s=verdicts["suite"].map(lambda s: fmt.order("suite", s))) \
        .sort_values(["label", "_v", "_s", "setting"], kind="stable")
    rows = [[f"`{r['label']}`", r["suite"], r["setting"], r["verdict"],
             ratio_text(r["ratio"], r["low"], r["high"]), f"{r['runs']}/{r['reference_runs']}",
             r["basis"]] for r in ordered.to_dict("records")]
    caption = (f"_Per case, each machine/device against `{verdicts['reference'].iloc[0]}`: "
               f"speed ratio (samples/s, or 1 / time where a suite has no rate; above 1 = "
               f"faster) of the geometric means of their runs, 99% interval in brackets, "
               f"verdict at ±{100 * threshold:g}%. Every run of a machine/device counts, "
               f"contended and concurrent rows left out. Basis: the spread the interval "
               f"rests on: a side's own runs (3 or more), its machine's spread pooled over "
               f"cases, or the assumed {100 * math.expm1(ASSUMED_RUN_SD):.0f}% a run._")
    return overall + caption + "\n\n" + fmt.markdown_table(
        ["machine/device", "suite", "setting", "verdict", "ratio [99%]", "runs", "basis"],
        rows, ["l", "l", "l", "l", "r", "r", "l"])


def summary_rows(summary: pd.DataFrame) -> list[dict]:
    """The summary as rows for the report page: one per machine/device and suite group."""
    return [{"machine/device": r["label"], "reference": r["reference"],
             "suite": r["suite"], "cases": int(r["cases"]),
             "speedup [99%]": ratio_text(r["ratio"], r["low"], r["high"]),
             "verdict": r["verdict"], "basis": r["basis"]}
            for r in summary.to_dict("records")]
