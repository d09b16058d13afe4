"""The runs of an A/B comparison: worktrees, each side's process, pairs, their result files.

Each revision is checked out into a git worktree of its own (the working tree is left
untouched); a :class:`Runner` starts that side's pytest session there, with its own result
file. A pair is made either by :func:`interleaved_pair` (both sessions at once, taking
turns round by round: :func:`run_together`) or by :func:`pair_of_runs` (a whole BASE run,
then a whole HEAD run); either makes a side again while its result has contended rows.
:func:`read_run` reads a result file back into a :class:`Timing` per case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from bench.harness.command import bench_command
from bench.harness.turns import ENV_FOLDER, ENV_SIDE, Turns

#: A side's own time cap per case under --rounds (--bench-case-time): wide enough that
#: the rounds asked for are made; the harness still stops a case whose rounds alone would
#: pass it (rounds of tens of seconds), as it always does.
ROUNDS_CASE_TIME = 600.0
#: Runs with contended rows are made again, at most this many times per pair and side.
MAX_REDO = 2


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd)


def resolve(revision: str, repo: Path) -> str:
    """The commit hash of ``revision``; ValueError with one line when unknown."""
    found = git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=repo)
    if found.returncode != 0:
        raise ValueError(f"unknown revision {revision!r}: not a branch, tag or commit of "
                         f"{repo}")
    return found.stdout.strip()


def add_worktree(repo: Path, tree: Path, commit: str) -> str | None:
    """Check ``commit`` out, detached, into the new worktree ``tree``; git's error if not."""
    added = git("worktree", "add", "--detach", str(tree), commit, cwd=repo)
    return added.stderr.strip() if added.returncode != 0 else None


def remove_worktrees(repo: Path, trees: list[Path], scratch: Path) -> None:
    """Remove these worktrees, however they were left, the folder that held them
    (``scratch``, turn folders included), and git's records of them."""
    for tree in trees:
        git("worktree", "remove", "--force", str(tree), cwd=repo)
    shutil.rmtree(scratch, ignore_errors=True)
    git("worktree", "prune", cwd=repo)


class Timing(NamedTuple):
    """One case of one run: its median round time and its round times in order."""

    median: float
    rounds: tuple[float, ...] = ()


def read_run(path: Path) -> tuple[dict[tuple[str, str], Timing], set[tuple[str, str]],
                                  dict[tuple[str, str], str]]:
    """{(suite, case): its Timing} of one result file, the contended keys, and
    {(suite, case): pytest's test name}, for selecting it."""
    document = json.loads(path.read_text(encoding="utf-8"))
    medians, contended, names = {}, set(), {}
    for row in document.get("benchmarks", []):
        info = row.get("extra_info", {})
        key = (info.get("suite"), info.get("case"))
        if row.get("name"):
            names[key] = row["name"]
        if info.get("contended"):
            contended.add(key)
        else:
            stats = row["stats"]
            medians[key] = Timing(float(stats["median"]),
                                  tuple(float(x) for x in stats.get("data") or ()))
    return medians, contended, names


def run_medians(path: Path) -> tuple[dict[tuple[str, str], Timing], set[tuple[str, str]]]:
    """{(suite, case): its Timing} of one result file, and the contended keys."""
    medians, contended, _ = read_run(path)
    return medians, contended


def _contended(result: Path | None) -> bool:
    return result is not None and bool(run_medians(result)[1])


def _newest(folder: Path, before: set[Path]) -> Path | None:
    files = sorted(set(folder.rglob("[0-9]*.json")) - before)
    return files[-1] if files else None


class Runner:
    """Runs one side's benchmark process in its worktree and returns its result file."""

    def __init__(self, worktree: Path, out: Path, pytest_args: list[str],
                 rounds: int = 0) -> None:
        self.worktree, self.out, self.pytest_args = worktree, out, pytest_args
        # First, so that the user's own --bench-min-rounds/--bench-max-rounds win.
        self.rounds_args = (["--bench-min-rounds", str(rounds), "--bench-max-rounds",
                             str(rounds), "--bench-case-time", f"{ROUNDS_CASE_TIME:g}"]
                            if rounds else [])
        self.only: list[str] = []  # pytest test names: later pairs run the undecided only

    def start(self, turns: Path | None = None, side: str = "") -> subprocess.Popen:
        """Start the side's pytest session; with ``turns``, as ``side`` of a turn folder."""
        self.before = set(self.out.rglob("*.json"))
        env = dict(os.environ, PYTHONPATH=str(self.worktree))
        if turns is not None:
            env.update({ENV_FOLDER: str(turns), ENV_SIDE: side})
        return subprocess.Popen(
            bench_command([
                "-p", "no:cacheprovider", "-q", "--bench-results", str(self.out),
                *self.rounds_args, *self.pytest_args,
                # A later -k wins; the names came from this selection's own results.
                *(["-k", " or ".join(self.only)] if self.only else [])]),
            cwd=self.worktree, env=env, stdout=subprocess.DEVNULL)

    def result(self, code: int) -> Path | None:
        found = _newest(self.out, self.before)
        if found is None:
            print(f"bench.ab: a run in {self.worktree} wrote no result file (exit {code})",
                  file=sys.stderr)
        return found

    def run(self) -> Path | None:
        return self.result(self.start().wait())


def run_together(base: Runner, head: Runner, folder: Path,
                 first: str = "base") -> tuple[Path | None, Path | None]:
    """BASE and HEAD as two sessions taking turns round by round (bench.harness.turns); ``first``
    says which revision moves first in each turn (it takes the turn folder's first side)."""
    Turns.prepare(folder)
    # The turn folder's side each revision plays: its first side moves first.
    plays = {"base": "base", "head": "head"} if first == "base" else {"base": "head",
                                                                     "head": "base"}
    processes = {"base": base.start(folder, plays["base"]),
                 "head": head.start(folder, plays["head"])}
    codes: dict[str, int] = {}
    try:
        while len(codes) < 2:
            for side, process in processes.items():
                if side not in codes and process.poll() is not None:
                    codes[side] = process.returncode
                    Turns(folder, plays[side]).finish()  # also when it died before its start
            time.sleep(0.05)
    finally:  # stopped (Ctrl-C, SIGTERM): no session is left behind
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait()
    return base.result(codes["base"]), head.result(codes["head"])


def interleaved_pair(base: Runner, head: Runner, index: int,
                     folder: Path) -> tuple[Path, Path]:
    """One pair: both sessions at once, taking turns round by round; made again while it
    has contended rows (bounded). BASE moves first in odd pairs, HEAD in even ones, so
    an effect of the order within a turn falls on both sides alike over the pairs."""
    for attempt in range(MAX_REDO + 1):
        if attempt:
            print(f"bench.ab: pair {index} again: contended", flush=True)
        pair = run_together(base, head, folder / f"turns-{index}-{attempt}",
                            first="base" if index % 2 else "head")
        if None in pair:
            side = "BASE" if pair[0] is None else "HEAD"
            raise RuntimeError(f"the {side} session of pair {index} failed")
        if not any(_contended(result) for result in pair):
            break
    return pair[0], pair[1]


def pair_of_runs(base: Runner, head: Runner, index: int,
                 folder: Path | None = None) -> tuple[Path, Path]:
    """One pair: a whole BASE run, then a whole HEAD run; a run with contended rows is
    made again (bounded)."""
    pair = []
    for name, side in (("BASE", base), ("HEAD", head)):
        for attempt in range(MAX_REDO + 1):
            if attempt:
                print(f"bench.ab: pair {index}, {name} again: contended", flush=True)
            result = side.run()
            if result is None:
                raise RuntimeError(f"the {name} run of pair {index} failed")
            if not _contended(result):
                break
        pair.append(result)
    return pair[0], pair[1]


def run_pairs(base: Runner, head: Runner, pairs: int) -> list[tuple[Path, Path]]:
    """BASE, HEAD, BASE, HEAD, ... for ``pairs`` pairs."""
    return [pair_of_runs(base, head, index) for index in range(1, pairs + 1)]
