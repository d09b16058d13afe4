"""On the box: one backend's benchmark run, under its share of the time, and what it did.

Standard library only, Python 3.10+ (kit/run.py imports this before anything is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness.command import bench_command

BACKENDS = ("jax", "torch", "tensorflow")  # the order they run in
REPORT_RESERVE_S = 60  # kept back from the backends for the report (plots included)
MIN_BACKEND_S = 30  # less than this left: a backend is not started at all
SIGINT_GRACE_S = 30  # pytest writes the finished cases as an interrupted run meanwhile
STATUS_TEXT = {0: "ok", 1: "ran; some cases failed (recorded in the result file)",
               5: "no cases selected"}


@dataclass
class BackendRun:
    """What happened to one backend, as summary.json records it."""

    backend: str
    command: list[str]
    status: str = "not started"
    ran: bool = False
    exit_code: int | None = None
    seconds: float | None = None
    timeout_s: float | None = None
    result_files: list[str] = field(default_factory=list)
    rows: int | None = None  # timing rows in its result files
    failures: int | None = None  # cases recorded as failed there


def backend_command(args: argparse.Namespace, results: Path) -> list[str]:
    """The benchmark run of one backend (KERAS_BACKEND is set in its environment)."""
    command = bench_command(["--bench-device", args.device, "--bench-matrix", args.matrix,
                              "--bench-results", str(results)], python=args.python)
    if args.keyword:
        command += ["-k", args.keyword]
    if args.data == "synthetic":
        command += ["--bench-data", "synthetic"]
    return command + list(args.pytest_args)


def report_options(python: str, env: dict[str, str], project: Path) -> set[str]:
    """The options the project's report takes, asked of the report itself (``python -m
    bench.report --help``) rather than read from where its source happens to lie; none
    where it cannot answer."""
    try:
        done = subprocess.run([python, "-m", "bench.report", "--help"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return set()
    if done.returncode != 0:
        return set()
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))


def report_command(args: argparse.Namespace, results: Path, report: Path,
                   options: set[str]) -> list[str]:
    """The report over the run; synthetic-data runs included where the report takes
    ``--include-synthetic`` (``options``: :func:`report_options`)."""
    command = [args.python, "-m", "bench.report", str(results), "--out", str(report)]
    if args.data == "synthetic" and "--include-synthetic" in options:
        command.append("--include-synthetic")
    return command


def backend_timeout(args: argparse.Namespace, deadline: float | None, now: float,
                    backends_left: int) -> float | None:
    """The seconds this backend may run: its share of the budget, capped by --backend-timeout."""
    share = None
    if deadline is not None:
        share = max(0.0, (deadline - now - REPORT_RESERVE_S) / max(1, backends_left))
    if args.backend_timeout is not None:
        share = args.backend_timeout if share is None else min(share, args.backend_timeout)
    return share


def _interruptible() -> None:
    """In the child, before it starts: SIGINT back to its default. A shell's background job
    (nohup, `&`) starts with SIGINT ignored, which Python then keeps, so the interrupt
    that lets pytest save its finished cases would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_streamed(command: list[str], env: dict[str, str], cwd: Path,
                 log: Callable[[str], None], timeout: float | None) -> tuple[int, bool, float]:
    """Run ``command``, copying its output to the log; (exit code, timed out, seconds).

    Past ``timeout`` it gets SIGINT (pytest then saves the finished cases as an
    interrupted run), then SIGTERM and SIGKILL if it lingers.
    """
    start = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace",
                               bufsize=1, start_new_session=True,
                               preexec_fn=_interruptible)

    def copy_output() -> None:
        for line in process.stdout:
            log(line.rstrip("\n"))

    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        log(f"kit: past its {timeout:.0f} s: interrupting (SIGINT), "
            f"{SIGINT_GRACE_S} s to save what it finished")
        for sig, grace in ((signal.SIGINT, SIGINT_GRACE_S), (signal.SIGTERM, 10),
                           (signal.SIGKILL, None)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
    reader.join(timeout=10)
    return process.returncode, timed_out, time.monotonic() - start


def result_files(results: Path) -> set[Path]:
    return set(results.rglob("*.json")) if results.is_dir() else set()


def count_rows(paths: list[Path]) -> tuple[int | None, int | None]:
    """(timing rows, failed cases) in these result files; None where they cannot be read."""
    rows = failures = 0
    try:
        for path in paths:
            document = json.loads(path.read_text(encoding="utf-8"))
            rows += len(document.get("benchmarks") or [])
            failures += len(document.get("fashion_bench_failures") or [])
    except (OSError, ValueError, AttributeError, TypeError):
        return None, None
    return rows, failures


def describe(run: BackendRun, timed_out: bool, new_files: list[Path], no_save: bool) -> None:
    """Fill in the run's status and whether it counts as having run.

    It ran when pytest finished (exit status 0, or 1: some cases failed and were
    recorded), wrote its result file, and at least one case gave a timing row.
    """
    run.rows, run.failures = count_rows(new_files)
    finished = not timed_out and run.exit_code in (0, 1)
    if timed_out:
        run.status = (f"timed out after {run.timeout_s:.0f} s (interrupted; "
                      f"{len(new_files)} result files kept)")
    elif run.exit_code == 1 and run.failures:
        run.status = f"ran; {run.failures} cases failed (recorded in the result file)"
    elif run.exit_code in STATUS_TEXT:
        run.status = STATUS_TEXT[run.exit_code]
    else:
        run.status = f"error (pytest exit status {run.exit_code})"
    run.ran = finished and (bool(new_files) or no_save)
    if finished and not new_files and not no_save:
        run.status += "; but no result file was written"
    elif finished and run.rows == 0 and run.failures:
        run.ran = False
        run.status = f"every case failed ({run.failures}; the report lists why)"
