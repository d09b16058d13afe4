"""The report, the regression gate and the history: ``python -m bench.report``.

A house of its own: it reads result files and imports nothing from the suites but the
row schema (:mod:`bench.store.schema`) and the reader of result files
(:mod:`bench.store.results`), plus :mod:`bench.store.journal` (to publish the journals of
dead runs), :mod:`bench.store.atomic` (to replace its outputs atomically) and the
statistics' words (:mod:`bench.stats`).

- :mod:`bench.report.cli`: the command line (report, ``--compare``, ``--history``);
- :mod:`bench.report.modes`: the report and history modes: load, print, write;
- :mod:`bench.report.loader`: result files into one typed frame;
- :mod:`bench.report.selection`: the rows a table shows (newest run, or all pooled);
- :mod:`bench.report.tables`: the tables' spec, their renderer and the case comparisons;
- :mod:`bench.report.lists`: the list tables (machines, runs, spread, scaling...);
- :mod:`bench.report.verdicts` and :mod:`bench.report.summary`: the verdicts across
  machines and the summary the report opens with;
- :mod:`bench.report.text`: how numbers and markdown are written;
- :mod:`bench.report.plots`: the PNG plots; :mod:`bench.report.page`: REPORT.html;
- :mod:`bench.report.compare`: the gate's rule (runs, not rounds) and the run-to-run
  spread; :mod:`bench.report.gate`: the gate's loading, report and exit status;
- :mod:`bench.report.history`: each case over commits, and its steps.

:func:`main` is the entry point (the ``fashion-bench-report`` console script). It
imports the command line on call, so that importing one module of the package (as
``bench.ab`` does) does not load the rest.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report``: see :func:`bench.report.cli.main`."""
    from bench.report.cli import main as cli_main

    return cli_main(argv)
