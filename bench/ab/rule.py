"""The sequential rule: verdicts from the pairs' ratios, a look after every pair.

What the rule says (the ratio, its interval, the four verdicts, when it stops) is stated
once, in ``python -m bench.ab --help`` (:data:`bench.ab.cli.EPILOG`). Why it is built so:

Looking again after every pair raises the chance of a wrong verdict with each look, so
the interval at each look is wider than a one-look interval. Alpha is spent over the
looks by the Kim-DeMets power function, an O'Brien-Fleming-like shape: little at the
first looks, where a few pairs can decide nothing anyway, most at the last. The per-look
levels are scaled together by simulating the t statistics of all the looks at once (they
are correlated: each look holds the pairs of the one before), so the level over all
looks is exact up to simulation error, not the union bound's overestimate; the t
statistic of normal log ratios is pivotal, so one simulation serves every case and every
noise level. Stopping a case early, when it is decided, only lowers its error.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import NamedTuple

from bench import stats
from bench.ab.runner import Timing, read_run, run_medians
from bench.stats import SLOWER, UNDECIDED, t_quantile

DEFAULT_MIN_PAIRS, DEFAULT_MAX_PAIRS = 3, 10
# 99% over all the looks: an unchanged case is called slower or faster by chance in at most
# 1 of 100 comparisons, however many pairs it took.
CONFIDENCE = 0.99
#: Kim-DeMets power of the alpha-spending function: alpha * (n / N) ** SPENDING_POWER.
SPENDING_POWER = 3
#: Simulated sequences of looks that set the per-look levels (fixed seed: reproducible).
SIMULATIONS = 100_000
#: Paired rounds needed before the pair's ratio is taken round by round.
MIN_PAIRED_ROUNDS = 3


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
    """Geometric-mean ratio, its interval and one of :data:`bench.stats.VERDICTS` from
    pair ratios.

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
            names.update(read_run(path)[2])
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
        (base, base_busy), (head, head_busy) = run_medians(base_file), run_medians(head_file)
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
    pairs = [(run_medians(b)[0], run_medians(h)[0]) for b, h in made]
    common = set(pairs[0][0]) & set(pairs[0][1]) if pairs else set()
    pairs = [(b, h) for b, h in pairs if common <= set(b) & set(h)]
    if not common:
        return None
    return [math.exp(sum(math.log(pair_ratio(b[k], h[k])) for k in common) / len(common))
            for b, h in pairs]
