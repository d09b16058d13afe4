"""What a run will cost, before it starts; and how a budget is shared among its cases.

The estimate of a case (:func:`estimate_case`) is its setup (build, compile, the training
an inference case needs first) plus its rounds: after the warm-up, the expected count of
timed rounds, each lasting the round target or one unit of work where a unit is longer
(a 13-second XLA:CPU convolution step). Unit times come from the FLOPs of the model and
this session's calibrated peak, at a share of peak that suits the case's kind (measured on
the 2-core machines: see ``EFFICIENCY``). Where this machine's earlier result files hold
the same case with its wall time (``case_seconds``), that time is used instead; and the
model's estimates are scaled by how far it missed on the cases history knows.

Under a budget (``--bench-budget``) the plan first leaves out what does not fit even at
the minimum rounds, the least informative and most expensive first (:func:`make_plan`);
while the run goes, each case's share of what is left is in proportion to its estimate
(:meth:`Budget.start`), and a case that would start past the budget is left out
then, with its reason. A left-out case is listed in the result file
(``fashion_bench_not_run``) and the report's "Not run" section.
"""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.harness.cases import Case
from bench.store.results import ResultFileError, read_result, timing_rows

#: The round target's default: a round lasts at least this long (seconds).
DEFAULT_ROUND_SECONDS = 0.5
#: An epoch stays one round's unit while it takes at most this many round targets.
EPOCH_ROUND_MAX = 4.0
#: Share of the dtype's calibrated peak a unit of work reaches, by kind (the 2-core
#: AVX2 and AVX-512 machines' quick matrices: MLP train 0.56-0.83 with XLA, 0.19-0.27
#: without; CNN 0.22-0.45 without XLA; inference 0.35-0.9, b1 0.1-0.2). XLA:CPU
#: convolutions: a 13.5-second step at batch 4096 on the AVX2 machine, 0.06 of its peak.
EFFICIENCY = {("mlp", True): 0.55, ("mlp", False): 0.22, ("cnn", True): 0.06,
              ("cnn", False): 0.3}
#: Seconds a case spends before its rounds, by suite: build and compile (2-core machines:
#: compile 0.3-5 s), sizing the round (about two rounds' time, added separately).
SETUP_SECONDS = {"train": 2.0, "inference": 1.0, "latency": 0.5, "tta": 2.0, "compile": 0.5,
                 "baseline": 2.0, "scaling": 2.0}
#: Timed rounds a case is expected to run when history does not say (the rule's minimum
#: is 3; rounds of most cases agree within a few percent, some scatter).
EXPECTED_ROUNDS = 8
#: Latency: calls a case times at the least, and is expected to.
LATENCY_CALLS = (300, 600)
TRAIN_SAMPLES = 60_000
TEST_SAMPLES = 10_000
#: Order in which a budget leaves cases out: lowest first, then the most expensive.
#: Known-slow paths (measured once, with a note), then time-to-accuracy (whole
#: trainings), then the far ends of the batch sweeps (kept: the batch sizes every matrix
#: has, 1, 128 and 1024), then reduced precision and no-XLA variants, then the rest.
_KEPT_BATCHES = (1, 128, 1024)


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What one case is expected to cost, in seconds."""

    case: Case
    setup: float  # before the rounds: build, compile, sizing, training it needs
    round: float  # one round
    rounds_min: int  # warm-up excluded
    rounds_expected: int
    source: str  # "history" or "model"
    history: float | None = None  # this machine's earlier wall time of the case
    cap: float | None = None  # --bench-case-time: no round starts past it (minimum done)

    @property
    def minimum(self) -> float:
        if self.history is not None:
            # History times a case at the rounds it then needed; its minimum rounds
            # are a part of that (the setup is not): 0.6 of it, a guess on the safe side.
            return self.history * 0.6
        return self.setup + self.rounds_min * self.round

    @property
    def expected(self) -> float:
        seconds = (self.history if self.history is not None
                   else self.setup + self.rounds_expected * self.round)
        if self.cap is not None:  # the last round may start just before the cap
            seconds = min(seconds, max(self.minimum, self.cap + self.round))
        return seconds


def flops_per_sample(model: str) -> tuple[int, int]:
    """(forward, train) FLOPs per sample of ``model`` (built once, cached)."""
    if model not in _FLOPS:
        from fashion_core import models

        built = models.build(model)
        _FLOPS[model] = (models.flops_per_sample(built), models.train_flops_per_sample(built))
    return _FLOPS[model]


_FLOPS: dict[str, tuple[int, int]] = {}


def _rate(case: Case, peak_gflops: float, batch: int) -> float:
    """FLOP/s the case's unit of work is expected to reach."""
    efficiency = EFFICIENCY[(case.model, case.xla)]
    if not case.device.startswith("cpu"):
        efficiency = 0.3  # small models use a fraction of a GPU; compile dominates there
    # Small batches leave the cores idle between small products.
    efficiency *= min(1.0, 0.35 + batch / 256)
    if case.precision != "fp32" and case.device.startswith("cpu"):
        efficiency *= 0.8  # the 2-core machines' bf16/fp16 calibrations: 0.8 of float32
        if case.model == "cnn" and case.precision == "fp16":
            efficiency /= 200  # no fast float16 convolution on a CPU (bench.harness.cases)
    return peak_gflops * 1e9 * efficiency


def estimate_case(case: Case, peak_gflops: float, round_seconds: float = DEFAULT_ROUND_SECONDS,
                  min_rounds: int = 3, max_rounds: int = 30,
                  history: dict | None = None, case_time: float | None = None) -> Estimate:
    """The expected cost of ``case`` (see the module's docstring); ``case_time``: the
    --bench-case-time that caps the rounds of a case once its minimum is done."""
    estimate = _model_estimate(case, peak_gflops, round_seconds, min_rounds, max_rounds)
    if case_time is not None and case.rounds is None:  # fixed rounds run whatever the cap
        estimate = dataclasses.replace(estimate, cap=case_time)
    known = (history or {}).get((case.suite, case.id))
    if known:
        return dataclasses.replace(estimate, source="history", history=known)
    return estimate


def _model_estimate(case: Case, peak_gflops: float, round_seconds: float, min_rounds: int,
                    max_rounds: int) -> Estimate:
    forward, train = flops_per_sample(case.model)
    expected = min(max_rounds, max(min_rounds, EXPECTED_ROUNDS))
    setup = SETUP_SECONDS[case.suite]
    if case.suite in ("train", "scaling", "baseline", "tta"):
        batch = case.batch_size
        step = batch * train / _rate(case, peak_gflops, batch)
        epoch = step * math.ceil(TRAIN_SAMPLES / batch)
        if case.variant == "tutorial-eager":
            epoch *= 20  # the eager loop: 0.011-0.016 of peak against 0.23 for fit
        if case.suite == "tta":
            cap = case.target[1]
            epochs = cap / 2  # the quick matrices: MLP 8 of 20 epochs, CNN 5-7 of 15
            return Estimate(case, setup + epochs * (epoch + 0.1), 0.0, 0, 0, "model")
        if case.suite in ("scaling", "baseline"):
            rounds = case.rounds or 3
            one = epoch if not case.steps else step * case.steps
            return Estimate(case, setup, one, rounds + 1, rounds + 1, "model")
        unit = epoch if epoch <= EPOCH_ROUND_MAX * round_seconds else step
        one = max(round_seconds, unit) if unit == step else max(
            unit, unit * math.ceil(round_seconds / unit))
        setup += 2 * one if unit < round_seconds else one  # sizing: its last run warms up
        return Estimate(case, setup, one, min_rounds, expected, "model")
    if case.suite == "compile":
        rounds = case.rounds or 3
        return Estimate(case, setup, 1.0 + (3.0 if case.xla else 0.0), rounds, rounds, "model")
    # Inference and latency time a trained model: about one epoch at batch 128 first
    # (shared by the cases of one model, precision and compile mode; counted once each).
    train_epoch = 128 * train / _rate(case, peak_gflops, 128) * math.ceil(TRAIN_SAMPLES / 128)
    setup += 0.25 * (2 * train_epoch + 1.0)  # shared with the group: a share of it
    if case.suite == "latency":
        call = forward / _rate(case, peak_gflops, 1) + 2e-4  # plus the call's overhead
        low, typical = LATENCY_CALLS
        return Estimate(case, setup, call, low, typical, "model")
    batch = case.batch_size
    per_pass = (TEST_SAMPLES * forward / _rate(case, peak_gflops, batch)
                + math.ceil(TEST_SAMPLES / batch) * 1e-4)
    one = max(per_pass, per_pass * math.ceil(round_seconds / per_pass))
    setup += 2 * one
    return Estimate(case, setup, one, min_rounds, expected, "model")


def history_seconds(folder: Path, index=None) -> dict:
    """{(suite, case id): median wall seconds} over this machine's result files that
    recorded ``case_seconds`` (schema 3 and later), rows that ran and were timed alone.

    ``index``: a :class:`bench.report.index.ResultsIndex` to ask (each new file read once,
    the rest from the index); None, or an index that fails, reads the files. A file that
    is not a result file is passed over: the estimate then falls back on the model."""
    if index is not None:
        try:
            return index.case_seconds(folder)
        except Exception as error:  # noqa: BLE001 - a cache: any failure reads the files
            index.say(f"note: the plan's history read from the files: the results index "
                      f"failed ({type(error).__name__}: {error})")
    seen: dict[tuple[str, str], list[float]] = {}
    if not folder.is_dir():
        return {}
    for path in sorted(folder.glob("*.json")):
        try:
            document = read_result(path, check=False)  # its own machine's, any schema
        except ResultFileError:
            continue
        for row, _, _ in timing_rows(document):
            seconds = row.get("case_seconds")
            if (isinstance(seconds, (int, float)) and seconds > 0 and not row.get("contended")
                    and row.get("status", "ok") == "ok"):
                seen.setdefault((row.get("suite"), row.get("case")), []).append(float(seconds))
    return {key: statistics.median(values) for key, values in seen.items()}


@dataclasses.dataclass
class Plan:
    """The cases a run will time, their estimates, and what it leaves out with why."""

    estimates: list[Estimate]
    left_out: list[tuple[Case, str]]
    budget: float | None
    scale: float = 1.0  # history's wall times over the model's, for the model's estimates
    overhead: float = 0.0  # the session's own: framework start, calibrations, saving

    def expected(self, estimate: Estimate) -> float:
        return estimate.expected if estimate.source == "history" else (
            estimate.expected * self.scale)

    def minimum(self, estimate: Estimate) -> float:
        return estimate.minimum if estimate.source == "history" else (
            estimate.minimum * self.scale)

    @property
    def total(self) -> float:
        return self.overhead + sum(self.expected(e) for e in self.estimates)

    def render(self) -> list[str]:
        """The plan as lines: cases and minutes by suite, the total, the budget."""
        lines = []
        suites: dict[str, list[Estimate]] = {}
        for e in self.estimates:
            suites.setdefault(e.case.suite, []).append(e)
        known = sum(1 for e in self.estimates if e.source == "history")
        for suite, members in suites.items():
            seconds = sum(self.expected(e) for e in members)
            lines.append(f"  {suite:<10} {len(members):4d} case(s)  ~{format_duration(seconds)}")
        total = self.total
        budget = (f"; budget {format_duration(self.budget)}" if self.budget is not None
                  else "")
        lines.append(f"  estimate: ~{format_duration(total)} for {len(self.estimates)} "
                     f"case(s) ({known} from this machine's earlier runs, the rest from "
                     f"FLOPs and the calibrated peak){budget}")
        if self.left_out:
            lines.append(f"  left out ({len(self.left_out)}):")
            for case, reason in self.left_out:
                lines.append(f"    {case.suite} {case.id}: {reason}")
        return lines


def _leave_out_order(estimate: Estimate, minimum: float) -> tuple:
    case = estimate.case
    if case.note:
        rank = 0  # a known-slow path (bench.harness.cases.known_slow)
    elif case.suite == "tta":
        rank = 1
    elif case.batch_size not in _KEPT_BATCHES:
        rank = 2
    elif case.precision != "fp32" or not case.xla:
        rank = 3
    else:
        rank = 4
    return (rank, -minimum)


def make_plan(estimates: Sequence[Estimate], budget: float | None,
              scale: float = 1.0, overhead: float = 0.0) -> Plan:
    """The plan for ``estimates`` under ``budget`` seconds (None: no budget): leave out
    cases, least informative and most expensive first, until the rest fits at their
    minimum rounds. ``overhead``: the session's own seconds (start, calibration, end)."""
    plan = Plan(list(estimates), [], budget, scale, overhead)
    if budget is None:
        return plan
    order = sorted(plan.estimates, key=lambda e: _leave_out_order(e, plan.minimum(e)))
    need = overhead + sum(plan.minimum(e) for e in plan.estimates)
    dropped = set()
    for e in order:
        if need <= budget:
            break
        dropped.add(id(e))
        need -= plan.minimum(e)
        plan.left_out.append((e.case, f"over the budget of {format_duration(budget)}: the "
                                      f"plan fits without it (est. "
                                      f"{format_duration(plan.minimum(e))} at the least)"))
    plan.estimates = [e for e in plan.estimates if id(e) not in dropped]
    return plan


def model_scale(estimates: Iterable[Estimate], history: dict, peaks: dict[str, float],
                options: dict | None = None) -> float:
    """Median of history's wall time over the model's estimate, over the cases both know
    (1.0 where none): the model's misses on this machine, carried to the cases it alone
    estimates. ``peaks``: calibrated GFLOP/s by device; ``options``: estimate_case's."""
    ratios = []
    for e in estimates:
        known = history.get((e.case.suite, e.case.id))
        if known:
            model = estimate_case(e.case, peaks[e.case.device], **(options or {})).expected
            if model > 0:
                ratios.append(known / model)
    return min(4.0, max(0.25, statistics.median(ratios))) if ratios else 1.0


class Budget:
    """The run's clock against its budget: each case's share of what is left."""

    def __init__(self, plan: Plan, started: float | None = None) -> None:
        self.plan = plan
        self.started = time.monotonic() if started is None else started
        self._pending = {e.case: e for e in plan.estimates}

    def pending(self) -> list[Estimate]:
        """The cases not yet started, in order."""
        return list(self._pending.values())

    def remaining(self) -> float | None:
        if self.plan.budget is None:
            return None
        # Less the session's end (half its overhead: the second calibration, saving).
        return self.plan.budget - (time.monotonic() - self.started) - self.plan.overhead / 2

    def start(self, case: Case) -> tuple[float | None, str | None]:
        """At the start of ``case``: (its allowance in seconds, None) or (None, the
        reason to leave it out). Without a budget: (None, None)."""
        estimate = self._pending.pop(case, None)
        remaining = self.remaining()
        if remaining is None or estimate is None:
            return None, None
        minimum = self.plan.minimum(estimate)
        if remaining < minimum:
            return None, (f"the budget ({format_duration(self.plan.budget)}) was spent: "
                          f"{format_duration(max(0.0, remaining))} left, the case needs "
                          f"about {format_duration(minimum)}")
        expected = self.plan.expected(estimate)
        after = sum(self.plan.expected(e) for e in self._pending.values())
        share = remaining * expected / max(expected + after, 1e-9)
        return max(share, minimum), None


def format_duration(seconds: float) -> str:
    """'45 s', '12.5 min', '2.1 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|sec|m|min|h)?\s*$")


def parse_duration(text: str) -> float:
    """'45m', '1.5h', '600s', '600' -> seconds. ValueError names what it expected."""
    match = _DURATION.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: use e.g. 45m, 1.5h or 600s")
    value = float(match.group(1))
    unit = match.group(2) or "s"
    return value * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
