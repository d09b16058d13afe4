"""A machine's results over commits: ``python -m bench.report --history [PATHS]``.

Runs are ordered by the time of the commit they measured (pytest-benchmark's
``commit_info``: ``time``, else ``author_time``; a run without it by its own time and as
a commit of its own). The runs of one commit are one point of a case's history: the
median of their run medians (time per round), and their spread as a band where there
are several. Contended and concurrent rows are left out.

A case *stepped* at a commit when the runs from that commit on differ from the runs
before it beyond the threshold and the run-to-run noise. For each commit ``k`` after the
first, *before* holds the run medians of up to :data:`WINDOW` commits ending just before
``k`` and *after* those of up to :data:`WINDOW` commits starting at ``k``; they are judged
as the gate judges OLD and NEW (:func:`bench.report.compare.judge`): the ratio of their medians
beyond the threshold **and** a one-sided t-test on the logarithms, whose pooled variance
is the run-to-run spread of both windows, at p below ``ALPHA`` / N, N the tests made on the
machine (each case at each commit after its first): unchanged code shows a false step
anywhere in a machine's history less than 0.2% of the time, so a long history needs a
bigger step, or more runs a commit, to show one. Commits next to a step see it too,
through overlapping windows: of the commits flagged less than :data:`WINDOW` apart, only
the one with the smallest p is kept. So two steps closer than that are reported as one,
and one run a side never makes a step.
"""

from __future__ import annotations

import pandas as pd

from bench.report.compare import ALPHA, judge
from bench.report.loader import CASE_KEY, ResultSet
from bench.report.selection import spoiled_mask
from bench.report.text import NO_VALUE, format_seconds, markdown_table
from bench.stats import FASTER, SLOWER

#: Commits each side of a commit whose runs are compared.
WINDOW = 3
HISTORY_COLUMNS = [*CASE_KEY, "label", "commit", "commit_time", "position", "runs", "median"]
STEP_COLUMNS = [*CASE_KEY, "commit", "commit_time", "position", "before", "after", "ratio",
                "p_value", "p_needed", "runs_before", "runs_after"]


def history_frame(results: ResultSet) -> pd.DataFrame:
    """One row per (machine, suite, case, commit): the commit (``4db2afa``, ``+`` with
    uncommitted changes), its time and ``position`` in time order on its machine, the run
    medians of its runs (``runs``) and their median."""
    frame = results.benchmarks
    if frame.empty:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    commits, times = {}, {}  # run file -> (key, name); (machine, key) -> first commit time
    for run in results.runs:
        key = run.commit or str(run.path)
        commits[str(run.path)] = (key, run.commit[:7] + "+" * run.commit.endswith("+")
                                  if run.commit else NO_VALUE)
        times[run.machine_id, key] = min(run.commit_time,
                                         times.get((run.machine_id, key), run.commit_time))
    points: dict[tuple, list] = {}
    for record in frame[~spoiled_mask(frame)].to_dict("records"):
        key, name = commits[record["run_file"]]
        point = points.setdefault((*(record[k] for k in CASE_KEY), key), [
            record["label"], name, times[record["machine_id"], key], []])
        point[3].append(record["median"])
    history = pd.DataFrame([[*case[:3], *point, pd.Series(point[3]).median(), case[3]]
                            for case, point in points.items()],
                           columns=[*CASE_KEY, "label", "commit", "commit_time", "runs",
                                    "median", "key"])
    order = history[["machine_id", "commit_time", "key"]].drop_duplicates().sort_values(
        ["machine_id", "commit_time", "key"], kind="stable")
    order["position"] = order.groupby("machine_id").cumcount()
    return history.merge(order).sort_values([*CASE_KEY, "position"], kind="stable")[
        HISTORY_COLUMNS].reset_index(drop=True)


def _runs(points: list) -> list[float]:
    return [median for point in points for median in point.runs]


def find_steps(history: pd.DataFrame, threshold: float, window: int = WINDOW,
               alpha: float = ALPHA) -> pd.DataFrame:
    """The commits at which a case stepped up (ratio above 1: slower) or down (faster)."""
    steps = []
    for machine_id, machine in history.groupby("machine_id", sort=True):
        # Every case at every commit but the first is one test: together they make
        # a false step anywhere in the machine's history less likely than ``alpha``.
        needed = alpha / max(1, sum(series["position"].nunique() - 1 for _, series in
                                    machine.groupby(["suite", "case"])))
        for (suite, case), series in machine.groupby(["suite", "case"], sort=True):
            points = list(series.sort_values("position").itertuples(index=False))
            flagged = {}
            for k in range(1, len(points)):
                before, after = _runs(points[max(0, k - window):k]), _runs(points[k:k + window])
                verdict = judge(before, after, threshold, needed)
                if verdict["status"] in (SLOWER, FASTER):
                    flagged[k] = (verdict, before, after)
            for k, (verdict, before, after) in flagged.items():
                if all((verdict["p_value"], k) < (flagged[j][0]["p_value"], j)
                       for j in flagged if 0 < abs(j - k) < window):
                    steps.append([machine_id, suite, case, points[k].commit,
                                  points[k].commit_time, points[k].position,
                                  pd.Series(before).median(), pd.Series(after).median(),
                                  verdict["ratio"], verdict["p_value"], needed, len(before),
                                  len(after)])
    return pd.DataFrame(steps, columns=STEP_COLUMNS)


def render_history(history: pd.DataFrame, steps: pd.DataFrame, threshold: float,
                   alpha: float = ALPHA) -> str:
    """What ``--history`` prints: the commits read, the rule and the steps found."""
    lines = []
    for machine_id, machine in history.groupby("machine_id", sort=True):
        commits = machine.drop_duplicates("position").sort_values("position")
        lines.append(
            f"History of `{machine_id}`: {machine.groupby(['suite', 'case']).ngroups} cases "
            f"over {len(commits)} commit{'s' if len(commits) != 1 else ''} in commit time "
            f"order: " + ", ".join(f"{c} ({t:%Y-%m-%d %H:%M})" for c, t in zip(
                commits["commit"], commits["commit_time"], strict=True)) + ".")
    lines += ["", f"_Steps: a case stepped at a commit when the median of the runs of up to "
                  f"{WINDOW} commits from it on differs from that of up to {WINDOW} commits "
                  f"before it by more than {100 * threshold:g}% and a one-sided t-test on the "
                  f"logarithms of the run medians gives p below {alpha:g}/N, N the cases times "
                  f"the commits compared on the machine (the gate's rule, with a bound for the "
                  f"whole history); of neighbouring commits that see one step, the one with "
                  f"the smallest p. Contended and concurrent rows left out._", ""]
    if steps.empty:
        return "\n".join(lines + ["No step found: no case changed between commits by more "
                                  "than the threshold and its run-to-run noise."]) + "\n"
    rows = [[r["machine_id"], r["suite"], r["case"], r["commit"],
             f"{r['commit_time']:%Y-%m-%d %H:%M}", "slower" if r["ratio"] > 1 else "faster",
             format_seconds(r["before"]), format_seconds(r["after"]),
             f"{r['ratio']:.3f} ({100 * (r['ratio'] - 1):+.1f}%)",
             f"{r['p_value']:.2g} (< {r['p_needed']:.2g})",
             f"{r['runs_before']}/{r['runs_after']}"]
            for r in steps.sort_values(["machine_id", "position", "suite", "case"],
                                       kind="stable").to_dict("records")]
    return "\n".join(lines) + "\n" + markdown_table(
        ["machine", "suite", "case", "commit", "commit date (UTC)", "step", "before", "after",
         "ratio", "p (needed)", "runs before/after"], rows, ["l"] * 6 + ["r"] * 5) + "\n"
