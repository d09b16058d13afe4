"""The report and history modes of ``python -m bench.report``: load, print, write.

:func:`make_report` reads the result files, prints REPORT.md (:func:`build_report`) and
writes it with report.csv, the plots and REPORT.html; :func:`make_history` prints each
machine's steps over commits and draws its history. Both return the exit status;
:mod:`bench.report.cli` parses the options and calls them (and the gate,
:mod:`bench.report.gate`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench.report import lists, tables
from bench.report import text as fmt
from bench.report.compare import run_spread
from bench.report.history import find_steps, history_frame, render_history
from bench.report.index import ResultsIndex
from bench.report.loader import ResultSet, WarningLog, load_results
from bench.report.page import write_page
from bench.report.plots import write_history_plots, write_plots
from bench.report.selection import (
    current_failures,
    only_commits,
    select_runs,
    selection_phrase,
    spoiled_mask,
)
from bench.report.summary import summary_rows, summary_section, verdicts_section
from bench.report.text import escape
from bench.report.verdicts import DEFAULT_THRESHOLD, machine_verdicts, run_figures, summarize
from bench.store.atomic import write_atomic
from bench.store.journal import recover_orphans
from bench.store.results import result_files_with_keys

REPORT_MD = "REPORT.md"
REPORT_CSV = "report.csv"

EXIT_OK = 0
EXIT_REGRESSION = 1  # the gate failed; in report mode: --strict and spoiled rows shown
#: Bad input, outputs that cannot be written, or warnings under --strict; also argparse's.
EXIT_BAD_INPUT = 2


def recover_journals(paths: Sequence[str | Path]) -> None:
    """Publish the journals of dead bench sessions under ``paths``; one note line each."""
    existing = [path for path in paths if Path(path).exists()]
    try:
        recover_orphans(existing, log=lambda line: print(f"note: {line}", file=sys.stderr))
    except OSError as error:
        # A read-only results folder: report what is there rather than nothing.
        print(f"note: journals of dead runs not recovered ({error}); reporting the result "
              f"files as they are", file=sys.stderr)


#: Runs that did not complete named one by one (the report's intro, each side of the
#: gate); past it, counted per status.
MAX_RUN_NOTES = 6


def report_notes(results: ResultSet) -> list[str]:
    """Lines under the report's intro: runs left out, runs that did not complete."""
    notes = []
    if results.synthetic_left_out:
        count = results.synthetic_left_out
        notes.append(f"{count} run{'s' if count != 1 else ''} on synthetic data left out "
                     f"(`--include-synthetic` includes {'them' if count != 1 else 'it'}).")
    unfinished = [run for run in results.runs if run.status in ("incomplete", "interrupted")]
    if len(unfinished) > MAX_RUN_NOTES:  # a fleet's: counted, not listed one by one
        for status, how in (("interrupted", "were interrupted (Ctrl-C)"),
                            ("incomplete", "are incomplete (their process died; the cases "
                                           "finished were recovered from the journal)")):
            mine = [run for run in unfinished if run.status == status]
            machines = sorted({run.machine_id for run in mine})
            if mine:
                notes.append(f"{len(mine)} runs on {len(machines)} machine"
                             f"{'s' if len(machines) != 1 else ''} ({fmt.listed(machines)}) "
                             f"{how}: each holds the cases finished before (see Runs).")
        return notes
    for run in unfinished:
        if run.status == "incomplete":
            notes.append(f"run `{run.path.name}` of `{run.machine_id}` is incomplete: its "
                         f"process died and the {run.cases} case(s) it finished "
                         f"were recovered from its journal (see Runs).")
        else:
            notes.append(f"run `{run.path.name}` of `{run.machine_id}` was interrupted "
                         f"(Ctrl-C): it holds the {run.cases} case(s) finished "
                         f"before (see Runs).")
    return notes


def long_form_csv(frame: pd.DataFrame) -> str:
    """The long-form table as CSV; raw rounds joined into one space-separated field.
    report.csv holds the newest run's rows of each case per machine (``--all-runs``: every
    run's): over 20,000 runs every row would be a gigabyte, and the results index holds
    them all (``docs/report.md``, "The results index")."""
    table = frame.copy()
    table["raw_rounds"] = [" ".join(map(repr, raw.tolist())) for raw in frame["raw_rounds"]]
    if "canary_seconds" in table:  # as a list prints: [0.0059, 0.0061]
        table["canary_seconds"] = [None if value is None else repr(value.tolist())
                                   for value in frame["canary_seconds"]]
    if "run_datetime" in table:
        table["run_datetime"] = [t.isoformat() if not pd.isna(t) else "" for t in
                                 frame["run_datetime"]]
    return table.to_csv(index=False, lineterminator="\n")


def relative_to(frame: pd.DataFrame, requested: str | None) -> tuple[str | None, str | None]:
    """The machine/device label the speedups are relative to, and why ``requested``
    (``--relative-to``: a machine id or a machine/device label) could not be used.

    Default, and for a machine id: the first CPU label in sorted order (else the first).
    """
    if frame.empty:
        return None, None

    def first(rows: pd.DataFrame) -> str:
        return min(rows.loc[rows["device_kind"] == "CPU", "label"], default=min(rows["label"]))

    labels = sorted(frame["label"].unique())
    if requested in labels:
        return requested, None
    if requested in set(frame["machine_id"]):
        return first(frame[frame["machine_id"] == requested]), None
    return first(frame), None if not requested else (
        f"{requested!r} matches no machine id or machine/device label; using {first(frame)} "
        f"(labels: {', '.join(labels)})")


def not_run_count(runs: Sequence, all_runs: bool) -> int:
    """The cases the plans or budgets of the runs shown left out."""
    return len(lists.not_run_rows(list(runs), all_runs))


#: The machine/device columns the detail tables show at most (``--max-columns``).
MAX_COLUMNS = 12


def detail_labels(selected: pd.DataFrame, verdicts: pd.DataFrame, reference: str | None,
                  max_columns: int) -> list[str]:
    """The labels the detail tables and plots show: every one within ``max_columns`` (or
    with ``max_columns`` 0), else the reference, then those the verdicts compare with it
    on the most cases, then those with the most rows, ties by name."""
    if selected.empty:
        return []
    if not max_columns or selected["label"].nunique() <= max_columns:
        return sorted(selected["label"].unique())
    judged = verdicts["label"].value_counts() if not verdicts.empty else pd.Series(dtype=int)
    rows = selected["label"].value_counts()
    ranked = sorted(rows.index, key=lambda label: (
        label != reference, -int(judged.get(label, 0)), -int(rows[label]), label))
    return ranked[:max_columns]


def build_report(results: ResultSet, selected: pd.DataFrame, reference: str | None,
                 all_runs: bool, warnings: Sequence[str] = (), notes: Sequence[str] = (),
                 threshold: float = DEFAULT_THRESHOLD,
                 verdicts: pd.DataFrame | None = None,
                 summary: pd.DataFrame | None = None,
                 max_columns: int = MAX_COLUMNS, shown: Sequence[str] | None = None) -> str:
    """REPORT.md: intro, the summary, the verdicts across machines, then every table of
    :mod:`bench.report.tables` and :mod:`bench.report.lists` with something to show, and
    the warnings. ``selected``: the rows the case tables show (select_runs); ``verdicts``:
    :func:`machine_verdicts` over every run (computed when not given); ``max_columns``:
    the machine/device labels the detail tables, plots, Runs, Not run and run-to-run spread
    show at most (0: all), the summary and verdicts covering every one; ``shown``: those
    labels, as :func:`detail_labels` chose them (computed when not given)."""
    if verdicts is None:
        verdicts = machine_verdicts(results.benchmarks, reference, threshold)
    if summary is None:
        summary = summarize(verdicts, results.benchmarks, threshold)
    machine_ids = sorted({run.machine_id for run in results.runs})
    labels, runs = selected["label"].nunique() if not selected.empty else 0, len(results.runs)
    intro = [
        "# Fashion-MNIST benchmark report",
        f"{runs} run{'s' if runs != 1 else ''} on {len(machine_ids)} machine"
        f"{'s' if len(machine_ids) != 1 else ''} "
        f"({fmt.listed(machine_ids) or 'none'}); "
        f"{labels} machine/device column{'s' if labels != 1 else ''}. "
        + selection_phrase(all_runs),
        f"Speedups are relative to `{reference}` (`--relative-to` changes it)." if reference
        else "No speedups: no results."]
    if shown is None:
        shown = detail_labels(selected, verdicts, reference, max_columns)
    if len(shown) < labels:
        notes = [*notes, (
            f"the detail tables, plots, Runs, Not run and the run-to-run spread show "
            f"{len(shown)} of the {labels} machine/device columns (`--max-columns`, "
            f"{max_columns}; 0 shows all): the reference and those the verdicts compare on "
            f"the most cases. The summary and the verdicts cover all {labels}; REPORT.html "
            f"and report.csv hold every one; a report over some machines' folders shows "
            f"theirs.")]
        detail = selected[selected["label"].isin(shown)]
        machines = set(detail["machine_id"])
        benchmarks = results.benchmarks[results.benchmarks["label"].isin(shown)]
        shown_runs = [run for run in results.runs if run.machine_id in machines]
    else:
        detail, benchmarks, shown_runs = selected, results.benchmarks, results.runs
    if notes:
        intro.append("\n".join(f"Note: {note}" for note in notes))
    failures = current_failures(results, all_runs)
    spoiled = int(spoiled_mask(results.benchmarks).sum()) if not results.benchmarks.empty else 0
    parts = intro + ["## Summary\n\n" + summary_section(
        selected, verdicts, summary, reference, threshold,
        not_run_count(results.runs, all_runs), len(failures), spoiled,
        {(run.commit or "unknown").rstrip("+") for run in results.runs})]
    if (text := verdicts_section(verdicts, threshold, summary)) is not None:
        parts.append(f"## Verdicts across machines\n\n{text}")
    sections = [(lists.MACHINES, results.runs), (lists.RUNS, shown_runs)]
    sections += [(table, detail) for table in (
        tables.TRAINING, tables.INFERENCE, tables.LATENCY, tables.TIME_TO_ACCURACY,
        tables.COMPILE, tables.PEAK, lists.precision_xla_table(detail), lists.SCALING,
        lists.REFERENCE_LOOPS, tables.ENERGY, *(tables.other_suite(name, detail) for name in
        sorted(set(detail.get("suite", [])) - set(tables.DEDICATED_SUITES))))]
    sections += [(lists.SPREAD, run_spread(benchmarks)),
                 (lists.NOT_RUN, (shown_runs, all_runs)),
                 (lists.FAILURES, failures)]
    parts += [f"## {table.title}\n\n{text}" for table, data in sections
              if (text := tables.render(table, data, reference, all_runs)) is not None]
    if warnings:
        parts.append("## Warnings\n\n" + "\n".join(f"- {escape(w)}" for w in warnings))
    return "\n\n".join(parts) + "\n"


#: What report mode prints (``--print``).
PRINT_MODES = ("summary", "full", "none")
#: The sections ``--print summary`` prints whole; the others are named.
TERMINAL_SECTIONS = ("Summary", "Warnings")


def terminal_text(report: str, mode: str, where: Sequence[Path]) -> str:
    """What report mode prints: ``full`` the whole report; ``none`` nothing; ``summary``
    its opening (title, what was read, notes), the sections :data:`TERMINAL_SECTIONS`,
    and a line naming the other sections and ``where`` they are (REPORT.md, the page)."""
    if mode == "none":
        return ""
    if mode == "full":
        return report
    opening, *sections = report.split("\n## ")
    kept, others = [opening.rstrip("\n")], []
    for section in sections:
        title = section.split("\n", 1)[0].strip()
        if title in TERMINAL_SECTIONS:
            kept.append("## " + section.rstrip("\n"))
        else:
            others.append(title)
    if others:
        lines = report.count("\n")
        kept.append(f"The rest of the report ({lines} lines) is in "
                    f"{' and '.join(map(str, where))}: {', '.join(others)}. "
                    f"`--print full` prints all of it here.")
    return "\n\n".join(kept)


def make_report(paths: Sequence[str | Path], out_dir: Path, reference_request: str | None,
                all_runs: bool, draw_plots: bool, log: WarningLog,
                include_synthetic: bool = False, strict: bool = False,
                threshold: float = DEFAULT_THRESHOLD, html: bool = True,
                index: ResultsIndex | None = None, print_mode: str = "summary",
                max_columns: int = MAX_COLUMNS, commits: Sequence[str] = ()) -> int:
    """Report mode: load, write the outputs, print the report (``print_mode``: see
    :func:`terminal_text`); returns the exit status. ``index``: the results index to read
    through (None: the files)."""
    recover_journals(paths)
    results = load_results(paths, log, include_synthetic, index)
    if commits:
        read = len(results.runs)
        try:
            results = only_commits(results, list(commits))
        except ValueError as error:
            print(f"error: --commit: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    notes = report_notes(results)
    if commits:
        notes.insert(0, f"only the runs of commit {', '.join(commits)} (`--commit`): "
                        f"{len(results.runs)} of the {read} runs read.")
    if results.empty:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print("no results to report; nothing written", file=sys.stderr)
        return EXIT_OK
    selected = select_runs(results.benchmarks, all_runs)
    reference, problem = relative_to(selected, reference_request)
    if problem:
        log.warn("--relative-to (--baseline)", problem)
    figures = run_figures(results.benchmarks)  # one figure per run and case, computed once
    verdicts = machine_verdicts(results.benchmarks, reference, threshold, figures)
    summary = summarize(verdicts, results.benchmarks, threshold, figures=figures)
    shown = detail_labels(selected, verdicts, reference, max_columns)  # tables and plots
    report = build_report(results, selected, reference, all_runs, log.messages, notes,
                          threshold, verdicts, summary, max_columns, shown)
    written = []
    try:
        for name, content in ((REPORT_MD, report), (REPORT_CSV, long_form_csv(
                results.benchmarks if all_runs else selected))):
            write_atomic(out_dir / name, content)
            written.append(out_dir / name)
        if draw_plots:  # the machine/devices the detail tables show (--max-columns)
            written += write_plots(selected[selected["label"].isin(shown)], out_dir, log,
                                   write_atomic)
        if html:
            written.append(write_page(
                out_dir, selected, summary_rows(summary), verdicts.rename(
                    columns={"setting": "case"}), results.runs,
                "Fashion-MNIST benchmark report", notes, write_atomic,
                history_frame=results.benchmarks))
    except OSError as error:
        print(f"error: cannot write to {out_dir}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    text = terminal_text(report, print_mode, [p for p in written if p.suffix in (".md", ".html")])
    if text:
        print(text)
    print("wrote " + ", ".join(str(path) for path in written))
    spoiled = int(spoiled_mask(selected).sum())
    if strict and spoiled:
        print(f"--strict: the report shows {spoiled} row(s) contended or concurrent "
              f"(marked † / ‡); exit status {EXIT_REGRESSION}", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK


def make_history(paths: Sequence[str | Path], out_dir: Path, threshold: float,
                 draw_plots: bool, log: WarningLog, include_synthetic: bool = False,
                 index: ResultsIndex | None = None) -> int:
    """History mode: print the commits and steps of each machine, draw its history."""
    recover_journals(paths)
    history = history_frame(load_results(paths, log, include_synthetic, index))
    if history.empty:
        print("no results to draw a history of; nothing written", file=sys.stderr)
        return EXIT_OK
    steps = find_steps(history, threshold)
    print(render_history(history, steps, threshold), end="")
    try:
        written = write_history_plots(history, steps, out_dir, log, write_atomic) \
            if draw_plots else []
    except OSError as error:
        print(f"error: cannot write to {out_dir}: {error.strerror or error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if written:
        print("wrote " + ", ".join(str(path) for path in written))
    return EXIT_OK


def update_index(paths: Sequence[str | Path], index: ResultsIndex | None) -> int:
    """``--index-only``: bring the index up to date with ``paths``; say what changed."""
    if index is None:
        print("error: no results index to update (see the note above)", file=sys.stderr)
        return EXIT_BAD_INPUT
    recover_journals(paths)
    paths = [Path(p) for p in paths]
    started = time.monotonic()
    counts = index.update(result_files_with_keys(paths), [p for p in paths if p.is_dir()])
    held = index.stats()
    print(f"index {index.path}: {counts['added']} added, {counts['changed']} changed, "
          f"{counts['removed']} removed, {counts['unchanged']} unchanged in "
          f"{time.monotonic() - started:.1f} s; it holds {held['files']} files, "
          f"{held['rows']} rows, {held['bytes'] / 2**20:.1f} MiB")
    return EXIT_OK
