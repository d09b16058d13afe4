"""Compare two hardware configurations of this machine end to end, as CI does.

``python -m bench.tools.hardware_check --out DIR`` runs a small real matrix (``--bench-matrix
ci``) as two configurations, all the cores this process may use and one core (CPU
affinity: the machine id counts the cores a process may use, so the two runs land under
two machine ids), then:

1. runs the regression gate over two runs of the same configuration (all cores): with
   one run a side it must not cry wolf (exit 0, "undecided" at most);
2. builds the report over both configurations and checks it holds both machines'
   columns with a speedup between them. It comes last, so the output ends with it.

Exit status 0 when every step held, 1 when a check failed, 2 when a run could not be made.
Everything lands under ``--out`` (result files, REPORT.md, the gate's output).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench.harness.command import bench_command
from bench.measure.rounds import usable_cpus

#: The suites' folder (bench/), whatever the current directory.
SUITES = Path(__file__).resolve().parents[1]


def _pytest(results: Path, cpus: list[int] | None, extra: list[str]) -> list[str]:
    # At most 10 rounds a case: the check compares two configurations, it does not publish
    # figures, and CI's time is short (a case's 20 rounds took 16-23 s of its 4 minutes).
    command = bench_command(["--bench-matrix", "ci", "--bench-device", "cpu",
                              "--bench-results", str(results), "-p", "no:cacheprovider", "-q",
                              "--bench-max-rounds", "10", *extra], target=str(SUITES))
    if cpus is not None:
        # Run under an affinity mask of `cpus` (what `taskset -c` does), set in the child.
        mask = ",".join(map(str, cpus))
        command = [sys.executable, "-c",
                   f"import os, sys, runpy; os.sched_setaffinity(0, {{{mask}}}); "
                   "sys.argv = sys.argv[1:]; runpy.run_module('pytest', run_name='__main__')",
                   "pytest", *command[3:]]
    return command


def _run(command: list[str], what: str) -> int:
    print(f"hardware-check: {what}", flush=True)
    begin = time.monotonic()
    code = subprocess.call(command)
    print(f"hardware-check: {what}: exit {code} after {time.monotonic() - begin:.0f} s",
          flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tools.hardware_check", description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for the result files, the report and the gate's output")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                        help="more arguments for each benchmark run (after --)")
    args = parser.parse_args(argv)
    cpus = usable_cpus()
    if len(cpus) < 2:
        print(f"hardware-check: this process may use {len(cpus)} core(s); comparing all "
              f"cores with one needs at least 2", file=sys.stderr)
        return 2
    one, every = args.out / "one-core", args.out / "all-cores"
    runs = [("one core", one, [cpus[0]]), (f"all {len(cpus)} cores", every, None),
            (f"all {len(cpus)} cores, again (for the gate)", args.out / "all-cores-again",
             None)]
    for what, folder, mask in runs:
        if _run(_pytest(folder, mask, args.pytest_args), f"benchmark run on {what}") != 0:
            return 2
    problems = []
    gate = subprocess.run([sys.executable, "-m", "bench.report", "--compare", str(every),
                           str(args.out / "all-cores-again"), "--fail-slower", "10%"],
                          capture_output=True, text=True)
    (args.out / "gate.md").write_text(gate.stdout + gate.stderr, encoding="utf-8")
    print("hardware-check: the gate over two runs of one configuration:\n"
          + gate.stdout + gate.stderr, flush=True)
    if gate.returncode != 0:
        problems.append(f"the gate over two runs of one configuration exited "
                        f"{gate.returncode} (expected 0)")
    # The report last, so a CI log ends with the comparison of the two configurations.
    report_dir = args.out / "report"
    if _run([sys.executable, "-m", "bench.report", str(one), str(every), "--out",
             str(report_dir), "--no-plots"], "report over both configurations") != 0:
        return 1
    problems += check_report((report_dir / "REPORT.md").read_text(encoding="utf-8"),
                             one, every)
    for problem in problems:
        print(f"hardware-check: FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(f"hardware-check: the report compares both configurations "
              f"({report_dir / 'REPORT.md'}); the gate held", flush=True)
    return 1 if problems else 0


def _machine_ids(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.json")))


def check_report(report: str, one: Path, every: Path) -> list[str]:
    """What the report over both configurations lacks (empty when it holds both)."""
    problems = []
    ids = {"one core": _machine_ids(one), "all cores": _machine_ids(every)}
    for what, found in ids.items():
        if len(found) != 1:
            problems.append(f"the {what} run left {len(found)} machine folders: {found}")
    if problems:
        return problems
    if ids["one core"] == ids["all cores"]:
        problems.append(f"both configurations got the machine id {ids['one core'][0]}")
    for machine_id in ids["one core"] + ids["all cores"]:
        if f"{machine_id}/cpu" not in report:
            problems.append(f"the report has no column {machine_id}/cpu")
    if "speedup" not in report.lower():
        problems.append("the report has no speedup column")
    return problems


if __name__ == "__main__":
    # TF_CPP_MIN_LOG_LEVEL stays as it is: unset, each bench session sets it to 3 and
    # drops TensorFlow's C++ start-up lines (fashion_core.logs), "failed call to cuInit"
    # among them, which a level of 2 lets through.
    sys.exit(main())
