"""The report, the regression gate and the history: ``python -m bench.report``.

A house of its own: it reads result files and imports nothing from the suites but the
row schema (:mod:`bench.store.schema`), plus :mod:`bench.store.journal` (to publish the journals of
dead runs) and :mod:`bench.store.atomic` (to replace its outputs atomically).

- :mod:`bench.report.cli`: the command line (report, ``--compare``, ``--history``);
- :mod:`bench.report.loader`: result files into one typed frame;
- :mod:`bench.report.selection`: the rows a table shows (newest run, or all pooled);
- :mod:`bench.report.tables`: the tables, declared, and their renderer;
- :mod:`bench.report.text`: how numbers and markdown are written;
- :mod:`bench.report.plots`: the PNG plots;
- :mod:`bench.report.compare`: the gate (runs, not rounds) and the run-to-run spread;
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
