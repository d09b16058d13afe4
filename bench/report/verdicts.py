"""Verdicts across machines: is this machine/device faster than the reference, and how sure?

A cross-machine ratio is only worth what the run-to-run spread allows: runs of one commit
on one 2-core machine differ per case by a median 16-47% (slowest over fastest run), up to
2x, while each run's own rounds agree within a few percent. So the unit here is a run:
each run of a case gives one figure (its samples/s, or 1 / its median time where a suite
has no rate), and a case's interval rests on the spread *between runs*, never on the
rounds of one run:

* a side with 3 or more runs of the case: the spread of those runs (Student's t);
* else the widest of: an assumed run-to-run spread, :data:`ASSUMED_RUN_SD` on the log
  scale (about 22%: on shared 2-core machines six runs of one commit differed per case by
  a median 47% and up to 2x), taken as known (normal quantile); the machine/device's
  run-to-run spread pooled over its cases with several runs; the case's own two runs.

So one run a side tells a GPU 30x faster than a CPU (``faster``), never a 10% difference.
The ratio is the speed of the machine/device over the reference's (above 1 = faster):
the geometric mean of its runs' figures over the reference's. Verdicts (:mod:`bench.stats`)
at 99%: ``faster``/``slower`` when the interval lies wholly beyond 1 +/- the threshold,
``same`` inside it, else ``undecided``.

Every run of a machine/device is pooled, whatever ``--all-runs`` says (it chooses what the
detailed tables show); runs marked contended or concurrent are left out. Cases are matched
by their setting (suite, model, batch, precision, XLA, backend, variant, replicas): the
case id without its device part, e.g. ``mlp-b128-fp32-xla``.

A machine's summary row is the geometric mean of its case ratios. Its interval rests on
whole runs where the sides have four or more between them: each run's mean log figure
over the shared cases, centred on its side's case means, is one observation (the
machine's state of that run included), as the gate's ``(all)`` row; never below the
assumed spread where the typical case has fewer than three runs on a side (a machine
drifts as a whole).
Else it takes the mean of the cases' standard errors (an upper bound whatever the
correlation between cases) and the smallest degrees of freedom among them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from bench import stats
from bench.report.selection import spoiled_mask

#: Assumed run-to-run standard deviation of log figures where a side has no runs to
#: measure it by: log(1.22).
ASSUMED_RUN_SD = math.log(1.22)
#: Runs of a case from which its own spread is used.
OWN_SPREAD_RUNS = 3
#: Degrees of freedom a machine's pooled spread needs before it replaces the assumption.
MACHINE_SPREAD_DF = 4
DEFAULT_THRESHOLD = 0.05

SETTING_FIELDS = ["suite", "model", "batch_size", "precision", "xla", "backend"]
COLUMNS = ["label", "reference", "suite", "setting", "model", "batch_size", "precision", "xla",
           "backend", "ratio", "low", "high", "verdict", "runs", "reference_runs", "basis"]
SUMMARY_COLUMNS = ["label", "reference", "suite", "cases", "ratio", "low", "high", "verdict",
                   "basis"]
ALL_SUITES = "(all)"


def setting_of(case: object) -> str:
    """A case id without its device part: ``mlp-gpu0-b128-fp32-xla-jax`` ->
    ``mlp-b128-fp32-xla-jax``."""
    parts = str(case).split("-")
    return "-".join(parts[:1] + parts[2:]) if len(parts) > 2 else str(case)


def run_figures(frame: pd.DataFrame) -> pd.DataFrame:
    """One figure per (label, suite, setting, run): speed, higher = faster.

    samples/s where the suite has it, else 1 / the median time (compile, time to
    accuracy); rows contended or concurrent, and figures that are not positive, left out.
    """
    if frame.empty:
        return pd.DataFrame(columns=["label", "suite", "setting", "run_file", "speed",
                                     *SETTING_FIELDS[1:]])
    usable = frame[~spoiled_mask(frame)].copy()
    rate = pd.to_numeric(usable["samples_per_second"], errors="coerce") \
        if "samples_per_second" in usable else pd.Series(float("nan"), index=usable.index)
    median = pd.to_numeric(usable["median"], errors="coerce")
    usable["speed"] = rate.where(rate > 0, 1.0 / median.where(median > 0))
    usable["setting"] = usable["case"].map({c: setting_of(c) for c in usable["case"].unique()})
    usable = usable[usable["speed"].notna() & (usable["speed"] > 0)]
    keep = ["label", "suite", "setting", "run_file", "speed", *SETTING_FIELDS[1:]]
    return usable[keep].drop_duplicates(["label", "suite", "setting", "run_file"])


def machine_spread(figures: pd.DataFrame, grouped: dict | None = None
                   ) -> dict[str, tuple[float, int]]:
    """{label: (pooled sd of log figures over its cases with 2+ runs, degrees of freedom)};
    ``grouped``: :func:`_case_speeds` of ``figures``, where the caller has it."""
    by_label: dict[str, list[list[float]]] = {}
    grouped = _case_speeds(figures) if grouped is None else grouped
    for (label, _, _), speeds in sorted(grouped.items()):
        by_label.setdefault(label, []).append(stats.logs(speeds))
    return {label: stats.pooled_sd(groups) for label, groups in sorted(by_label.items())}


def _case_speeds(figures: pd.DataFrame) -> dict[tuple[str, str, str], list[float]]:
    """{(label, suite, setting): the run figures, in the frame's order}: one pass over
    plain arrays (a fleet has tens of thousands of cases; pandas' groups cost 1 ms each)."""
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for key in zip(figures["label"].to_numpy(), figures["suite"].to_numpy(),
                   figures["setting"].to_numpy(), figures["speed"].to_numpy(), strict=True):
        grouped.setdefault(key[:3], []).append(float(key[3]))
    return grouped


def _side(logged: Sequence[float], machine: tuple[float, int]) -> tuple[float, float, str]:
    """(sd of one run's log figure, its degrees of freedom, the basis in words).

    Three runs or more: their own spread. Fewer: the widest of the assumed spread, the
    machine's pooled spread and the case's own (two runs), since runs made back to back
    miss the drift of a machine over a day (1.6-1.9x seen on one 2-core machine)."""
    n = len(logged)
    if n >= OWN_SPREAD_RUNS:
        return stats.mean_sd(logged)[1], n - 1, f"{n} runs"
    choices = [(ASSUMED_RUN_SD, math.inf, f"{n} run(s), assumed spread")]
    sd, df = machine
    if df >= MACHINE_SPREAD_DF:
        choices.append((sd, df, f"{n} run(s), machine spread"))
    if n == 2:
        choices.append((stats.mean_sd(logged)[1], 1, "2 runs"))
    return max(choices, key=lambda choice: choice[0])


def compare_case(speeds: Sequence[float], reference: Sequence[float],
                 spreads: tuple[tuple[float, int], tuple[float, int]],
                 threshold: float = DEFAULT_THRESHOLD,
                 confidence: float = stats.CONFIDENCE) -> dict:
    """The verdict on one case from each side's run figures (speeds, positive).

    ``spreads``: each side's machine-wide (sd, df) to fall back on. Returns ratio, low,
    high, verdict, se (log scale), df and basis.
    """
    mine, theirs = stats.logs(speeds), stats.logs(reference)
    parts = [_side(mine, spreads[0]), _side(theirs, spreads[1])]
    variances = [(sd * sd / n, df) for (sd, df, _), n in zip(parts, (len(mine), len(theirs)),
                                                             strict=True)]
    se = math.sqrt(sum(v for v, _ in variances))
    df = stats.welch_df(variances)
    diff = stats.mean_sd(mine)[0] - stats.mean_sd(theirs)[0]
    interval = stats.ratio_interval(diff, se, df, confidence)
    basis = parts[0][2] if parts[0][2] == parts[1][2] else f"{parts[0][2]} / {parts[1][2]}"
    return {"ratio": interval.ratio, "low": interval.low, "high": interval.high,
            "verdict": stats.verdict(interval.low, interval.high, threshold,
                                     larger_is=stats.FASTER),
            "se": se, "df": df, "basis": basis}


def machine_verdicts(frame: pd.DataFrame, reference: str | None,
                     threshold: float = DEFAULT_THRESHOLD,
                     figures: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per case, every other machine/device label against ``reference``: columns
    :data:`COLUMNS`, plus ``se`` and ``df`` (the log-scale standard error and its
    degrees of freedom, which :func:`summarize` combines). ``figures``: :func:`run_figures`
    of ``frame``, where the caller has it already."""
    figures = run_figures(frame) if figures is None else figures
    if reference is None or figures.empty or reference not in set(figures["label"]):
        return pd.DataFrame(columns=[*COLUMNS, "se", "df"])
    grouped = _case_speeds(figures)
    spreads = machine_spread(figures, grouped)
    first = figures.drop_duplicates(["label", "suite", "setting"]).set_index(
        ["label", "suite", "setting"])[SETTING_FIELDS[1:]]
    fields = dict(zip(first.index, first.itertuples(index=False, name=None), strict=True))
    rows = []
    for (label, suite, setting), mine in sorted(grouped.items()):
        base = grouped.get((reference, suite, setting))
        if label == reference or base is None:
            continue
        result = compare_case(mine, base, (spreads[label], spreads[reference]), threshold)
        rows.append({"label": label, "reference": reference, "suite": suite,
                     "setting": setting, **dict(zip(SETTING_FIELDS[1:],
                                                    fields[(label, suite, setting)],
                                                    strict=True)),
                     "runs": len(mine), "reference_runs": len(base), **result})
    return pd.DataFrame(rows, columns=[*COLUMNS, "se", "df"])


def run_scores(figures: pd.DataFrame | dict, label: str, reference: str,
               cases: set[tuple[str, str]]) -> tuple[list[float], list[float]]:
    """Each run's mean over ``cases`` (suite, setting) of its log figure less its side's
    mean for the case: (the label's runs, the reference's runs), runs in file order. The
    spread of these scores is the run-to-run spread of a whole run, the machine's state
    of that run included; centring each case on its own side's mean keeps runs that hold
    different cases comparable. ``figures``: :func:`run_figures`, or
    :func:`figures_by_label` of it."""
    by_label = figures if isinstance(figures, dict) else figures_by_label(figures)
    scores: list[list[float]] = [[], []]
    for side, name in enumerate((label, reference)):
        chosen = [(case, run, log) for case, run, log in by_label.get(name, ()) if case in cases]
        logs_of: dict[tuple[str, str], list[float]] = {}
        for case, _, log in chosen:
            logs_of.setdefault(case, []).append(log)
        centre = {case: math.fsum(values) / len(values) for case, values in logs_of.items()}
        residuals: dict[str, list[float]] = {}
        for case, run, log in chosen:
            residuals.setdefault(run, []).append(log - centre[case])
        scores[side] = [math.fsum(values) / len(values)
                        for _, values in sorted(residuals.items())]
    return scores[0], scores[1]


def figures_by_label(figures: pd.DataFrame) -> dict[str, list[tuple[tuple[str, str], str, float]]]:
    """:func:`run_figures` as ``{label: [((suite, setting), run file, log figure)]}``, made
    once for every label's summary."""
    by_label: dict[str, list] = {}
    for label, suite, setting, run, speed in zip(
            figures["label"].to_numpy(), figures["suite"].to_numpy(),
            figures["setting"].to_numpy(), figures["run_file"].to_numpy(),
            figures["speed"].to_numpy(), strict=True):
        by_label.setdefault(label, []).append(((suite, setting), str(run), math.log(speed)))
    return by_label


def _summary_interval(group: pd.DataFrame, figures: dict | None,
                      confidence: float) -> tuple[stats.Interval, str]:
    """The geometric mean of a group's case ratios with its interval, and the basis.

    With four runs or more in all (2 degrees of freedom at least), from the spread of whole
    runs' scores (:func:`run_scores`), at least the assumed spread where the typical case
    (the median) has fewer than three runs on a side; else the mean of the cases'
    standard errors at the fewest degrees of freedom among them, which bounds the
    geometric mean's error whatever the correlation between cases."""
    mean = float(pd.Series([math.log(r) for r in group["ratio"]]).mean())
    if figures is not None:
        label, reference = group["label"].iloc[0], group["reference"].iloc[0]
        mine, theirs = run_scores(figures, label, reference,
                                  set(zip(group["suite"], group["setting"], strict=True)))
        if len(mine) + len(theirs) - 2 >= 2:
            sd, df = stats.pooled_sd([mine, theirs])
            basis = f"{len(mine)} / {len(theirs)} whole runs"
            typical = min(float(group["runs"].median()), float(group["reference_runs"].median()))
            if typical < OWN_SPREAD_RUNS and sd < ASSUMED_RUN_SD:
                # A side of one or two runs may have caught the machine on a good or a
                # bad hour: a machine drifts as a whole (1.6-1.9x within a day seen).
                sd, df, basis = ASSUMED_RUN_SD, math.inf, basis + ", assumed spread"
            se = sd * math.sqrt(1 / len(mine) + 1 / len(theirs))
            return stats.ratio_interval(mean, se, df, confidence), basis
    se, df = float(group["se"].mean()), float(group["df"].min())
    return stats.ratio_interval(mean, se, df, confidence), _basis_summary(group)


def summarize(verdicts: pd.DataFrame, frame: pd.DataFrame | None = None,
              threshold: float = DEFAULT_THRESHOLD, confidence: float = stats.CONFIDENCE,
              by_suite: Sequence[str] = ("train", "inference", "latency"),
              figures: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per label (and per suite of ``by_suite``): the geometric mean of the case ratios
    with its interval and verdict; columns :data:`SUMMARY_COLUMNS`. ``frame``: the
    benchmarks the verdicts came from, for the whole-run interval."""
    if figures is None and frame is not None:
        figures = run_figures(frame)
    figures = figures_by_label(figures) if figures is not None else None
    rows = []
    for label, cases in verdicts.groupby("label", sort=True):
        parts = [(ALL_SUITES, cases)] + [(s, cases[cases["suite"] == s]) for s in by_suite]
        for suite, group in parts:
            if group.empty:
                continue
            interval, basis = _summary_interval(group, figures, confidence)
            rows.append({"label": label, "reference": group["reference"].iloc[0],
                         "suite": suite, "cases": len(group), "ratio": interval.ratio,
                         "low": interval.low, "high": interval.high,
                         "verdict": stats.verdict(interval.low, interval.high, threshold,
                                                  larger_is=stats.FASTER),
                         "basis": basis})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _basis_summary(group: pd.DataFrame) -> str:
    runs, reference = int(group["runs"].max()), int(group["reference_runs"].max())
    assumed = int(group["basis"].str.contains("assumed").sum())
    text = f"up to {runs} run(s) / {reference}"
    return text + (f"; {assumed} case(s) on the assumed spread" if assumed else "")
