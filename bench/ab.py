"""Fair verdicts on a change: interleaved A/B runs of two git revisions, until they settle.

``python -m bench.ab BASE HEAD [-- PYTEST ARGS...]`` checks BASE and HEAD out into
worktrees of their own (the working tree is left untouched), then makes pairs of runs of
the selected benchmark cases, each run its own process with its own result file under
``--out``. In a pair the BASE and the HEAD session start together and take turns round by
round (bench.harness.turns): one timed round of BASE, one of HEAD, and so on, only one of them
ever running. Each case's verdict comes from the pairs: the ratio HEAD/BASE of each
pair (the geometric mean of its side-by-side rounds' ratios, :func:`pair_ratio`), their
geometric mean and a confidence interval (Student's t on the log ratios). After
``--min-pairs`` pairs, more pairs are made for the cases still undecided only, until
every case has a verdict, ``--max-pairs`` is reached or ``--budget`` is spent; an "(all
cases)" row does the same with each full pair's geometric mean over its cases.

The four verdicts, with the interval [low, high] of the ratio and threshold t: *slower*
(low > 1 + t), *faster* (high < 1 - t), *same* (the whole interval within 1 +/- t: an
equivalence verdict, as two one-sided tests give it), else *undecided*.

Looking again after every pair raises the chance of a wrong verdict with each look, so
the interval at each look is wider than a one-look interval, by a group-sequential rule:
alpha is spent over the looks by the Kim-DeMets power function (alpha * (n/N)^3 spent by
pair n of N; an O'Brien-Fleming-like shape: little at the first looks, where a few pairs
can decide nothing anyway, most at the last), and the per-look levels are scaled together
so that, for an unchanged case, the chance that *any* look calls it slower is 0.5% and
faster 0.5% (99% over all looks). The scale comes from simulating the t statistics of all
the looks at once (they are correlated: each look holds the pairs of the one before), so
it is exact up to simulation error, not the union bound's overestimate; the t statistic
of normal log ratios is pivotal, so one simulation serves every case and every noise
level. Stopping a case early, when it is decided, only lowers its error.

Why pairs, and why turns: the noise that matters is between runs, not between rounds of
one run. On a shared machine what the other tenants do drifts over seconds to minutes;
rounds of the two revisions a second apart see nearly the same machine, so the drift
falls on both sides alike, and the spread of the per-pair ratios measures the noise
that is left (a process's own luck: memory placement, thread timing). What it cannot see:
noise faster than a round, a change that only shows after hours (caches, thermal
throttling), and effects of one session on the other's caches while it sleeps. Which
side moves first in a turn alternates from pair to pair (BASE in odd pairs), so an
effect of the order falls on both sides alike and shows as noise, not as a change.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from bench import stats
from bench.harness.command import bench_command
from bench.harness.turns import ENV_FOLDER, ENV_SIDE, Turns, speaks_protocol
from bench.stats import (  # noqa: F401 (the verdict words, for importers)
    FASTER,
    SAME,
    SLOWER,
    UNDECIDED,
    VERDICTS,
    parse_threshold,
    t_quantile,
)
from bench.store.lock import LockBusy, MachineLock

EXIT_OK, EXIT_SLOWER, EXIT_USAGE = 0, 1, 2
# The quick matrix's train and inference suites. On the 2-core machine the five MLP
# train cases alone took about 2.7 minutes a pair (two sessions in turns, fixed rounds);
# narrow the selection (-- -k ...) to what a change can touch.
DEFAULT_SELECTION = ["-k", "test_train_epoch or test_inference_throughput"]
DEFAULT_MIN_PAIRS, DEFAULT_MAX_PAIRS = 3, 10
#: Timed rounds each side makes of a case in a pair. A side's own stopping rule ends a
#: case once its median is known to 2%, often at 3 rounds, but a pair's ratio is only as
#: steady as its paired rounds: measured on five MLP train cases (an 8% change, ten
#: rounds a side), the spread of the pairs' ratios was the spread of the round-by-round
#: ratios over the square root of the rounds (1.0-1.8% expected that way, 0.7-1.9% seen),
#: so the noise is within a pair, not between pairs. A round adds only its own time; a
#: pair adds a framework start, compiling and calibrating (about 80 s of a 140 s pair).
#: More rounds are the cheaper way to a narrower interval.
DEFAULT_ROUNDS = 20
#: A side's own time cap per case under --rounds (--bench-case-time): wide enough that
#: the rounds asked for are made; the harness still stops a case whose rounds alone would
#: pass it (rounds of tens of seconds), as it always does.
ROUNDS_CASE_TIME = 600.0
# 99% over all the looks: an unchanged case is called slower or faster by chance in at most
# 1 of 100 comparisons, however many pairs it took.
CONFIDENCE = 0.99
#: Kim-DeMets power of the alpha-spending function: alpha * (n / N) ** SPENDING_POWER.
SPENDING_POWER = 3
#: Simulated sequences of looks that set the per-look levels (fixed seed: reproducible).
SIMULATIONS = 100_000
#: Runs with contended rows are made again, at most this many times per pair and side.
MAX_REDO = 2
#: How long to wait for another bench session to give the machine up.
LOCK_TIMEOUT = 600.0

EPILOG = f"""\
examples:
  python -m bench.ab main HEAD                         # train and inference suites
  python -m bench.ab v1.2 my-branch --max-pairs 16 --budget 1h -- -k "mlp and b128"
  python -m bench.ab HEAD~1 HEAD --fail-slower 5% --require-decided --out ab-results

a pair: a BASE and a HEAD session started together, taking turns round by round
(only one ever runs), each writing its own result file.

verdict per case: HEAD/BASE time ratio (geometric mean over the pairs; a pair's ratio is
the geometric mean of round i of HEAD over round i of BASE) with an interval
[low, high] (Student's t on the log ratios) at {CONFIDENCE:.0%} over all the looks
together: a look after every pair from --min-pairs on, each a little wider than a
one-look interval, by alpha spending (alpha * (n/N)^{SPENDING_POWER} by pair n of N =
--max-pairs, or the pairs --budget fits at the first pairs' pace where fewer, fixed
before the first look; scaled by simulation so an unchanged case is called slower at
any look with chance 0.5%, faster the same), against the threshold t (--fail-slower):
  slower     low > 1 + t           HEAD is slower by more than t
  faster     high < 1 - t          HEAD is faster by more than t
  same       1 - t <= low, high <= 1 + t   HEAD is within t of BASE
  undecided  otherwise: the noise allowed none of the three in the pairs given
After --min-pairs pairs, more pairs run for the undecided cases only, until none is
left, --max-pairs, or --budget. "(all cases)": the same over each full pair's geometric
mean of its cases. Rows marked contended are left out (their pair is made again, up to
{MAX_REDO} times).

exit status:
  0  no case slower (undecided ones listed)
  1  a case (or all cases together) slower; with --require-decided, also one undecided
  2  misuse: an unknown revision, bad options, a run that could not be made
"""


def _duration(text: str) -> float:
    from bench.harness.plan import parse_duration

    return parse_duration(text)


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd)


def resolve(revision: str, repo: Path) -> str:
    """The commit hash of ``revision``; ValueError with one line when unknown."""
    found = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=repo)
    if found.returncode != 0:
        raise ValueError(f"unknown revision {revision!r}: not a branch, tag or commit of "
                         f"{repo}")
    return found.stdout.strip()


def first_look(min_pairs: int) -> int:
    """The pair count of the first look: --min-pairs, but never before 2 pairs (one pair
    gives no interval)."""
    return max(2, min_pairs)


@functools.lru_cache(maxsize=32)
def look_multipliers(min_pairs: int, max_pairs: int,
                     confidence: float = CONFIDENCE) -> dict[int, float]:
    """{pairs n: t multiplier of the interval at the look after n pairs}, for looks after
    every pair from ``min_pairs`` (at least 2) to ``max_pairs``, all the looks together
    holding ``confidence`` (:func:`bench.stats.look_multipliers`: Kim-DeMets alpha
    spending with power :data:`SPENDING_POWER`, scaled by simulation)."""
    return stats.look_multipliers(first_look(min_pairs), max_pairs, confidence,
                                  SPENDING_POWER, SIMULATIONS)


def verdict(ratios: list[float], threshold: float, confidence: float = CONFIDENCE,
            multipliers: dict[int, float] | None = None) -> dict:
    """Geometric-mean ratio, its interval and one of :data:`VERDICTS` from pair ratios.

    The interval is Student's t at ``confidence`` (one look), or, with ``multipliers``
    (:func:`look_multipliers`), the sequential rule's bound for this many pairs; a pair
    count the table lacks (pairs left out as contended) gets the union bound over the
    table's looks, which is wider."""
    n = len(ratios)
    mean, sd = stats.mean_sd(stats.logs(ratios))
    if n < 2:
        return {"pairs": n, "ratio": math.exp(mean) if n else math.nan, "low": math.nan,
                "high": math.nan, "verdict": UNDECIDED}
    if multipliers is None:
        factor = t_quantile(confidence, n - 1)
    elif n in multipliers:
        factor = multipliers[n]
    else:
        factor = t_quantile(1 - (1 - confidence) / max(1, len(multipliers)), n - 1)
    half = factor * sd / math.sqrt(n)
    ratio, low, high = math.exp(mean), math.exp(mean - half), math.exp(mean + half)
    return {"pairs": n, "ratio": ratio, "low": low, "high": high,
            "verdict": stats.verdict(low, high, threshold, larger_is=SLOWER)}


class Timing(NamedTuple):
    """One case of one run: its median round time and its round times in order."""

    median: float
    rounds: tuple[float, ...] = ()


#: Paired rounds needed before the pair's ratio is taken round by round.
MIN_PAIRED_ROUNDS = 3


def pair_ratio(base: Timing, head: Timing) -> float:
    """HEAD/BASE time ratio of one pair: the geometric mean of the ratios of rounds made
    side by side (round i of HEAD over round i of BASE, over the rounds both made), else
    the ratio of the run medians.

    Under turns, round i of each side ran seconds apart, so what drifts over the pair (the
    machine's other tenants, its clock) falls on both and cancels round by round; measured
    on five MLP train cases under an 8% change, the spread of the pairs' ratios fell from
    1.5-2.3% (ratio of medians) to 0.8-1.3% on three of them and stayed on the others."""
    count = min(len(base.rounds), len(head.rounds))
    if count < MIN_PAIRED_ROUNDS or min(base.rounds[:count] + head.rounds[:count]) <= 0:
        return head.median / base.median
    return math.exp(sum(math.log(h / b) for b, h in zip(base.rounds[:count], head.rounds[:count],
                                                       strict=True))
                    / count)


def _run_medians(path: Path) -> tuple[dict[tuple[str, str], Timing], set[tuple[str, str]]]:
    """{(suite, case): its Timing} of one result file, and the contended keys."""
    medians, contended, _ = _read_run(path)
    return medians, contended


def _read_run(path: Path) -> tuple[dict, set, dict]:
    """:func:`_run_medians` and {(suite, case): pytest's test name}, for selecting it."""
    import json

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


def _contended(result: Path | None) -> bool:
    return result is not None and bool(_run_medians(result)[1])


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


def run_interleaved(base: Runner, head: Runner, pairs: int,
                    folder: Path) -> list[tuple[Path, Path]]:
    """``pairs`` interleaved pairs of every selected case."""
    return [interleaved_pair(base, head, index, folder) for index in range(1, pairs + 1)]


def run_pairs(base: Runner, head: Runner, pairs: int) -> list[tuple[Path, Path]]:
    """BASE, HEAD, BASE, HEAD, ... for ``pairs`` pairs."""
    return [pair_of_runs(base, head, index) for index in range(1, pairs + 1)]


def planned_pairs(budget: float | None, seconds: float, pairs: int, min_pairs: int,
                  max_pairs: int) -> int:
    """The last look the sequential rule plans for (its N): ``max_pairs``, or, under a
    ``budget`` (seconds), the pairs that fit it at the pace of the first ``pairs`` (each of
    every case: ``seconds`` in all), where fewer.

    Fixed before the first look and from times alone, so the looks' levels are those of a
    rule set in advance; a budget that ends the run at 5 of 10 planned pairs would leave
    the alpha kept for looks 6-10 unspent, and every interval wider than it need be."""
    first = first_look(min_pairs)
    if budget is None or pairs < 1 or seconds <= 0:
        return max_pairs
    return min(max_pairs, max(first, int(budget / (seconds / pairs))))


class Settled(NamedTuple):
    """What :func:`settle` ends with."""

    rows: list[dict]  # the verdicts, one per case and the all-cases row
    made: list[tuple[Path, Path]]  # (BASE, HEAD) result files, pair by pair
    why: str  # settled, max-pairs or budget
    horizon: int  # the pairs the looks were planned for (:func:`planned_pairs`)


def settle(make_pair, threshold: float, min_pairs: int = DEFAULT_MIN_PAIRS,
           max_pairs: int = DEFAULT_MAX_PAIRS, budget: float | None = None,
           confidence: float = CONFIDENCE, clock=time.monotonic,
           say=lambda text: print(text, flush=True)) -> Settled:
    """Pairs until every case has a verdict.

    ``make_pair(index, only)`` makes pair ``index`` of the cases named in ``only`` (pytest
    test names; empty: every selected case) and returns its (BASE, HEAD) result files.
    After ``min_pairs``, only the undecided cases run again; it stops when none is left
    ("settled"), at ``max_pairs``, at the pairs a ``budget`` (seconds) was planned to fit
    (:func:`planned_pairs`, fixed at the first look) or when another pair would end past
    it. Every look is judged by the sequential rule (:func:`look_multipliers`) planned
    for that many pairs.
    """
    horizon, level = max_pairs, None
    made: list[tuple[Path, Path]] = []
    names: dict[tuple[str, str], str] = {}
    only: list[str] = []
    begin = clock()
    why = "max-pairs"
    while len(made) < horizon:
        spent = clock() - begin
        if made and budget is not None and len(made) >= min_pairs and (
                spent + spent / len(made) > budget):
            why = "budget"
            break
        left = (f", about {spent / len(made) * (horizon - len(made)) / 60:.0f} min at "
                f"most left" if made else "")
        say(f"bench.ab: pair {len(made) + 1} (at least {min_pairs}, at most {horizon}), "
            f"{len(only) or 'all'} case(s){left}")
        pair = make_pair(len(made) + 1, only)
        made.append(pair)
        for path in pair:
            names.update(_read_run(path)[2])
        if len(made) < min_pairs:
            continue
        if level is None:  # the first look: the rule's N is fixed here, once
            horizon = planned_pairs(budget, clock() - begin, len(made), min_pairs, max_pairs)
            level = look_multipliers(min_pairs, horizon, confidence)
            if horizon < max_pairs:
                why = "budget"
                say(f"bench.ab: --budget fits about {horizon} pairs at this pace: the looks "
                    f"are planned for {horizon}")
        rows = verdicts(made, threshold, level, confidence)
        open_keys = [(r["suite"], r["case"]) for r in rows
                     if r["verdict"] == UNDECIDED and r["suite"] != "(all)"]
        if not open_keys:
            why = "settled"
            break
        only = sorted(names[key] for key in open_keys if key in names)
    if level is None:
        level = look_multipliers(min_pairs, horizon, confidence)
    return Settled(verdicts(made, threshold, level, confidence), made, why, horizon)


def verdicts(made: list[tuple[Path, Path]], threshold: float,
             multipliers: dict[int, float] | None = None,
             confidence: float = CONFIDENCE) -> list[dict]:
    """One verdict per (suite, case) present in at least one uncontended pair; intervals
    by :func:`verdict` (``multipliers``: the sequential rule's; None: one look)."""
    ratios: dict[tuple[str, str], list[float]] = {}
    left_out: dict[tuple[str, str], int] = {}
    for base_file, head_file in made:
        (base, base_busy), (head, head_busy) = _run_medians(base_file), _run_medians(head_file)
        for key in base_busy | head_busy:
            left_out[key] = left_out.get(key, 0) + 1
        for key in base.keys() & head.keys():
            ratios.setdefault(key, []).append(pair_ratio(base[key], head[key]))
    rows = []
    for key in sorted(set(ratios) | set(left_out)):
        row = verdict(ratios.get(key, []), threshold, confidence, multipliers)
        row.update(suite=key[0], case=key[1], contended_pairs=left_out.get(key, 0))
        rows.append(row)
    overall = _all_cases(made)
    if overall is not None and len(rows) > 1:
        row = verdict(overall, threshold, confidence, multipliers)
        row.update(suite="(all)", case="(all cases)", contended_pairs=0)
        rows.append(row)
    return rows


def _all_cases(made: list[tuple[Path, Path]]) -> list[float] | None:
    """Per full pair, the geometric mean of its cases' ratios, over the cases the first
    pair has (later pairs that ran only the undecided cases do not count here).

    A change that slows every case a little is clearer here than in any one case: the
    noise of separate cases partly cancels. None where the pairs share no case."""
    pairs = [(_run_medians(b)[0], _run_medians(h)[0]) for b, h in made]
    common = set(pairs[0][0]) & set(pairs[0][1]) if pairs else set()
    pairs = [(b, h) for b, h in pairs if common <= set(b) & set(h)]
    if not common:
        return None
    return [math.exp(sum(math.log(pair_ratio(b[k], h[k])) for k in common) / len(common))
            for b, h in pairs]


def render(rows: list[dict], threshold: float, base: str, head: str,
           confidence: float = CONFIDENCE, pairs: tuple[int, int] = (2, 2),
           why: str = "") -> str:
    """The verdict table in Markdown; ``pairs``: (--min-pairs, --max-pairs), which set the
    rule stated under it."""
    lines = [f"HEAD {head[:10]} against BASE {base[:10]}: time ratio HEAD/BASE (above 1 = "
             f"slower), geometric mean over pairs; threshold {threshold:.0%}", "",
             "| verdict | suite | case | ratio | interval | pairs | left out (contended) |",
             "| --- | --- | --- | ---: | --- | ---: | ---: |"]
    for r in rows:
        interval = (f"{r['low']:.3f}-{r['high']:.3f}" if not math.isnan(r["low"]) else "—")
        ratio = f"{r['ratio']:.3f}" if not math.isnan(r["ratio"]) else "—"
        lines.append(f"| {r['verdict']} | {r['suite']} | {r['case']} | {ratio} | {interval} "
                     f"| {r['pairs']} | {r['contended_pairs']} |")
    cases = [r for r in rows if r["suite"] != "(all)"]
    together = [r for r in rows if r["suite"] == "(all)"]
    slower = [r for r in rows if r["verdict"] == SLOWER]
    undecided = [r["case"] for r in cases if r["verdict"] == UNDECIDED]
    first, last = first_look(pairs[0]), pairs[1]
    factors = look_multipliers(pairs[0], pairs[1], confidence)
    rule = (f"Student's t on the log ratios at {confidence:.0%}" if len(factors) <= 1 else
            f"Student's t on the log ratios, widened for looking after each of pairs "
            f"{first}-{last} (alpha spent as (n/{last})^{SPENDING_POWER}; t multiplier "
            f"{factors[first]:.1f} at {first} pairs, {factors[last]:.2f} at {last} against "
            f"{t_quantile(confidence, last - 1):.2f} for one look): an unchanged case is "
            f"called slower at any look with chance {(1 - confidence) / 2:.1%}, faster "
            f"the same")
    lines += ["", f"_Interval: {rule}. slower: the interval "
                  f"above {1 + threshold:.2f}; faster: below {1 - threshold:.2f}; same: "
                  f"within {1 - threshold:.2f}-{1 + threshold:.2f}; undecided: none of "
                  f"these. (all cases): each full pair's geometric mean over its cases."
                  + (f" Stopped: {why}." if why else "") + "_",
              "", f"**{'SLOWER' if slower else 'PASS'}**: "
                  + ", ".join(f"{sum(r['verdict'] == v for r in cases)} {v}" for v in VERDICTS)
                  + "".join(f"; all cases together: {r['verdict']}" for r in together)
                  + (f"; undecided: {', '.join(undecided)}" if undecided else "")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ab", description=__doc__.split("\n\n")[0] + "\n\n"
        + __doc__.split("\n\n")[1], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", metavar="BASE", help="git revision: branch, tag or hash")
    parser.add_argument("head", metavar="HEAD", help="git revision to compare with BASE")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                        help="case selection for pytest, after -- (default: "
                             + " ".join(DEFAULT_SELECTION) + ")")
    parser.add_argument("--min-pairs", type=int, default=DEFAULT_MIN_PAIRS, metavar="N",
                        help=f"pairs of every selected case before any verdict (default: "
                             f"{DEFAULT_MIN_PAIRS}; at least 2 for an interval)")
    parser.add_argument("--max-pairs", type=int, default=DEFAULT_MAX_PAIRS, metavar="N",
                        help=f"pairs at most: after --min-pairs, pairs run the undecided "
                             f"cases only (default: {DEFAULT_MAX_PAIRS})")
    parser.add_argument("--pairs", type=int, default=None, metavar="N",
                        help="exactly N pairs of every case (--min-pairs N --max-pairs N)")
    parser.add_argument("--budget", type=_duration, default=None, metavar="DURATION",
                        help="add no pair that would end past this much time, e.g. 30m, "
                             "1.5h; where it fits fewer than --max-pairs pairs at the first "
                             "pairs' pace, the looks are planned for that many, so the "
                             "intervals are as narrow as the pairs it allows (default: "
                             "none; --max-pairs bounds the run)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N",
                        help=f"timed rounds each side makes of a case in a pair, paired "
                             f"round by round (passed as --bench-min-rounds N "
                             f"--bench-max-rounds N --bench-case-time "
                             f"{ROUNDS_CASE_TIME:g}; pytest options after -- win); more "
                             f"rounds narrow a pair's ratio as much as more pairs and cost "
                             f"less; 0: each side's own stopping rule alone (default: "
                             f"{DEFAULT_ROUNDS})")
    parser.add_argument("--require-decided", action="store_true",
                        help="exit 1 also when a case is still undecided (a strict gate)")
    parser.add_argument("--fail-slower", type=parse_threshold, default=0.05,
                        metavar="THRESHOLD", help="how much slower counts: 5%% or 0.05 "
                                                  "(default: 5%%)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder for the result files and the verdict "
                             "(default: ab/<BASE>-<HEAD>-<time>)")
    parser.add_argument("--repo", type=Path, default=Path("."), metavar="DIR",
                        help="the git repository (default: the current folder)")
    parser.add_argument("--interleave", choices=("rounds", "runs"), default="rounds",
                        help="rounds (default): each pair's two sessions take turns round "
                             "by round; runs: a whole BASE run, then a whole HEAD run (used "
                             "anyway where a revision predates turns)")
    # Everything after "--" goes to pytest as it is. argparse alone cannot do this: its
    # "*" positional is filled (empty) together with BASE and HEAD, and "-k" would then
    # be read as an unknown option of ours.
    argv = list(sys.argv[1:] if argv is None else argv)
    passed: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passed = argv[:cut], argv[cut + 1:]
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (pytest's options go "
                     f"after --, e.g. python -m bench.ab main HEAD -- -k mlp)")
    args.pytest_args = [*args.pytest_args, *passed]
    if args.pairs is not None:
        if args.pairs < 1:
            parser.error("--pairs must be at least 1")
        args.min_pairs = args.max_pairs = args.pairs
    if args.min_pairs < 1 or args.max_pairs < args.min_pairs:
        parser.error(f"need 1 <= --min-pairs ({args.min_pairs}) <= --max-pairs "
                     f"({args.max_pairs})")
    if args.rounds < 0:
        parser.error(f"--rounds must be 0 or more, got {args.rounds}")
    # SIGTERM ends the run like Ctrl-C: sessions stopped, worktrees removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    repo = args.repo.resolve()
    try:
        base, head = resolve(args.base, repo), resolve(args.head, repo)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = (args.out or Path("ab") / f"{base[:8]}-{head[:8]}-{stamp}").resolve()
    selection = args.pytest_args or DEFAULT_SELECTION
    scratch = Path(tempfile.mkdtemp(prefix="fashion-bench-ab-"))
    trees = []
    try:
        for name, commit in (("base", base), ("head", head)):
            tree = scratch / name
            added = _git("worktree", "add", "--detach", str(tree), commit, cwd=repo)
            if added.returncode != 0:
                print(f"error: cannot check out {commit[:10]}: {added.stderr.strip()}",
                      file=sys.stderr)
                return EXIT_USAGE
            trees.append(tree)
        runners = [Runner(tree, out / name, selection, args.rounds) for tree, name in
                   zip(trees, ("base", "head"), strict=True)]
        interleave = args.interleave
        if interleave == "rounds" and not all(speaks_protocol(t) for t in trees):
            print("bench.ab: a revision predates this way of taking turns round by round: "
                  "whole runs alternate instead (--interleave runs)", flush=True)
            interleave = "runs"
        one_pair = interleaved_pair if interleave == "rounds" else pair_of_runs
        print("bench.ab: in each pair, " + (
            "BASE and HEAD taking turns round by round" if interleave == "rounds"
            else "a whole BASE run, then a whole HEAD run"), flush=True)

        def make_pair(index: int, only: list[str]) -> tuple[Path, Path]:
            for runner in runners:
                runner.only = only
            return one_pair(runners[0], runners[1], index, scratch)

        lock = MachineLock() if interleave == "rounds" else None
        try:
            if lock is not None:
                lock.acquire(LOCK_TIMEOUT, say=lambda text: print(text, flush=True))
            try:
                rows, _, why, horizon = settle(make_pair, args.fail_slower,
                                               args.min_pairs, args.max_pairs, args.budget)
            finally:
                if lock is not None:
                    lock.release()
        except (RuntimeError, LockBusy) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        text = render(rows, args.fail_slower, base, head,
                      pairs=(args.min_pairs, horizon), why=why)
        out.mkdir(parents=True, exist_ok=True)
        (out / "VERDICT.md").write_text(text, encoding="utf-8")
        print(text, end="")
        print(f"bench.ab: result files and VERDICT.md in {out}")
        if any(r["verdict"] == SLOWER for r in rows):
            return EXIT_SLOWER
        if args.require_decided and any(r["verdict"] == UNDECIDED for r in rows):
            print("bench.ab: --require-decided: undecided case(s); exit status 1",
                  file=sys.stderr)
            return EXIT_SLOWER
        return EXIT_OK
    finally:
        for tree in trees:
            _git("worktree", "remove", "--force", str(tree), cwd=repo)
        shutil.rmtree(scratch, ignore_errors=True)
        _git("worktree", "prune", cwd=repo)


if __name__ == "__main__":
    sys.exit(main())
