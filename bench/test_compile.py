"""Trace and compile time of the train step on its own: what a user waits for at start."""

from __future__ import annotations

from bench.measure import median_seconds, record

SUITE = "compile"


def test_compile_time(benchmark, case, trainer_for):
    trainers = []

    def fresh():  # untimed: a new model, optimizer and step function each round
        trainers.append(trainer_for(case, fresh=True))
        return (trainers[-1],), {}

    benchmark.pedantic(lambda trainer: trainer.compile(), setup=fresh, rounds=case.rounds,
                       warmup_rounds=0)
    assert all(t.compile_seconds and t.compile_seconds > 0 for t in trainers)
    record(benchmark, case, trainers[-1], compile_seconds=median_seconds(benchmark))
