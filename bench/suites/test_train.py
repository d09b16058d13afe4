"""Training throughput: steady-state time per epoch, from rounds sized by time.

A round is a whole epoch where an epoch is short (at most 4 round targets), else as many
steps as last one round target (``--bench-round-time``; a 13-second XLA:CPU convolution
step is one step a round). The row says which (``steps_per_round``); the epoch time is
the round's time scaled to an epoch either way.
"""

from __future__ import annotations

import time

import numpy as np

from bench.harness.plan import EPOCH_ROUND_MAX
from bench.measure.rounds import (
    check_finite_and_falling,
    median_seconds,
    record,
    size_round,
    timed_rounds,
)

SUITE = "train"


def run_span(trainer, steps: int):
    """Train ``steps`` steps in the current sample order, epoch after epoch past its end;
    the stats of every epoch's span, read back (a float per span) before returning."""
    spans = []
    left = steps
    while left > 0:
        now = min(left, trainer.steps_per_epoch)
        spans.append(trainer.run_steps(0, now))
        left -= now
    return spans


def test_train_epoch(benchmark, case, trainer_for, bench_state):
    trainer = trainer_for(case)
    compile_seconds = trainer.compile()  # traced and compiled before any timed round
    rng = np.random.default_rng(0)
    rounds = []

    def new_order():  # untimed: each round trains on a fresh shuffle
        trainer.set_order(rng.permutation(trainer.n_train))

    def timed_span(n: int) -> float:
        new_order()
        begin = time.perf_counter()
        run_span(trainer, n)
        return time.perf_counter() - begin

    target = bench_state.round_seconds
    most = case.steps  # a case may fix its span (None: sized by time)
    steps, _ = (most, timed_span(most)) if most else size_round(
        timed_span, target, whole=trainer.steps_per_epoch,
        whole_max=EPOCH_ROUND_MAX * target)

    def run():
        spans = run_span(trainer, steps)
        rounds.append(spans)
        return spans

    trainer.reset_device_peak()
    # Statistics in epochs (a round of k epochs, or of a part of one, counts as such).
    epochs_per_round = steps / trainer.steps_per_epoch
    timed_rounds(benchmark, bench_state, case.device, run, setup=new_order,
                 warmup_rounds=0, round_seconds=target,  # sizing's last span warmed up
                 per_round=epochs_per_round)

    assert all(s.bad_step < 0 for spans in rounds for s in spans), \
        "a step produced a NaN/inf loss"
    losses = [sum(s.loss_sum for s in spans) / sum(s.samples for s in spans)
              for spans in rounds]
    check_finite_and_falling([losses[0], min(losses[1:] or losses)], case.id)
    seconds_per_epoch = median_seconds(benchmark)
    samples = sum(s.samples for s in rounds[-1])
    per_second = samples / (seconds_per_epoch * epochs_per_round)
    gflops = trainer.train_flops_per_epoch / trainer.n_train * per_second / 1e9
    record(benchmark, case, trainer, state=bench_state, energy_seconds=seconds_per_epoch,
           samples_per_second=per_second, seconds_per_epoch=seconds_per_epoch,
           steps_per_round=steps, samples_per_round=samples, gflops=gflops,
           compile_seconds=compile_seconds, loss_first=losses[0], loss_last=losses[-1])
