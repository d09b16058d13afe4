"""The regression gate's judgement: two sets of runs compared case by case, a run the evidence.

``python -m bench.report --compare OLD NEW --fail-slower 10%`` loads every run on each
side (OLD and NEW are result files or folders) and compares cases of the same machine
id. Different machine ids are never compared.

Why runs and not rounds: the rounds of one process agree within a few percent, while
separate processes of the same code differ per case by 10-70% on a shared machine
(memory layout, frequency, what else ran). A test on the rounds of one run against the
rounds of another calls that difference a regression every time. So the unit here is a
run (one result file): each contributes its median time per round, and a case is judged
on the spread of those run medians, as pyperf (many worker processes) and asv
(``continuous``: several processes a side) judge theirs.

The rule for one case, with OLD's run medians ``o`` and NEW's ``n`` (times):

* ``ratio`` = median(n) / median(o);
* a one-sided Student t-test on ``log(o)`` and ``log(n)`` (pooled variance, as pyperf's
  ``compare_to``; logarithms, because run-to-run noise is a factor, not an offset);
* *slower* (a regression): ratio above 1 + threshold **and** p below ``ALPHA / N``, N
  the number of cases compared on that machine (Bonferroni: the chance that unchanged
  code fails on any of them stays below ``ALPHA``; asv uses 0.002 per benchmark); the
  interval at 1 - 2 ALPHA/N then lies wholly above 1;
* *faster*: ratio below 1 - threshold and p (faster) below the same bound;
* *same*: that interval lies inside 1 +/- threshold;
* *undecided* otherwise: too few runs (one a side shows no run-to-run spread), or an
  interval that reaches past the threshold; when the ratio is past the threshold, the
  note says how many runs a side would decide it if the spread seen so far holds.

The words and the statistics are those of :mod:`bench.stats`, shared with ``bench.ab``
and the report's verdicts across machines.

One row per machine, ``(all)``, compares the runs as wholes: each run's geometric mean
over the cases of its time relative to OLD, tested the same way at ``OVERALL_ALPHA``. A
slowdown of everything by 30% shows there long before each case can show it alone.

Rows marked contended or concurrent (other processes took the machine while they were
timed) are left out of the verdict and listed. A case of OLD that NEW lacks, or that
failed in NEW, is *missing*/*failed* and fails the gate unless ``allow_missing``.

Loading the two sides, the gate's report and its exit status are in
:mod:`bench.report.gate`; the run-to-run spread the report lists is here
(:func:`run_spread`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench import stats
from bench.report.loader import CASE_KEY, ResultSet
from bench.report.selection import spoiled_mask
from bench.report.text import first_line
from bench.stats import (  # noqa: F401 (parse_threshold: the gate's option type)
    ADDED,
    FAILED,
    FASTER,
    MISSING,
    SAME,
    SLOWER,
    UNDECIDED,
    parse_threshold,
)

#: Per machine: the chance that some case of unchanged code is called slower (each of
#: its N cases is tested at ALPHA / N).
ALPHA = 0.002
#: The ``(all)`` row: one test per machine; its ratio averages every case, so unchanged
#: code seldom even reaches the threshold there.
OVERALL_ALPHA = 0.01
#: Runs a side beyond which "more runs" stops being useful advice.
MAX_RUNS_SUGGESTED = 50

OVERALL_SUITE = "(all)"
OVERALL_CASE = "(geometric mean over cases)"

#: The order rows are listed in: what fails the gate first.
STATUS_ORDER = (SLOWER, FAILED, MISSING, UNDECIDED, FASTER, SAME, ADDED)

TABLE_COLUMNS = ["status", "machine_id", "suite", "case", "old_runs", "new_runs",
                 "old_median", "new_median", "old_spread", "new_spread", "ratio", "low", "high",
                 "p_value", "p_needed", "note"]


def _interval(diff: float, sd: float | None, n_old: int, n_new: int,
              alpha: float) -> tuple[float, float, float, float]:
    """(p slower, p faster, low, high): the one-sided p-values of a mean log difference
    ``diff`` with pooled ``sd``, and the time ratio's interval at confidence 1 - 2 alpha
    (each side of it at alpha: ``low`` is above 1 exactly when p slower < alpha)."""
    df = n_old + n_new - 2
    if sd is None or df < 1:
        return math.nan, math.nan, math.nan, math.nan
    se = sd * math.sqrt(1.0 / n_old + 1.0 / n_new)
    if se > 0:
        t = diff / se
    else:
        t = math.inf if diff > 0 else -math.inf if diff < 0 else 0.0
    slower = stats.t_sf(t, df)
    interval = stats.ratio_interval(diff, se, df, 1 - 2 * alpha)
    return slower, 1.0 - slower, interval.low, interval.high


def one_sided_p(diff: float, sd: float, n_old: int, n_new: int) -> tuple[float, float]:
    """(p slower, p faster) of a mean log difference ``diff`` with pooled ``sd``."""
    slower, faster, _, _ = _interval(diff, sd, n_old, n_new, 0.5)
    return slower, faster


def runs_to_decide(diff: float, sd: float | None, alpha: float) -> int | None:
    """Runs a side at which a mean log difference ``diff`` with spread ``sd`` passes the test.

    None when no number up to :data:`MAX_RUNS_SUGGESTED` would (or ``diff`` is not
    slower, or there is no spread to go by).
    """
    if sd is None or math.isnan(sd) or not diff > 0:
        return None

    def decides(runs: int) -> bool:
        return one_sided_p(diff, sd, runs, runs)[0] < alpha

    if not decides(MAX_RUNS_SUGGESTED):
        return None
    # p falls as runs grow (the error shrinks, the degrees of freedom grow): bisect.
    low, high = 1, MAX_RUNS_SUGGESTED  # decides(low) is False (no spread), decides(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if decides(middle) else (middle, high)
    return high


def judge(old: Sequence[float], new: Sequence[float], threshold: float,
          alpha: float) -> dict:
    """Verdict on one case from OLD's and NEW's run medians (times, positive).

    Returns status (``slower``, ``faster``, ``same`` or ``undecided``), ratio (NEW/OLD
    median), low and high (the interval of the geometric-mean ratio at 1 - 2 alpha; NaN
    without two runs on some side), p_value (one-sided, in the direction of the ratio;
    NaN when not tested) and a note.
    """
    old_values, new_values = [float(x) for x in old], [float(x) for x in new]
    ratio = statistics.median(new_values) / statistics.median(old_values)
    old_logs, new_logs = stats.logs(old_values), stats.logs(new_values)
    diff = stats.mean_sd(new_logs)[0] - stats.mean_sd(old_logs)[0]
    sd, df = stats.pooled_sd([old_logs, new_logs])
    sd = sd if df else None
    slower, faster = ratio > 1 + threshold, ratio < 1 - threshold
    verdict = {"status": UNDECIDED, "ratio": ratio, "low": math.nan, "high": math.nan,
               "p_value": math.nan, "note": ""}
    if len(old_values) + len(new_values) - 2 < 2:
        # One run a side (or one and two): no run-to-run spread worth the name.
        needed = max(3, runs_to_decide(diff, sd, alpha) or 3)
        verdict["note"] = (
            f"too few runs ({len(old_values)} OLD, {len(new_values)} NEW) to tell a change "
            f"from run-to-run noise; make at least {needed} runs a side (pytest bench "
            f"--bench-repeat {needed})")
        return verdict
    p_slower, p_faster, low, high = _interval(diff, sd, len(old_values), len(new_values),
                                              alpha)
    verdict.update(low=low, high=high, p_value=p_slower if ratio >= 1 else p_faster)
    if slower and p_slower < alpha:
        verdict["status"] = SLOWER
    elif faster and p_faster < alpha:
        verdict["status"] = FASTER
    elif stats.verdict(low, high, threshold) == SAME:
        verdict["status"] = SAME
    elif slower:
        needed = runs_to_decide(diff, sd, alpha)
        fewest = min(len(old_values), len(new_values)) + 1
        if needed is None:
            how = (f"within the run-to-run noise: even {MAX_RUNS_SUGGESTED} runs a side "
                   f"would not decide it" if diff > 0 else
                   "the runs' geometric mean is not slower: within the run-to-run noise")
        else:
            runs = max(needed, fewest)
            how = (f"about {runs} runs a side would decide it, if the spread seen holds "
                   f"(pytest bench --bench-repeat {runs})")
        verdict["note"] = f"beyond the threshold (slower), but not past the run-to-run noise; {how}"
    elif faster:
        verdict["note"] = "beyond the threshold (faster), but not past the run-to-run noise"
    else:
        verdict["note"] = f"within {100 * threshold:g}%, but the interval reaches past it"
    return verdict


# --------------------------------------------------------------------------- comparison

def _spread(values: Sequence[float]) -> float:
    return float(max(values) / min(values) - 1.0) if len(values) > 1 else math.nan


def _run_medians(frame: pd.DataFrame) -> dict[tuple, dict[str, float]]:
    """(machine, suite, case) -> {run file: median time per round}: the gate's evidence."""
    medians: dict[tuple, dict[str, float]] = {}
    for record in frame.to_dict("records"):
        median = record.get("median")
        if isinstance(median, (int, float)) and median > 0:
            key = tuple(record[k] for k in CASE_KEY)
            medians.setdefault(key, {})[str(record["run_file"])] = float(median)
    return medians


def run_spread(frame: pd.DataFrame) -> pd.DataFrame:
    """Run-to-run spread of each (machine, suite, case) with at least two runs.

    The unit is a run (one process): its median time per round, as the gate sees it;
    contended and concurrent rows are left out. Columns: machine_id, suite, case, label,
    runs, fastest, median, slowest and spread = slowest / fastest - 1, the figure a 10%
    threshold is held against; and ``within``, the median over those runs of the 99%
    interval each run reached on its own (``ci_halfwidth``, schema 3; NaN before), so the
    precision one run claims stands beside what separate runs show.
    """
    columns = ["machine_id", "suite", "case", "label", "runs", "fastest", "median", "slowest",
               "spread", "within"]
    usable = frame[~spoiled_mask(frame)] if not frame.empty else frame
    if usable.empty:
        return pd.DataFrame(columns=columns)
    median = pd.to_numeric(usable["median"], errors="coerce")
    # One median per run (the last row of a run, as the gate reads them), positive only.
    timed = usable[median > 0].assign(median=median[median > 0]) \
        .drop_duplicates(CASE_KEY + ["run_file"], keep="last")
    by_case = timed.groupby(CASE_KEY, sort=True)["median"]
    table = pd.DataFrame({"runs": by_case.size(), "fastest": by_case.min(),
                          "median": by_case.median(), "slowest": by_case.max()})
    table = table[table["runs"] >= 2].copy()
    if table.empty:
        return pd.DataFrame(columns=columns)
    table["spread"] = table["slowest"] / table["fastest"] - 1.0
    table["label"] = usable.groupby(CASE_KEY, sort=True)["label"].last().reindex(table.index)
    table["within"] = usable.groupby(CASE_KEY, sort=True)["ci_halfwidth"].median() \
        .reindex(table.index) if "ci_halfwidth" in usable else math.nan
    return table.reset_index()[columns].astype({"runs": int})


def _row(status: str, key: tuple, old: Sequence[float] = (), new: Sequence[float] = (),
         **fields) -> dict:
    machine_id, suite, case = key
    row = {"status": status, "machine_id": machine_id, "suite": suite, "case": case,
           "old_runs": len(old), "new_runs": len(new),
           "old_median": float(np.median(old)) if len(old) else math.nan,
           "new_median": float(np.median(new)) if len(new) else math.nan,
           "old_spread": _spread(old) if len(old) else math.nan,
           "new_spread": _spread(new) if len(new) else math.nan,
           "ratio": math.nan, "low": math.nan, "high": math.nan, "p_value": math.nan,
           "p_needed": math.nan, "note": ""}
    row.update(fields)
    return row


def _overall_rows(judged: dict[tuple, tuple[dict, dict]], threshold: float) -> list[dict]:
    """Per machine: each run's geometric mean over the cases of its time relative to OLD."""
    rows = []
    machines = sorted({key[0] for key in judged})
    for machine_id in machines:
        cases = {key: sides for key, sides in judged.items() if key[0] == machine_id}
        if len(cases) < 2:
            continue
        scores: list[dict[str, list[float]]] = [{}, {}]
        for old, new in cases.values():
            reference = float(np.mean(np.log(list(old.values()))))
            for side, runs in enumerate((old, new)):
                for run, median in runs.items():
                    scores[side].setdefault(run, []).append(math.log(median) - reference)
        old_scores = [math.exp(float(np.mean(v))) for v in scores[0].values()]
        new_scores = [math.exp(float(np.mean(v))) for v in scores[1].values()]
        verdict = judge(old_scores, new_scores, threshold, OVERALL_ALPHA)
        note = f"{len(cases)} cases; {verdict['note']}" if verdict["note"] else \
            f"{len(cases)} cases"
        row = _row(verdict["status"], (machine_id, OVERALL_SUITE, OVERALL_CASE),
                   old_scores, new_scores, ratio=verdict["ratio"], low=verdict["low"],
                   high=verdict["high"], p_value=verdict["p_value"], p_needed=OVERALL_ALPHA,
                   note=note)
        # Relative figures, not times: the OLD/NEW cells show the ratio to OLD instead.
        row["relative"] = True
        rows.append(row)
    return rows


def compare_results(old: ResultSet, new: ResultSet, threshold: float,
                    alpha: float = ALPHA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare every case of the machines OLD and NEW share.

    Returns ``(table, left_out)``: the table has one row per case (columns
    :data:`TABLE_COLUMNS`, plus ``(all)`` rows per machine); ``left_out`` lists the rows
    left out as contended or concurrent (side, machine_id, run, suite, case, why).
    """
    shared = set(old.benchmarks["machine_id"]) & set(new.benchmarks["machine_id"]) \
        if not (old.benchmarks.empty or new.benchmarks.empty) else set()
    sides, left_out = [], []
    for name, results in (("OLD", old), ("NEW", new)):
        frame = results.benchmarks[results.benchmarks["machine_id"].isin(shared)]
        spoiled = spoiled_mask(frame)
        for record in frame[spoiled].to_dict("records"):
            why = "concurrent" if record.get("concurrent") is True else "contended"
            contention = record.get("contention")
            if why == "contended" and isinstance(contention, (int, float)) \
                    and math.isfinite(contention):
                why += f" ({100 * contention:.0f}% of the CPU taken by others)"
            left_out.append({"side": name, "machine_id": record["machine_id"],
                             "run": record["run"], "suite": record["suite"],
                             "case": record["case"], "why": why})
        sides.append((_run_medians(frame), _run_medians(frame[~spoiled])))
    (old_all, old_usable), (new_all, new_usable) = sides
    failed_in_new: dict[tuple, str] = {}
    for record in new.failures[new.failures["machine_id"].isin(shared)].to_dict("records"):
        key = tuple(record[k] for k in CASE_KEY)
        failed_in_new.setdefault(key, f"failed in NEW ({record['run']}): "
                                      f"{first_line(record['error'], 80)}")

    judged = {key: (old_usable[key], new_usable[key]) for key in old_all
              if key in old_usable and key in new_usable and key not in failed_in_new}
    per_machine = pd.Series([key[0] for key in judged]).value_counts().to_dict()
    rows = []
    for key in sorted(set(old_all) | set(new_all)):
        old_runs = list(old_usable.get(key, {}).values())
        new_runs = list(new_usable.get(key, {}).values())
        if key not in old_all:
            rows.append(_row(ADDED, key, old_runs, new_runs, note="only in NEW"))
        elif key in failed_in_new:
            rows.append(_row(FAILED, key, old_runs, new_runs, note=failed_in_new[key]))
        elif key not in new_all:
            rows.append(_row(MISSING, key, old_runs, new_runs, note="not in NEW"))
        elif key not in judged:
            sides = " and ".join(side for side, usable in (("OLD", old_usable),
                                                            ("NEW", new_usable))
                                 if key not in usable)
            rows.append(_row(UNDECIDED, key, old_runs, new_runs,
                             note=f"left out: every {sides} run of it contended or concurrent"))
        else:
            needed = alpha / per_machine[key[0]]
            verdict = judge(old_runs, new_runs, threshold, needed)
            rows.append(_row(verdict["status"], key, old_runs, new_runs,
                             ratio=verdict["ratio"], low=verdict["low"],
                             high=verdict["high"], p_value=verdict["p_value"],
                             p_needed=needed, note=verdict["note"]))
    rows += _overall_rows(judged, threshold)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS + ["relative"])
    table["relative"] = table["relative"].fillna(False).astype(bool)
    if not table.empty:
        table["_order"] = table["status"].map(STATUS_ORDER.index)
        table["_overall"] = table["suite"] != OVERALL_SUITE
        table = table.sort_values(["_order", "machine_id", "_overall", "suite", "case"],
                                  kind="stable").drop(columns=["_order", "_overall"]) \
            .reset_index(drop=True)
    left = pd.DataFrame(left_out, columns=["side", "machine_id", "run", "suite", "case", "why"])
    return table, left
