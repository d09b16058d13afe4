"""Fair verdicts on a change: interleaved A/B runs of two git revisions, until they settle.

``python -m bench.ab BASE HEAD [-- PYTEST ARGS...]`` checks BASE and HEAD out into
worktrees of their own (the working tree is left untouched), then makes pairs of runs of
the selected benchmark cases, each run its own process with its own result file under
``--out``, and gives each case a verdict from the pairs.

(The two paragraphs above open ``--help``; what a pair is, how a verdict is reached, when
the pairs stop and the exit status follow there, in :data:`bench.ab.cli.EPILOG`, the one
place they are stated. Why the sequential rule is built as it is: :mod:`bench.ab.rule`.)

Why pairs, and why turns: the noise that matters is between runs, not between rounds of
one run. On a shared machine what the other tenants do drifts over seconds to minutes;
rounds of the two revisions a second apart see nearly the same machine, so the drift
falls on both sides alike, and the spread of the per-pair ratios measures the noise
that is left (a process's own luck: memory placement, thread timing). What it cannot see:
noise faster than a round, a change that only shows after hours (caches, thermal
throttling), and effects of one session on the other's caches while it sleeps. Which
side moves first in a turn alternates from pair to pair (BASE in odd pairs), so an
effect of the order falls on both sides alike and shows as noise, not as a change.

The modules: :mod:`~bench.ab.runner` (worktrees, each side's process, pairs, reading
their result files), :mod:`~bench.ab.rule` (verdicts, the looks and when to stop),
:mod:`~bench.ab.render` (the Markdown table), :mod:`~bench.ab.cli` (options, the run).
"""

from __future__ import annotations

from bench.ab.cli import (
    DEFAULT_ROUNDS,
    DEFAULT_SELECTION,
    EPILOG,
    EXIT_OK,
    EXIT_SLOWER,
    EXIT_USAGE,
    LOCK_TIMEOUT,
    build_parser,
    main,
)
from bench.ab.render import render
from bench.ab.rule import (
    CONFIDENCE,
    DEFAULT_MAX_PAIRS,
    DEFAULT_MIN_PAIRS,
    MIN_PAIRED_ROUNDS,
    SIMULATIONS,
    SPENDING_POWER,
    Settled,
    first_look,
    look_multipliers,
    pair_ratio,
    planned_pairs,
    settle,
    verdict,
    verdicts,
)
from bench.ab.runner import (
    ENV_FOLDER,
    ENV_SIDE,
    MAX_REDO,
    ROUNDS_CASE_TIME,
    Runner,
    Timing,
    interleaved_pair,
    pair_of_runs,
    read_run,
    resolve,
    run_medians,
    run_pairs,
    run_together,
)
from bench.stats import FASTER, SAME, SLOWER, UNDECIDED, VERDICTS, parse_threshold, t_quantile

__all__ = [
    "CONFIDENCE", "DEFAULT_MAX_PAIRS", "DEFAULT_MIN_PAIRS", "DEFAULT_ROUNDS",
    "DEFAULT_SELECTION", "ENV_FOLDER", "ENV_SIDE", "EPILOG", "EXIT_OK", "EXIT_SLOWER",
    "EXIT_USAGE", "FASTER", "LOCK_TIMEOUT", "MAX_REDO", "MIN_PAIRED_ROUNDS",
    "ROUNDS_CASE_TIME", "SAME", "SIMULATIONS", "SLOWER", "SPENDING_POWER", "UNDECIDED",
    "VERDICTS", "Runner", "Settled", "Timing", "build_parser", "first_look",
    "interleaved_pair", "look_multipliers", "main", "pair_of_runs", "pair_ratio",
    "parse_threshold", "planned_pairs", "read_run", "render", "resolve", "run_medians",
    "run_pairs", "run_together", "settle", "t_quantile", "verdict", "verdicts",
]
