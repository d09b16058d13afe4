"""When a case has measured enough: rounds until its figure is known, or its time is spent.

A case times at least :attr:`StoppingRule.min_rounds` rounds after its warm-up, then keeps
adding rounds until the 99% confidence interval of its figure is within
:attr:`StoppingRule.precision` of it (``converged``), its share of the run's budget is
spent (``budget``), or :attr:`StoppingRule.max_rounds` rounds have run (``max-rounds``).

Which interval: the t-interval of the **mean of log round times** (the geometric mean),
turned back into a share of the figure. Round times are positive and skewed to the right
(a round is slowed, never sped up, by what else happens on the machine), and the noise is
multiplicative, so on the log scale it is close to symmetric and a t-interval holds up at
small counts. The distribution-free interval of the median needs 8 rounds before a 99%
interval exists at all (the chance that every round falls on one side of the median,
2 x 0.5^n, drops below 1% only at n = 8), which would forbid stopping at 3-7 rounds
however quiet the case is. The figure the tables show stays the median; on the rounds
seen here the geometric mean and the median agree within the interval.

The interval treats rounds as independent; rounds of one run are not (a slow spell of
the machine spans several), so a converged interval is the run's own precision, not
the run-to-run spread (see the report's run-to-run table and ``--bench-repeat``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from bench import stats
from bench.store.schema import BUDGET, CONVERGED, MAX_ROUNDS  # noqa: F401 (the stop reasons)

#: Default half-width of the 99% interval, as a share of the figure.
DEFAULT_PRECISION = 0.02
DEFAULT_CONFIDENCE = 0.99
DEFAULT_MIN_ROUNDS = 3
DEFAULT_MAX_ROUNDS = 30


def interval_halfwidth(times: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> float:
    """Half-width of the ``confidence`` interval of the geometric mean, as a share of it.

    The interval on the log scale is mean +/- h; the share returned is ``exp(h) - 1``
    (the wider, upper side). ``inf`` below two rounds, or where a time is not positive.
    """
    return stats.share_halfwidth(times, confidence)


def rounds_needed(times: Sequence[float], precision: float,
                  confidence: float = DEFAULT_CONFIDENCE) -> int:
    """How many rounds, at the spread seen so far, would bring the interval to ``precision``
    (at least the rounds already run): what a case that stopped on its budget or its
    maximum would have needed, for a reader choosing --bench-max-rounds."""
    n = len(times)
    width = interval_halfwidth(times, confidence)
    if not math.isfinite(width):
        return n + 1
    if width <= precision:
        return n
    # The half-width falls as t(n-1)/sqrt(n); solve by stepping (n stays small).
    _, sd = stats.mean_sd(stats.logs(times))
    target = math.log1p(precision)
    m = n
    while m < 10_000:
        m += 1
        if stats.t_quantile(confidence, m - 1) * sd / math.sqrt(m) <= target:
            return m
    return m


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether to run another round, and if not, why not."""

    stop: bool
    reason: str | None  # converged, budget, max-rounds (None while going on)
    halfwidth: float  # the interval reached so far, a share of the figure


@dataclasses.dataclass(frozen=True)
class StoppingRule:
    """Rounds until the figure is known (see the module's docstring).

    Attributes:
        precision: target half-width of the 99% interval, a share of the figure (0.02).
        min_rounds: timed rounds always run (3).
        max_rounds: timed rounds never exceeded (30).
        confidence: of the interval (0.99).
    """

    precision: float = DEFAULT_PRECISION
    min_rounds: int = DEFAULT_MIN_ROUNDS
    max_rounds: int = DEFAULT_MAX_ROUNDS
    confidence: float = DEFAULT_CONFIDENCE

    def __post_init__(self) -> None:
        if not self.precision > 0:
            raise ValueError(f"precision target must be above 0, got {self.precision!r}")
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValueError(f"need 1 <= min_rounds ({self.min_rounds}) <= max_rounds "
                             f"({self.max_rounds})")

    def fixed(self, rounds: int) -> StoppingRule:
        """A rule that runs exactly ``rounds`` rounds (cases whose round is a whole run)."""
        return dataclasses.replace(self, min_rounds=rounds, max_rounds=rounds)

    def decide(self, times: Sequence[float], spent: float = 0.0,
               allowance: float | None = None) -> Decision:
        """After the timed rounds ``times``: stop, or run another?

        ``spent`` is the case's time so far (its setup included) and ``allowance`` its
        share of the budget (None: no budget). The budget is checked against the time
        the next round would add (the median round so far), so a case stops before it
        overruns rather than after.
        """
        width = interval_halfwidth(times, self.confidence)
        n = len(times)
        if n < self.min_rounds:
            # The one exception to the minimum: rounds so long that the minimum alone
            # would overrun the case's allowance (a pass over the test set at batch 1
            # that takes a minute) stop once the next would pass it, marked "budget".
            if allowance is not None and times:
                longest = max(times)
                if (longest * self.min_rounds > allowance
                        and spent + longest > allowance):
                    return Decision(True, BUDGET, width)
            return Decision(False, None, width)
        if width <= self.precision:
            return Decision(True, CONVERGED, width)
        if n >= self.max_rounds:
            return Decision(True, MAX_ROUNDS, width)
        if allowance is not None:
            next_round = sorted(times)[n // 2] if times else 0.0
            if spent + next_round > allowance:
                return Decision(True, BUDGET, width)
        return Decision(False, None, width)
