"""The matrix in shards: ``--bench-shard I/N`` runs the I-th of N parts of the plan.

The parts are balanced by each case's estimated time, not by their count, and the split
is the same on every machine for one commit and one command line: each case's estimate
here is the plan's model (:func:`bench.harness.plan.estimate_case`) at a fixed reference
peak (:data:`REFERENCE_PEAK_GFLOPS`), never this machine's calibration or history, so a
CPU runner and a GPU runner, or today's run and tomorrow's, cut the list in one place.
Each device's cases are cut on their own, so a runner that runs only the CPU cuts its CPU
cases where a GPU runner does: the longest first, each to the part with the least so far
(longest processing time first); ties go by suite and case id, then to the lower part.

What one cuts: the cases of the matrix as the options choose them (``--bench-matrix``,
``--bench-device``, ``--bench-model`` ...), every suite, before a device that is not there
is skipped.

The shards of one run share its run group (``--bench-run-group``; default: the CI's or
Slurm's job id, else one made of the commit and the plan), and each result file says
``shard: [I, N]``: the report merges them into one run of the machine and says when one
is missing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence

from bench.harness.cases import Case
from bench.harness.plan import estimate_case

#: GFLOP/s a case's estimate assumes here: a fixed figure, so the split is machine-free.
REFERENCE_PEAK_GFLOPS = 100.0
#: Where a job scheduler says which job a shard belongs to (GitHub Actions, Slurm, GitLab).
JOB_ENVS = (("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT"), ("SLURM_ARRAY_JOB_ID",),
            ("CI_PIPELINE_ID",))


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 1 <= I <= N; ValueError otherwise (pytest names the option)."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError(text)
    index, count = int(index), int(count)
    if not 1 <= index <= count:
        raise ValueError(text)
    return index, count


def shard_estimates(cases: Sequence[Case], **options) -> dict[Case, float]:
    """Each case's machine-free estimate in seconds (``options``: estimate_case's)."""
    return {case: estimate_case(case, REFERENCE_PEAK_GFLOPS, **options).expected
            for case in cases}


def split(estimates: dict[Case, float], count: int) -> list[list[Case]]:
    """``count`` parts of the cases, each in the order given, balanced by estimate: each
    device's cases are cut on their own, so a machine without a GPU (or that runs only
    its CPU) cuts its CPU cases where a GPU machine does."""
    part_of: dict[Case, int] = {}
    for device in dict.fromkeys(case.device for case in estimates):
        loads = [0.0] * count
        mine = [case for case in estimates if case.device == device]
        for case in sorted(mine, key=lambda c: (-round(estimates[c], 6), c.suite, c.id)):
            target = min(range(count), key=lambda i: (loads[i], i))
            part_of[case] = target
            loads[target] += estimates[case]
    return [[case for case in estimates if part_of[case] == i] for i in range(count)]


def plan_document(estimates: dict[Case, float], count: int, matrix: str) -> dict:
    """``--bench-plan --json``: every case with its estimate and shard, and each shard's
    cases and estimate; ``shards`` (["1/4", ...]) is what a CI matrix iterates over."""
    parts = split(estimates, count)
    total = sum(estimates.values())
    return {
        "matrix": matrix, "shard_count": count,
        "reference_peak_gflops": REFERENCE_PEAK_GFLOPS,
        "estimate_seconds": round(total, 1),
        "shards": [f"{i + 1}/{count}" for i in range(count)],
        "parts": [{"shard": f"{i + 1}/{count}", "cases": len(part),
                   "estimate_seconds": round(sum(estimates[c] for c in part), 1),
                   "case_ids": [f"{c.suite} {c.id}" for c in part]}
                  for i, part in enumerate(parts)],
        "cases": [{"suite": c.suite, "case": c.id, "device": c.device,
                   "estimate_seconds": round(estimates[c], 2),
                   "shard": f"{i + 1}/{count}"}
                  for i, part in enumerate(parts) for c in part],
    }


def default_run_group(cases: Sequence[Case], count: int, matrix: str) -> str:
    """The run group of a sharded run when none is given: the scheduler's job id (every
    shard of one CI workflow run or one Slurm array shares it), else the commit and a
    hash of the plan (shards run by hand from one checkout)."""
    for names in JOB_ENVS:
        if all(os.environ.get(name) for name in names):
            return "job-" + "-".join(os.environ[name] for name in names)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "nocommit"
    except (OSError, subprocess.SubprocessError):
        commit = "nocommit"
    digest = hashlib.sha256("\n".join([matrix, str(count)] + sorted(
        f"{c.suite} {c.id}" for c in cases)).encode()).hexdigest()[:8]
    return f"shards-{commit}-{digest}"
