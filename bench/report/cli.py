"""Fashion-MNIST benchmark report and regression gate: ``python -m bench.report``.

Report mode reads result files (``results/`` by default), prints the comparison
tables and writes REPORT.md, report.csv, three PNG plots and REPORT.html. Gate mode
(``--compare OLD NEW``, :mod:`bench.report.gate`) compares two sets of runs and exits 1 on
a regression. History mode (``--history``, :mod:`bench.report.history`) draws each case
over commits and lists the commits where one stepped. All first publish the journals of
bench sessions that died under the paths they read
(:func:`bench.store.journal.recover_orphans`), so a killed run is reported, marked
incomplete. This module parses the options; the report and history modes are
:mod:`bench.report.modes`. See ``python -m bench.report --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.report.compare import ALPHA, OVERALL_ALPHA, parse_threshold
from bench.report.gate import run_gate
from bench.report.history import WINDOW
from bench.report.index import INDEX_ENV, IndexUnavailable, ResultsIndex
from bench.report.loader import WarningLog
from bench.report.modes import (
    EXIT_BAD_INPUT,
    MAX_COLUMNS,
    PRINT_MODES,
    REPORT_CSV,
    REPORT_MD,
    make_history,
    make_report,
    recover_journals,
    update_index,
)
from bench.report.selection import parse_commits
from bench.report.verdicts import DEFAULT_THRESHOLD

DEFAULT_RESULTS = Path("results")
DEFAULT_FAIL_SLOWER = 0.10

DESCRIPTION = """\
Report on fashion-bench results, or gate a change on them.

Report mode reads every result file (pytest-benchmark JSON with the fashion-bench
machine block) under PATHS, searched recursively for *.json, and:
  * writes REPORT.md: first the summary (each machine/device against one
    reference, --relative-to: its speed ratio over the cases both ran with a 99%
    interval from the run-to-run spread, and a verdict: faster, slower, same or
    undecided at --threshold), the verdicts case by case, then markdown tables:
    training throughput, inference throughput, latency p50/p90/p99, time to
    accuracy, compile time, share of calibrated peak, mixed precision and XLA /
    torch.compile speedups, scaling, reference loops and energy (when present),
    the run-to-run spread and failures; rows are cases (model, batch, precision,
    XLA / torch.compile on or off, backend), columns machine/device labels such as
    amd-epyc-2c/cpu, cells the median with its spread ("276k/s ±2.0%": ± is the
    interquartile range of the rounds as % of the median);
  * prints the summary and any warnings, and where the rest is (--print full:
    all of REPORT.md; --print none: only the files written);
  * writes report.csv (every row of the newest run of each case per
    machine, with its raw rounds; --all-runs: of every run) and the plots
    throughput_vs_batch.png, speedup_precision_xla.png and time_to_accuracy.png
    and REPORT.html (interactive, self-contained, opens offline) into --out.
    Files are replaced atomically; result JSON files are never written.
  * marks cells timed while other processes took the machine: † contended (more
    than the run's --bench-max-contention of the CPU, or others on the GPU),
    ‡ concurrent (beside another bench session); ‼ a share of peak above 100%.
    Shares of peak divide by the best matmul measured on the device in the row's
    dtype by any backend in any run of that machine.
  * lists every run (incomplete and interrupted ones marked) and, for cases with
    several runs, the run-to-run spread: what a 10% difference means there.

Gate mode (--compare OLD NEW) takes every run on each side (a run = one result
file, one process) and compares each case's per-run median times on the same
machine id, in the words every verdict here uses: a case is "slower" (a
regression) when the median of NEW's run medians is slower by more than
--fail-slower AND a one-sided t-test on the logarithms of the run medians gives
p < {alpha}/N (N = cases compared on that machine); "faster" the other way;
"same" when the ratio's interval (at that p) lies inside +/- --fail-slower; an
"(all)" row per machine tests every run's geometric mean over the cases at
p < {overall}. Too few runs to tell gives "undecided", with how many runs a side would
decide it (pytest bench --benchmark-only --bench-repeat N makes N runs). Rows
marked contended or concurrent are left out and listed. A case of OLD that NEW
lacks or that failed in NEW fails the gate (--allow-missing allows it).

History mode (--history [PATHS]) orders each machine's runs by the time of the
commit they measured (commit_info), draws every case's time per round over the
commits into history-<machine_id>.png (a panel per suite; a band from the
fastest to the slowest run of a commit) and prints the commits where a case
stepped slower or faster: the runs of up to {window} commits from a commit on
against those of up to {window} commits before it, judged by the gate's rule
(beyond --fail-slower and the run-to-run noise).

All modes first publish the journals of bench sessions that died under the
given paths as result files marked incomplete. Runs on synthetic data
(--bench-data synthetic) are left out, with a note, unless --include-synthetic.

Bad input (not JSON, another project's pytest-benchmark file, an unknown or
newer schema, an empty folder, a run where every case failed) gives one warning
line naming the file; the rest is still reported.
"""

EPILOG = """\
examples:
  python -m bench.report                          # everything under results/
  python -m bench.report results/amd-epyc-2c results/intel-xeon-8c-nvidia-h100
  python -m bench.report results --out report --relative-to intel-xeon-8c-nvidia-h100/cpu
  python -m bench.report results --all-runs --no-plots
  python -m bench.report --compare baseline/ results/ --fail-slower 10%
  python -m bench.report --compare old.json new.json --fail-slower 0.05 --strict
  python -m bench.report --compare baseline/ results/ --allow-missing   # CI on a subset
  python -m bench.report --history results/amd-epyc-2c --out /tmp/history --fail-slower 5%

exit status:
 report mode:
  0  report written
  1  --strict: the report shows rows marked contended or concurrent
  2  usage error, outputs could not be written, or warnings under --strict
 gate mode (--compare):
  0  pass: nothing slower, missing or failed (undecided cases pass)
  1  fail: a case (or a machine's "(all)" row) is slower; a case of OLD is
     missing from NEW or failed there (unless --allow-missing); with --strict,
     a case is undecided while slower than --fail-slower
  2  OLD or NEW does not exist or holds no results, OLD and NEW share no
     machine id, a usage error, or warnings under --strict
 history mode (--history):
  0  history written (steps found or not); 2 as in report mode
"""


def parse_commit_option(text: str) -> list[str]:
    """argparse type of ``--commit``: :func:`bench.report.selection.parse_commits`."""
    try:
        return parse_commits(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def non_negative_int(text: str) -> int:
    """argparse type: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more "
                                         f"(e.g. 12; 0 shows all)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description=DESCRIPTION.replace("{alpha}", f"{ALPHA:g}").replace(
            "{overall}", f"{OVERALL_ALPHA:g}").replace("{window}", str(WINDOW)),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATHS",
        help="result files or folders to read, folders recursively for *.json "
             f"(default: {DEFAULT_RESULTS}/). Not used with --compare.")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_RESULTS, metavar="DIR",
        help=f"folder for {REPORT_MD}, {REPORT_CSV} and the PNG plots, created if needed "
             f"(default: {DEFAULT_RESULTS}/). Example: --out report")
    parser.add_argument(
        "--relative-to", "--baseline", dest="relative_to", metavar="MACHINE[/DEVICE]",
        help="the machine/device the speedup columns are relative to: a machine id (its "
             "first CPU device) or a machine/device label, e.g. amd-epyc-2c or "
             "intel-xeon-8c-nvidia-h100/gpu:0. Default: the first CPU machine/device label "
             "in sorted order. --baseline is its old name (the reference-loop suite is "
             "called baseline).")
    parser.add_argument(
        "--threshold", type=parse_threshold, default=DEFAULT_THRESHOLD, metavar="THRESHOLD",
        help="the margin of the verdicts across machines: a machine/device is \"same\" as "
             "the reference when the 99%% interval of their speed ratio lies inside +/- "
             "THRESHOLD, \"faster\"/\"slower\" when it lies wholly beyond it, else "
             "\"undecided\"; a percentage or a fraction: 5%% or 0.05 "
             f"(default: {DEFAULT_THRESHOLD * 100:g}%%)")
    parser.add_argument(
        "--all-runs", action="store_true",
        help="pool every run of a machine per case (statistics over all rounds) instead "
             "of using the newest run per machine and case; also lists every failure. "
             "The gate (--compare) always uses every run of each side, run by run.")
    parser.add_argument(
        "--no-plots", action="store_true",
        help="do not draw the PNG plots (they are skipped with a warning anyway when "
             "matplotlib is missing)")
    parser.add_argument(
        "--print", dest="print_mode", choices=PRINT_MODES, default="summary",
        help="what report mode prints: summary (the default: REPORT.md's opening, its "
             "Summary and Warnings sections, and the other sections' names), full (all of "
             "REPORT.md, which over many machines runs to thousands of lines) or none "
             "(only the files written). The gate (--compare): summary lists every row that "
             "fails it and 60 others, full every row, none the verdict line alone")
    parser.add_argument(
        "--commit", type=parse_commit_option, default=(), metavar="REV[,REV...]",
        help="report mode: only the runs that measured these commits (ids or prefixes of 4 "
             "or more hex digits, comma-separated), so machines compare on the same code. "
             "By default every run counts, whatever its commit. No run of them: exit 2, "
             "naming the commits there are. Example: --commit 39bb0c7")
    parser.add_argument(
        "--max-columns", type=non_negative_int, default=MAX_COLUMNS, metavar="N",
        help="the machine/device columns REPORT.md's detail tables (and the PNG plots, "
             "Runs, Not run and the run-to-run spread) show at most: past N, the "
             "reference and the N-1 the verdicts compare on the most cases, with a note; "
             "the summary and verdicts always cover every one. 0 shows all (default: "
             f"{MAX_COLUMNS})")
    parser.add_argument(
        "--no-html", action="store_true",
        help="do not write REPORT.html, the interactive page (one self-contained file "
             "that opens offline: charts with filters, search and 99%% intervals)")
    parser.add_argument(
        "--include-synthetic", action="store_true",
        help="also read runs made on synthetic data (--bench-data synthetic; data = "
             "\"synthetic\" in the file). By default they are left out with a note: their "
             "figures are not Fashion-MNIST's.")
    parser.add_argument(
        "--strict", action="store_true",
        help="exit with status 2 when there was any warning (after printing everything), "
             "e.g. to fail CI on a broken or foreign result file; in report mode also exit "
             "1 when a row shown is contended or concurrent; with --compare also fail "
             "(exit 1) on a case left undecided while slower than --fail-slower")
    parser.add_argument(
        "--compare", nargs=2, metavar=("OLD", "NEW"),
        help="gate mode: compare every run of NEW against every run of OLD (each a "
             "result file or a folder of them) case by case for the same machine id; "
             "prints each case as slower, failed, missing, undecided, faster, same or "
             "added, and exits 1 when any is slower, or a case of OLD is "
             "missing or failed in NEW. Example: --compare results/baseline results/new")
    parser.add_argument(
        "--history", action="store_true",
        help="history mode: order each machine's runs under PATHS by the time of the "
             "commit they measured, draw each case's time per round over the commits "
             "(history-<machine_id>.png in --out) and list the commits where a case "
             "stepped slower or faster beyond --fail-slower and its run-to-run noise")
    parser.add_argument(
        "--fail-slower", type=parse_threshold, metavar="THRESHOLD",
        help="with --compare: how much slower (median of the runs' median time per round) "
             "counts as a regression (with --history: how big a step counts), as a "
             "percentage or a fraction: 10%% or 0.1 "
             f"(default: {DEFAULT_FAIL_SLOWER * 100:.0f}%%). Improvements use the same margin.")
    parser.add_argument(
        "--allow-missing", action="store_true",
        help="with --compare: a case of OLD that NEW lacks, or that failed in NEW, is listed "
             "but does not fail the gate (e.g. NEW ran a subset of the matrix)")
    parser.add_argument(
        "--index", type=Path, default=None, metavar="PATH",
        help="the results index to read through (an embedded DuckDB file: each new or "
             "changed result file is read once; the report is the same as from the files). "
             f"Default: ${INDEX_ENV}, else $XDG_CACHE_HOME/fashion-bench/results.duckdb "
             "(outside any checkout). Deleting it only costs a rebuild.")
    parser.add_argument(
        "--no-index", action="store_true",
        help="read every result file, without the index (slower over thousands of runs)")
    parser.add_argument(
        "--index-only", action="store_true",
        help="bring the index up to date with PATHS and stop: no report (e.g. after "
             "copying in many result files, or in CI before several reports)")
    return parser


def open_index(args) -> ResultsIndex | None:
    """The results index the options ask for, or None (``--no-index``, or it cannot be
    used now: one ``note:`` line says why, and the files are read instead)."""
    if args.no_index:
        return None
    try:
        return ResultsIndex(args.index)
    except IndexUnavailable as error:
        print(f"note: not using the results index: {error}; reading the files",
              file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.commit and (args.compare or args.history or args.index_only):
        parser.error("--commit chooses the runs of report mode; the gate (--compare) takes "
                     "its sides as given and --history orders the commits itself")
    if args.compare and args.paths:
        parser.error("PATHS cannot be combined with --compare; give the two sides as OLD NEW")
    if args.compare and args.history:
        parser.error("--history reads PATHS; it cannot be combined with --compare")
    if args.fail_slower is not None and not (args.compare or args.history):
        parser.error("--fail-slower only applies with --compare OLD NEW or --history")
    if args.allow_missing and not args.compare:
        parser.error("--allow-missing only applies with --compare OLD NEW")
    if args.no_index and (args.index or args.index_only):
        parser.error("--no-index cannot be combined with --index or --index-only")
    if args.index_only and (args.compare or args.history):
        parser.error("--index-only updates the index from PATHS; not with --compare or "
                     "--history")
    log = WarningLog()
    threshold = DEFAULT_FAIL_SLOWER if args.fail_slower is None else args.fail_slower
    index = open_index(args)
    try:
        status = _run(args, log, threshold, index)
    finally:
        if index is not None:
            index.close()
    if args.strict and log.messages:
        print(f"--strict: {len(log.messages)} warning(s); exit status {EXIT_BAD_INPUT}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    return status


def _run(args, log: WarningLog, threshold: float, index: ResultsIndex | None) -> int:
    """The mode the options chose; its exit status."""
    if args.index_only:
        return update_index(args.paths or [DEFAULT_RESULTS], index)
    if args.history:
        return make_history(args.paths or [DEFAULT_RESULTS], args.out, threshold,
                            not args.no_plots, log, args.include_synthetic, index)
    elif args.compare:
        recover_journals(args.compare)
        text, status = run_gate([args.compare[0]], [args.compare[1]], threshold, log,
                                allow_missing=args.allow_missing, strict=args.strict,
                                include_synthetic=args.include_synthetic, index=index,
                                print_mode=args.print_mode)
        print(text, end="", file=sys.stderr if status == EXIT_BAD_INPUT else sys.stdout)
        return status
    return make_report(args.paths or [DEFAULT_RESULTS], args.out, args.relative_to,
                       args.all_runs, not args.no_plots, log, args.include_synthetic,
                       args.strict, args.threshold, not args.no_html, index,
                       args.print_mode, args.max_columns, args.commit)
