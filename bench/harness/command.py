"""The one place a bench session's command line is built, and the process roles using it.

A run of the suites can span several processes, each a pytest session of its own:

- the **parent**: ``pytest bench --benchmark-only`` as the user typed it; it plans the run,
  holds the machine lock and writes the result file;
- an **isolated group's worker** (``--bench-isolate``, the default for the full matrix): a
  child the parent starts per group of cases, with ``--bench-no-save``; it writes its
  finished cases to the parent's journal (``FASHION_BENCH_WORKER_JOURNAL``) and exits;
- a **repeat child** (``--bench-repeat N``): N complete runs one after another, each a
  parent of its own with its own result file, sharing a run group id;
- an **A/B side** (``python -m bench.ab``): a session in a git worktree of one revision,
  taking turns round by round with the other side (``FASHION_BENCH_TURNS``).

CI's hardware check (``python -m bench.tools.hardware_check``) and the device kit
(``kit/run.py``) start parents too. Standard library only: the kit imports this module on
a box before anything is installed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: What pytest collects: the suites under ``bench/`` (the conftest there loads the plugin).
SUITES_ROOT = "bench"


def bench_command(args: Sequence[str] = (), python: str | None = None,
                   target: str | None = SUITES_ROOT) -> list[str]:
    """``python -m pytest [target] --benchmark-only ARGS``. ``target=None``: ``args``
    already hold the whole of a session's own arguments (a child repeating its parent's
    command line), and ``--benchmark-only`` is not added again."""
    head = [python or sys.executable, "-m", "pytest"]
    if target is None:
        return [*head, *args]
    return [*head, target, "--benchmark-only", *args]
