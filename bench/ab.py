"""Fair verdicts on a change: interleaved A/B runs of two git revisions.

``python -m bench.ab BASE HEAD [-- PYTEST ARGS...]`` checks BASE and HEAD out into
worktrees of their own (the working tree is left untouched), then makes ``--pairs`` pairs
of runs of the selected benchmark cases, each run its own process with its own result
file under ``--out``. In a pair the BASE and the HEAD session start together and take
turns round by round (bench.turns): one timed round of BASE, one of HEAD, and so on, only
one of them ever running. The verdict per case comes from the pairs: the ratio HEAD/BASE
of each pair's run medians, their geometric mean and a confidence interval (Student's t
on the log ratios); an "(all cases)" row does the same with each pair's geometric mean
over its cases.

Why pairs, and why turns: the noise that matters is between runs, not between rounds of
one run. On a shared machine what the other tenants do drifts over seconds to minutes;
rounds of the two revisions a second apart see nearly the same machine, so the drift
falls on both sides alike, and the spread of the per-pair ratios measures the noise
that is left (a process's own luck: memory placement, thread timing). What it cannot see:
noise faster than a round, a change that only shows after hours (caches, thermal
throttling), effects of one session on the other's caches while it sleeps, and an
order effect within a turn (BASE always moves first).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.compare import parse_threshold
from bench.lock import LockBusy, MachineLock
from bench.turns import ENV_FOLDER, ENV_SIDE, Turns, speaks_protocol

EXIT_OK, EXIT_SLOWER, EXIT_USAGE = 0, 1, 2
# The quick matrix's train and inference suites. On the 2-core machine the five MLP
# train cases alone take about 2.7 minutes a pair (two sessions in turns), 13.5 for the
# five pairs; narrow the selection (-- -k ...) to what a change can touch.
DEFAULT_SELECTION = ["-k", "test_train_epoch or test_inference_throughput"]
DEFAULT_PAIRS = 5
# 99%: a case is called slower by chance in about 1 of 200 unchanged comparisons.
CONFIDENCE = 0.99
#: Runs with contended rows are made again, at most this many times per pair and side.
MAX_REDO = 2
#: How long to wait for another bench session to give the machine up.
LOCK_TIMEOUT = 600.0

EPILOG = f"""\
examples:
  python -m bench.ab main HEAD                         # train and inference suites
  python -m bench.ab v1.2 my-branch --pairs 8 -- -k "mlp and b128"
  python -m bench.ab HEAD~1 HEAD --fail-slower 5% --out ab-results

a pair: a BASE and a HEAD session started together, taking turns round by round
(only one ever runs), each writing its own result file.

verdict per case: HEAD/BASE time ratio (geometric mean over the pairs) with a
{CONFIDENCE:.0%} confidence interval. "slower" when the ratio is above 1 + threshold and the
whole interval lies above 1; "faster" symmetrically; otherwise "no change detected".
"(all cases)": the same over each pair's geometric mean of its cases. Rows marked
contended are left out (their pair is made again, up to {MAX_REDO} times).

exit status:
  0  no case slower
  1  at least one case (or all cases together) slower than --fail-slower
  2  misuse: an unknown revision, bad options, a run that could not be made
"""


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd)


def resolve(revision: str, repo: Path) -> str:
    """The commit hash of ``revision``; ValueError with one line when unknown."""
    found = _git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", cwd=repo)
    if found.returncode != 0:
        raise ValueError(f"unknown revision {revision!r}: not a branch, tag or commit of "
                         f"{repo}")
    return found.stdout.strip()


def t_quantile(confidence: float, df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def verdict(ratios: list[float], threshold: float, confidence: float = CONFIDENCE) -> dict:
    """Geometric-mean ratio, its confidence interval and the verdict from pair ratios."""
    n = len(ratios)
    if n == 0:
        return {"pairs": 0, "ratio": math.nan, "low": math.nan, "high": math.nan,
                "verdict": "no data"}
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / n
    if n < 2:
        return {"pairs": n, "ratio": math.exp(mean), "low": math.nan, "high": math.nan,
                "verdict": "inconclusive (one pair)"}
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    ratio, low, high = math.exp(mean), math.exp(mean - half), math.exp(mean + half)
    if ratio > 1 + threshold and low > 1:
        result = "slower"
    elif ratio < 1 - threshold and high < 1:
        result = "faster"
    else:
        result = "no change detected"
    return {"pairs": n, "ratio": ratio, "low": low, "high": high, "verdict": result}


def _run_medians(path: Path) -> tuple[dict[tuple[str, str], float], set[tuple[str, str]]]:
    """{(suite, case): median seconds} of one result file, and the contended keys."""
    import json

    document = json.loads(path.read_text(encoding="utf-8"))
    medians, contended = {}, set()
    for row in document.get("benchmarks", []):
        info = row.get("extra_info", {})
        key = (info.get("suite"), info.get("case"))
        if info.get("contended"):
            contended.add(key)
        else:
            medians[key] = float(row["stats"]["median"])
    return medians, contended


def _newest(folder: Path, before: set[Path]) -> Path | None:
    files = sorted(set(folder.rglob("[0-9]*.json")) - before)
    return files[-1] if files else None


class Runner:
    """Runs one side's benchmark process in its worktree and returns its result file."""

    def __init__(self, worktree: Path, out: Path, pytest_args: list[str]) -> None:
        self.worktree, self.out, self.pytest_args = worktree, out, pytest_args

    def start(self, turns: Path | None = None, side: str = "") -> subprocess.Popen:
        """Start the side's pytest session; with ``turns``, as ``side`` of a turn folder."""
        self.before = set(self.out.rglob("*.json"))
        env = dict(os.environ, PYTHONPATH=str(self.worktree))
        if turns is not None:
            env.update({ENV_FOLDER: str(turns), ENV_SIDE: side})
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "bench", "--benchmark-only", "-p",
             "no:cacheprovider", "-q", "--bench-results", str(self.out), *self.pytest_args],
            cwd=self.worktree, env=env, stdout=subprocess.DEVNULL)

    def result(self, code: int) -> Path | None:
        found = _newest(self.out, self.before)
        if found is None:
            print(f"bench.ab: a run in {self.worktree} wrote no result file (exit {code})",
                  file=sys.stderr)
        return found

    def run(self) -> Path | None:
        return self.result(self.start().wait())


def run_together(base: Runner, head: Runner, folder: Path) -> tuple[Path | None, Path | None]:
    """BASE and HEAD as two sessions taking turns round by round (bench.turns)."""
    Turns.prepare(folder)
    processes = {"base": base.start(folder, "base"), "head": head.start(folder, "head")}
    codes: dict[str, int] = {}
    try:
        while len(codes) < 2:
            for side, process in processes.items():
                if side not in codes and process.poll() is not None:
                    codes[side] = process.returncode
                    Turns(folder, side).finish()  # also when it died before its start
            time.sleep(0.05)
    finally:  # stopped (Ctrl-C, SIGTERM): no session is left behind
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait()
    return base.result(codes["base"]), head.result(codes["head"])


def _contended(result: Path | None) -> bool:
    return result is not None and bool(_run_medians(result)[1])


def run_interleaved(base: Runner, head: Runner, pairs: int,
                    folder: Path) -> list[tuple[Path, Path]]:
    """Each pair: both sessions at once, taking turns round by round; a pair with
    contended rows is made again (bounded)."""
    made: list[tuple[Path, Path]] = []
    begin = time.monotonic()
    for index in range(1, pairs + 1):
        for attempt in range(MAX_REDO + 1):
            left = ""
            if made:
                per_pair = (time.monotonic() - begin) / len(made)
                left = f", about {per_pair * (pairs - len(made)) / 60:.0f} min left"
            print(f"bench.ab: pair {index} of {pairs}, BASE and HEAD taking turns round by "
                  f"round{' (again: contended)' if attempt else ''}{left}", flush=True)
            pair = run_together(base, head, folder / f"turns-{index}-{attempt}")
            if None in pair:
                side = "BASE" if pair[0] is None else "HEAD"
                raise RuntimeError(f"the {side} session of pair {index} failed")
            if not any(_contended(result) for result in pair) or attempt == MAX_REDO:
                break
        made.append((pair[0], pair[1]))
    return made


def run_pairs(base: Runner, head: Runner, pairs: int) -> list[tuple[Path, Path]]:
    """BASE, HEAD, BASE, HEAD, ...; a run with contended rows is made again (bounded)."""
    made: list[tuple[Path, Path]] = []
    begin = time.monotonic()
    for index in range(1, pairs + 1):
        pair = []
        for name, side in (("BASE", base), ("HEAD", head)):
            for attempt in range(MAX_REDO + 1):
                done = 2 * (index - 1) + len(pair)
                left = ""
                if done:
                    per_run = (time.monotonic() - begin) / done
                    left = f", about {per_run * (2 * pairs - done) / 60:.0f} min left"
                print(f"bench.ab: pair {index} of {pairs}, {name}"
                      f"{' (again: contended)' if attempt else ''}{left}", flush=True)
                result = side.run()
                if result is None:
                    raise RuntimeError(f"the {name} run of pair {index} failed")
                if not _contended(result) or attempt == MAX_REDO:
                    break
            pair.append(result)
        made.append((pair[0], pair[1]))
    return made


def verdicts(made: list[tuple[Path, Path]], threshold: float) -> list[dict]:
    """One verdict per (suite, case) present in at least one uncontended pair."""
    ratios: dict[tuple[str, str], list[float]] = {}
    left_out: dict[tuple[str, str], int] = {}
    for base_file, head_file in made:
        (base, base_busy), (head, head_busy) = _run_medians(base_file), _run_medians(head_file)
        for key in base_busy | head_busy:
            left_out[key] = left_out.get(key, 0) + 1
        for key in base.keys() & head.keys():
            ratios.setdefault(key, []).append(head[key] / base[key])
    rows = []
    for key in sorted(set(ratios) | set(left_out)):
        row = verdict(ratios.get(key, []), threshold)
        row.update(suite=key[0], case=key[1], contended_pairs=left_out.get(key, 0))
        rows.append(row)
    overall = _all_cases(made)
    if overall is not None and len(rows) > 1:
        row = verdict(overall, threshold)
        row.update(suite="(all)", case="(all cases)", contended_pairs=0)
        rows.append(row)
    return rows


def _all_cases(made: list[tuple[Path, Path]]) -> list[float] | None:
    """Per pair, the geometric mean of its cases' ratios, over the cases every pair has.

    A change that slows every case a little is clearer here than in any one case: the
    noise of separate cases partly cancels. None where the pairs share no case."""
    pairs = [(_run_medians(b)[0], _run_medians(h)[0]) for b, h in made]
    common = set.intersection(*(set(b) & set(h) for b, h in pairs)) if pairs else set()
    if not common:
        return None
    return [math.exp(sum(math.log(h[k] / b[k]) for k in common) / len(common))
            for b, h in pairs]


def render(rows: list[dict], threshold: float, base: str, head: str) -> str:
    lines = [f"HEAD {head[:10]} against BASE {base[:10]}: time ratio HEAD/BASE (above 1 = "
             f"slower), geometric mean over pairs, {CONFIDENCE:.0%} interval; threshold "
             f"{threshold:.0%}", "",
             "| verdict | suite | case | ratio | interval | pairs | left out (contended) |",
             "| --- | --- | --- | ---: | --- | ---: | ---: |"]
    for r in rows:
        interval = (f"{r['low']:.3f}-{r['high']:.3f}" if not math.isnan(r["low"]) else "—")
        ratio = f"{r['ratio']:.3f}" if not math.isnan(r["ratio"]) else "—"
        lines.append(f"| {r['verdict']} | {r['suite']} | {r['case']} | {ratio} | {interval} "
                     f"| {r['pairs']} | {r['contended_pairs']} |")
    cases = [r for r in rows if r["suite"] != "(all)"]
    together = [r for r in rows if r["suite"] == "(all)"]
    slower = [r for r in rows if r["verdict"] == "slower"]
    lines += ["", f"**{'SLOWER' if slower else 'PASS'}**: "
                  f"{sum(r['verdict'] == 'slower' for r in cases)} case(s) slower, "
                  f"{sum(r['verdict'] == 'faster' for r in cases)} faster, "
                  f"{sum(r['verdict'].startswith('no change') for r in cases)} no change "
                  f"detected" + "".join(f"; all cases together: {r['verdict']}"
                                        for r in together)]
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
    parser.add_argument("--pairs", type=int, default=DEFAULT_PAIRS, metavar="N",
                        help=f"BASE/HEAD pairs to run (default: {DEFAULT_PAIRS}; at least 2 "
                             f"for an interval)")
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
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
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
        runners = [Runner(tree, out / name, selection) for tree, name in
                   zip(trees, ("base", "head"), strict=True)]
        interleave = args.interleave
        if interleave == "rounds" and not all(speaks_protocol(t / "bench" / "turns.py")
                                              for t in trees):
            print("bench.ab: a revision predates this way of taking turns round by round: "
                  "whole runs alternate instead (--interleave runs)", flush=True)
            interleave = "runs"
        try:
            if interleave == "rounds":
                lock = MachineLock()
                lock.acquire(LOCK_TIMEOUT, say=lambda text: print(text, flush=True))
                try:
                    made = run_interleaved(runners[0], runners[1], args.pairs, scratch)
                finally:
                    lock.release()
            else:
                made = run_pairs(runners[0], runners[1], args.pairs)
        except (RuntimeError, LockBusy) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        rows = verdicts(made, args.fail_slower)
        text = render(rows, args.fail_slower, base, head)
        out.mkdir(parents=True, exist_ok=True)
        (out / "VERDICT.md").write_text(text, encoding="utf-8")
        print(text, end="")
        print(f"bench.ab: result files and VERDICT.md in {out}")
        return EXIT_SLOWER if any(r["verdict"] == "slower" for r in rows) else EXIT_OK
    finally:
        for tree in trees:
            _git("worktree", "remove", "--force", str(tree), cwd=repo)
        shutil.rmtree(scratch, ignore_errors=True)
        _git("worktree", "prune", cwd=repo)


if __name__ == "__main__":
    sys.exit(main())
