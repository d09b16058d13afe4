"""``python -m bench.ab``: the options, and a run from the worktrees to VERDICT.md."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.ab.render import render
from bench.ab.rule import (
    CONFIDENCE,
    DEFAULT_MAX_PAIRS,
    DEFAULT_MIN_PAIRS,
    SPENDING_POWER,
    settle,
)
from bench.ab.runner import (
    MAX_REDO,
    ROUNDS_CASE_TIME,
    Runner,
    add_worktree,
    interleaved_pair,
    pair_of_runs,
    remove_worktrees,
    resolve,
)
from bench.harness.turns import speaks_protocol
from bench.stats import SLOWER, UNDECIDED, parse_threshold
from bench.store.lock import LockBusy, MachineLock

EXIT_OK, EXIT_SLOWER, EXIT_USAGE = 0, 1, 2
# The quick matrix's train and inference suites. On the 2-core machine the five MLP
# train cases alone took about 2.7 minutes a pair (two sessions in turns, fixed rounds);
# narrow the selection (-- -k ...) to what a change can touch.
DEFAULT_SELECTION = ["-k", "test_train_epoch or test_inference_throughput"]
#: Timed rounds each side makes of a case in a pair. A side's own stopping rule ends a
#: case once its median is known to 2%, often at 3 rounds, but a pair's ratio is only as
#: steady as its paired rounds: measured on five MLP train cases (an 8% change, ten
#: rounds a side), the spread of the pairs' ratios was the spread of the round-by-round
#: ratios over the square root of the rounds (1.0-1.8% expected that way, 0.7-1.9% seen),
#: so the noise is within a pair, not between pairs. A round adds only its own time; a
#: pair adds a framework start, compiling and calibrating (about 80 s of a 140 s pair).
#: More rounds are the cheaper way to a narrower interval.
DEFAULT_ROUNDS = 20
#: How long to wait for another bench session to give the machine up.
LOCK_TIMEOUT = 600.0

EPILOG = f"""\
examples:
  python -m bench.ab main HEAD                         # train and inference suites
  python -m bench.ab v1.2 my-branch --max-pairs 16 --budget 1h -- -k "mlp and b128"
  python -m bench.ab HEAD~1 HEAD --fail-slower 5% --require-decided --out ab-results

a pair: a BASE and a HEAD session started together, taking turns round by round (one
timed round of BASE, one of HEAD, and so on: only one ever runs), each writing its own
result file.

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


def build_parser() -> argparse.ArgumentParser:
    from bench import ab  # the package's docstring opens the help

    parser = argparse.ArgumentParser(
        prog="python -m bench.ab", description="\n\n".join(ab.__doc__.split("\n\n")[:2]),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options; everything after ``--`` goes to pytest as it is.

    argparse alone cannot do this: its "*" positional is filled (empty) together with BASE
    and HEAD, and "-k" would then be read as an unknown option of ours."""
    parser = build_parser()
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
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
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
    trees: list[Path] = []
    try:
        for name, commit in (("base", base), ("head", head)):
            tree = scratch / name
            problem = add_worktree(repo, tree, commit)
            if problem is not None:
                print(f"error: cannot check out {commit[:10]}: {problem}", file=sys.stderr)
                return EXIT_USAGE
            trees.append(tree)
        runners = [Runner(tree, out / name, selection, args.rounds) for tree, name in
                   zip(trees, ("base", "head"), strict=True)]
        return _compare(args, runners, trees, scratch, out, base, head)
    finally:
        remove_worktrees(repo, trees, scratch)


def _compare(args: argparse.Namespace, runners: list[Runner], trees: list[Path],
             scratch: Path, out: Path, base: str, head: str) -> int:
    """Pairs until the cases settle, then the verdict: printed, in VERDICT.md, and as the
    exit status."""
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
