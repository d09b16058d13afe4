"""The stopping rule and round sizing on synthetic round times (no framework needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.harness.stopping import (
    BUDGET,
    CONVERGED,
    MAX_ROUNDS,
    StoppingRule,
    interval_halfwidth,
    rounds_needed,
)
from bench.measure.rounds import size_round

pytestmark = pytest.mark.backend_free


def _run(rule: StoppingRule, series, seconds_per_round: float = 0.5,
         allowance: float | None = None):
    """Feed ``series`` round by round as a case would; return (rounds, decision)."""
    times = []
    for t in series:
        times.append(t)
        decision = rule.decide(times, spent=seconds_per_round * len(times),
                               allowance=allowance)
        if decision.stop:
            return len(times), decision
    raise AssertionError("the rule never stopped")


def _noisy(spread: float, n: int = 10_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    return list(np.exp(rng.normal(0.0, spread, n)))


def test_the_interval_is_of_the_geometric_mean_and_shrinks_with_rounds():
    assert interval_halfwidth([1.0]) == math.inf
    assert interval_halfwidth([1.0, 1.0, 1.0]) == 0.0
    few, many = _noisy(0.05)[:4], _noisy(0.05)[:40]
    assert interval_halfwidth(many) < interval_halfwidth(few)
    # t(0.995, 2) = 9.925: three rounds 1%-apart on the log scale give about +-5.7%.
    width = interval_halfwidth([math.exp(-0.01), 1.0, math.exp(0.01)])
    assert width == pytest.approx(math.expm1(9.925 * 0.01 / math.sqrt(3)), rel=1e-3)
    assert interval_halfwidth([1.0, 0.0, 1.0]) == math.inf  # a zero time is no time


def test_a_quiet_series_stops_at_the_minimum_and_a_noisy_one_runs_more():
    rule = StoppingRule(precision=0.02, min_rounds=3, max_rounds=200)
    quiet, _ = _run(rule, _noisy(0.002))
    noisy, decision = _run(rule, _noisy(0.03))
    assert quiet == 3
    assert noisy > quiet and decision.reason == CONVERGED and decision.halfwidth <= 0.02
    assert rounds_needed(_noisy(0.03)[:5], 0.02) > 5


def test_a_series_that_never_settles_stops_on_the_budget_and_says_so():
    rule = StoppingRule(precision=0.02, min_rounds=3, max_rounds=1000)
    rounds, decision = _run(rule, _noisy(0.5), seconds_per_round=0.5, allowance=6.0)
    assert decision.reason == BUDGET and decision.halfwidth > 0.02
    assert rounds * 0.5 <= 6.0  # stopped before the next round would overrun
    rounds, decision = _run(StoppingRule(max_rounds=12), _noisy(0.5))
    assert (rounds, decision.reason) == (12, MAX_ROUNDS)


def test_the_minimum_rounds_run_past_the_budget_unless_a_round_alone_overruns_it():
    rule = StoppingRule(min_rounds=3)
    quick = [0.5 * x for x in _noisy(0.5)]  # rounds of about 0.5 s, allowance 4 s
    times, decision = [], None
    for t in quick:
        times.append(t)
        decision = rule.decide(times, spent=5.0 * len(times), allowance=4.0)
        if decision.stop:
            break
    assert len(times) == 3 and decision.reason == BUDGET  # spent past it, yet 3 rounds
    # Rounds of a minute against 60 s: the minimum alone would take three minutes.
    decision = rule.decide([61.0], spent=70.0, allowance=60.0)
    assert decision.stop and decision.reason == BUDGET
    assert not rule.decide([61.0], spent=70.0, allowance=None).stop


def test_a_fixed_rule_runs_exactly_its_rounds():
    rule = StoppingRule().fixed(1)
    assert _run(rule, [1.0, 1.0])[0] == 1
    with pytest.raises(ValueError, match="min_rounds"):
        StoppingRule(min_rounds=5, max_rounds=3)
    with pytest.raises(ValueError, match="precision"):
        StoppingRule(precision=0)


def _units(per_unit: float, first: float = 0.0):
    calls = []

    def run(n):
        calls.append(n)
        return first + per_unit * n

    return run, calls


def test_round_sizing_reaches_the_target_and_keeps_an_epoch_whole():
    run, calls = _units(0.002, first=0.01)  # an MLP step; 469 steps an epoch: 0.95 s
    assert size_round(run, 0.5, whole=469, whole_max=2.0) == (469, pytest.approx(0.948))
    run, calls = _units(0.01)  # an epoch of 4.7 s is too long: steps lasting the target
    n, seconds = size_round(run, 0.5, whole=469, whole_max=2.0)
    assert 50 <= n < 469 and seconds >= 0.5
    run, calls = _units(0.0006)  # a short epoch (0.28 s): two epochs a round
    assert size_round(run, 0.5, whole=469, whole_max=2.0)[0] == 2 * 469
    run, calls = _units(13.0)  # a 13-second step: one step a round, measured once
    assert size_round(run, 0.5, whole=469, whole_max=2.0) == (1, 13.0) and calls == [1]
    run, calls = _units(1e-4)  # the count is capped
    assert size_round(run, 0.5, most=10)[0] == 10
    run, calls = _units(1e-3)  # calls a round, without a natural unit
    n, seconds = size_round(run, 0.5)
    assert seconds >= 0.5 and n < 600 and len(calls) <= 3
