"""Every interval, test and verdict of the harness, in one place; scipy does the maths.

The stopping rule (a run's own precision), the A/B rule (two revisions, paired runs), the
report's verdicts across machines and the regression gate (two sets of runs) all speak
of a ratio with an interval on the log scale, and all end in one of four words:

* ``faster`` / ``slower``: the interval lies wholly beyond 1 (and, where the rule says
  so, beyond the threshold);
* ``same``: the interval lies inside 1 +/- the threshold;
* ``undecided``: anything else: the evidence cannot yet tell.

Why logarithms: timing noise is a factor, not an offset (a round is slowed by what else
runs, never sped up), so on the log scale it is close to symmetric and a t-interval
holds at small counts; a ratio's interval is then ``exp(mean +/- half)``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from scipy import stats as _scipy

FASTER, SLOWER, SAME, UNDECIDED = "faster", "slower", "same", "undecided"
#: The four verdict words, in the order tables list them.
VERDICTS = (SLOWER, FASTER, SAME, UNDECIDED)
#: Words for a case that has no verdict: it failed, or one side lacks it.
FAILED, MISSING, ADDED = "failed", "missing", "added"

CONFIDENCE = 0.99


def share_of(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1: a share written as a percentage or a fraction
    (ValueError when it is neither)."""
    raw = text.strip()
    return float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)


def parse_threshold(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1 (an argparse ``type``): a relative margin."""
    raw = text.strip()
    try:
        value = share_of(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a threshold like 10% or 0.1") from None
    if not raw.endswith("%") and value >= 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is ambiguous: write a percentage (10%) or a fraction below 1 (0.1)")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative threshold")
    return value


def t_quantile(confidence: float, df: float) -> float:
    """The two-sided ``confidence`` multiplier of Student's t with ``df`` degrees of
    freedom (``inf``: the normal distribution's)."""
    if math.isinf(df):
        return float(_scipy.norm.ppf(0.5 + confidence / 2))
    return float(_scipy.t.ppf(0.5 + confidence / 2, df))


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom: a one-sided p-value."""
    if math.isnan(t):
        return math.nan
    return float(_scipy.t.sf(t, df)) if math.isfinite(df) else float(_scipy.norm.sf(t))


def logs(values: Iterable[float]) -> list[float]:
    """Natural logarithms of positive values (ValueError names a value that is not)."""
    out = []
    for value in values:
        value = float(value)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{value!r} is not a positive finite figure")
        out.append(math.log(value))
    return out


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``nan`` sd below two values)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1))


def geometric_mean(values: Iterable[float]) -> float:
    """The geometric mean of positive values (``nan`` when there are none)."""
    logged = logs(values)
    return math.exp(math.fsum(logged) / len(logged)) if logged else math.nan


def log_halfwidth(values: Sequence[float], confidence: float = CONFIDENCE) -> float:
    """Half-width, on the log scale, of the t-interval of the mean of ``log(values)``;
    ``inf`` below two values."""
    if len(values) < 2:
        return math.inf
    _, sd = mean_sd(logs(values))
    return t_quantile(confidence, len(values) - 1) * sd / math.sqrt(len(values))


def share_halfwidth(values: Sequence[float], confidence: float = CONFIDENCE) -> float:
    """:func:`log_halfwidth` as a share of the geometric mean: ``exp(h) - 1``, the wider,
    upper side; ``inf`` below two values or where a value is not positive."""
    try:
        return math.expm1(log_halfwidth(values, confidence))
    except ValueError:
        return math.inf


class Interval(NamedTuple):
    """A ratio, its interval and the degrees of freedom the interval rests on."""

    ratio: float
    low: float
    high: float
    df: float = math.inf


def ratio_interval(mean_log: float, se: float, df: float,
                   confidence: float = CONFIDENCE) -> Interval:
    """``exp(mean_log)`` with its ``confidence`` interval from the log scale's standard
    error ``se`` and the ``df`` it was estimated with (``inf``: a spread taken as known)."""
    if not (math.isfinite(se) and df > 0):
        return Interval(math.exp(mean_log), math.nan, math.nan, df)
    half = t_quantile(confidence, df) * se
    return Interval(math.exp(mean_log), math.exp(mean_log - half), math.exp(mean_log + half), df)


def welch_df(parts: Sequence[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variances ``(variance, df)``;
    a part with ``df = inf`` (a spread taken as known) adds no uncertainty of its own."""
    total = math.fsum(v for v, _ in parts)
    denominator = math.fsum(v * v / df for v, df in parts if math.isfinite(df) and df > 0)
    if total <= 0 or denominator <= 0:
        return math.inf
    return total * total / denominator


def pooled_sd(groups: Iterable[Sequence[float]]) -> tuple[float, int]:
    """The pooled standard deviation of several groups of log figures and its degrees of
    freedom (``(nan, 0)`` when no group has two values)."""
    squares, df = 0.0, 0
    for group in groups:
        if len(group) >= 2:
            mean = math.fsum(group) / len(group)
            squares += math.fsum((x - mean) ** 2 for x in group)
            df += len(group) - 1
    return (math.sqrt(squares / df), df) if df else (math.nan, 0)


def verdict(low: float, high: float, threshold: float, *, larger_is: str = SLOWER,
            margin: bool = True) -> str:
    """One of :data:`VERDICTS` for a ratio's interval ``[low, high]``.

    ``larger_is``: what a ratio above 1 means (``slower`` for a time ratio, ``faster``
    for a speed ratio). ``margin``: ``slower``/``faster`` need the whole interval beyond
    1 +/- ``threshold`` (A/B, machines); without it, beyond 1 (the gate, whose rule puts
    the threshold on the ratio itself). ``same``: the interval inside 1 +/- threshold.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNDECIDED
    smaller_is = FASTER if larger_is == SLOWER else SLOWER
    up, down = (1 + threshold, 1 - threshold) if margin else (1.0, 1.0)
    if low > up:
        return larger_is
    if high < down:
        return smaller_is
    if low >= 1 - threshold and high <= 1 + threshold:
        return SAME
    return UNDECIDED


# --------------------------------------------------------------------------- sequential looks

def _spending_weights(first: int, last: int, power: float) -> list[float]:
    """The share of alpha each look n = first..last may spend (sums to 1)."""
    spent = [(n / last) ** power for n in range(first, last + 1)]
    return [spent[0]] + [b - a for a, b in zip(spent, spent[1:], strict=False)]


def look_multipliers(first: int, last: int, confidence: float, power: float,
                     simulations: int, seed: int = 20261203) -> dict[int, float]:
    """{n: t multiplier of the interval at the look after n pairs}, for looks after every
    pair n = ``first``..``last``, such that all the looks together hold ``confidence``:
    an unchanged case's interval lies wholly above 1 at some look with chance
    (1 - confidence) / 2, and wholly below with the same chance.

    Alpha is spent as Kim and DeMets' power family ((n / last) ** power); the per-look
    one-sided levels gamma * alpha/2 * weight are scaled by the gamma at which
    ``simulations`` simulated sequences of standard normal log ratios cross a look's
    bound with chance alpha/2 (bisection). One look is the plain Student's t interval.
    """
    import numpy as np

    if last < first:
        return {}
    tail = (1 - confidence) / 2
    looks = list(range(first, last + 1))
    if len(looks) == 1:
        return {first: t_quantile(confidence, first - 1)}
    weights = np.array(_spending_weights(first, last, power))
    df = np.array(looks) - 1

    def bounds(gamma: float) -> np.ndarray:
        return _scipy.t.ppf(1 - np.minimum(gamma * tail * weights, 0.5), df)

    rng = np.random.default_rng(seed)
    draws = rng.standard_normal((simulations, last))
    n = np.arange(1, last + 1)
    mean = np.cumsum(draws, axis=1) / n
    square = np.cumsum(draws ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt((square - n * mean ** 2) / (n - 1))
        stat = (mean * np.sqrt(n) / sd)[:, first - 1:]
    both = np.concatenate([stat, -stat])  # both tails: twice the sample, symmetric

    def crossing(gamma: float) -> float:
        return float(np.mean((both > bounds(gamma)).any(axis=1)))

    low, high = 1.0, 1.0 / weights.max()  # gamma = 1: the union bound; high: one look alone
    for _ in range(40):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if crossing(middle) <= tail else (low, middle)
    return {look: float(bound) for look, bound in zip(looks, bounds(low), strict=True)}
