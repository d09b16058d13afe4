"""Training throughput: steady-state time per epoch (or per fixed span of steps)."""

from __future__ import annotations

import numpy as np

from bench.measure import check_finite_and_falling, median_seconds, record, timed_rounds

SUITE = "train"


def test_train_epoch(benchmark, case, trainer_for, bench_state):
    trainer = trainer_for(case)
    compile_seconds = trainer.compile()  # traced and compiled before any timed round
    steps = min(case.steps or trainer.steps_per_epoch, trainer.steps_per_epoch)
    rng = np.random.default_rng(0)
    rounds = []

    def new_order():  # untimed: each round trains on a fresh shuffle
        trainer.set_order(rng.permutation(trainer.n_train))

    def run():
        stats = trainer.run_steps(0, steps)  # returns after reading the sums back
        rounds.append(stats)
        return stats

    trainer.reset_device_peak()
    timed_rounds(benchmark, bench_state, case.device, run, setup=new_order,
                 rounds=case.rounds, warmup_rounds=1)

    assert all(s.bad_step < 0 for s in rounds), "a step produced a NaN/inf loss"
    losses = [s.loss_sum / s.samples for s in rounds]
    check_finite_and_falling(losses, case.id)
    seconds = median_seconds(benchmark)
    samples = rounds[-1].samples
    per_second = samples / seconds
    flops = trainer.train_flops_per_epoch / trainer.n_train * samples
    gflops = flops / seconds / 1e9
    seconds_per_epoch = seconds * trainer.n_train / samples
    record(benchmark, case, trainer, state=bench_state, energy_seconds=seconds_per_epoch,
           samples_per_second=per_second, seconds_per_epoch=seconds_per_epoch,
           steps_per_round=steps, samples_per_round=samples, gflops=gflops,
           compile_seconds=compile_seconds, loss_first=losses[0], loss_last=losses[-1])
