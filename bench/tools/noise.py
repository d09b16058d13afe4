"""Does the canary track the noise? ``python -m bench.tools.noise RESULT_FILE_OR_FOLDER ...``

Reads result files whose rows kept the canary's time before each timed round
(``canary_seconds``, schema 3) and prints how well the canary's slowness tracks the
rounds' slowness, on the log scale (a ratio either way):

- within runs: each round's time over its case's median in that run, against the
  canary's time over its median in that run (the rounds of one run);
- between runs: each case's run median over its median across the runs, against that
  run's median canary over the canary's median across the runs (several runs of one
  commit, e.g. ``--bench-repeat 3``).

A correlation near 1 says a slow canary marks a slow machine, and a round timed then
could be discounted; near 0 says the canary does not see what slows the rounds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys

import numpy as np

from bench.store.results import ResultFileError, read_result, result_files, timing_rows


def load(paths: list[str]) -> list[dict]:
    """One entry a (run, case) with rounds and canary: {run, case, rounds, canary}."""
    rows = []
    for path in result_files(paths):
        try:
            document = read_result(path)
        except ResultFileError as error:
            raise SystemExit(f"bench.tools.noise: {path} {error}") from None
        for info, stats, _ in timing_rows(document):
            data = stats.get("data")
            canary = info.get("canary_seconds")
            if canary and data and len(canary) == len(data):
                rows.append({"run": str(path), "case": f"{info.get('suite')} {info.get('case')}",
                             "rounds": [float(x) for x in data],
                             "canary": [float(x) for x in canary]})
    return rows


def _corr(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def study(rows: list[dict]) -> dict:
    """The two correlations (None where there is too little to say) and their counts."""
    within_round, within_canary = [], []
    by_run_canary: dict[str, list[float]] = {}
    for row in rows:
        r_med, c_med = statistics.median(row["rounds"]), statistics.median(row["canary"])
        within_round += [math.log(t / r_med) for t in row["rounds"]]
        within_canary += [math.log(c / c_med) for c in row["canary"]]
        by_run_canary.setdefault(row["run"], []).extend(row["canary"])
    run_canary = {run: statistics.median(v) for run, v in by_run_canary.items()}
    all_canary = statistics.median(run_canary.values()) if run_canary else None
    between_round, between_canary = [], []
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row)
    spreads = []
    for members in by_case.values():
        if len({m["run"] for m in members}) < 2:
            continue
        medians = [statistics.median(m["rounds"]) for m in members]
        spreads.append(max(medians) / min(medians))
        middle = statistics.median(medians)
        for member, median in zip(members, medians, strict=True):
            between_round.append(math.log(median / middle))
            between_canary.append(math.log(run_canary[member["run"]] / all_canary))
    return {"runs": len(run_canary), "cases": len(by_case), "rounds": len(within_round),
            "within": _corr(within_canary, within_round),
            "between": _corr(between_canary, between_round),
            "run_spread_median": statistics.median(spreads) if spreads else None,
            "run_spread_max": max(spreads) if spreads else None,
            "canary_run_spread": (max(run_canary.values()) / min(run_canary.values())
                                  if len(run_canary) > 1 else None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tools.noise", description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="RESULT_FILE_OR_FOLDER")
    args = parser.parse_args(argv)
    rows = load(args.paths)
    if not rows:
        print("bench.tools.noise: no rows with the canary's times (schema 3 result files)",
              file=sys.stderr)
        return 2
    result = study(rows)

    def show(value, form="{:+.2f}"):
        return "n/a" if value is None else form.format(value)

    print(f"{result['runs']} run(s), {result['cases']} case(s), {result['rounds']} rounds")
    print(f"within runs:  correlation of canary and round time (logs): "
          f"{show(result['within'])}")
    print(f"between runs: correlation of the run's canary and the case's run median: "
          f"{show(result['between'])}")
    print(f"run-to-run spread of a case (slowest run's median over the fastest's): median "
          f"{show(result['run_spread_median'], '{:.2f}')}, max "
          f"{show(result['run_spread_max'], '{:.2f}')}; the canary's: "
          f"{show(result['canary_run_spread'], '{:.2f}')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
