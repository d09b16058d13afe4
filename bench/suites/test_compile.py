"""Trace and compile time of the train step on its own: what a user waits for at start.

Only where something is compiled (``Case.compiles``); elsewhere the case is skipped with
the reason, since timing a step that runs op by op would measure nothing.
"""

from __future__ import annotations

from bench.measure.rounds import median_seconds, record, timed_rounds

SUITE = "compile"


def test_compile_time(benchmark, case, trainer_for, bench_state):
    trainers = []

    def fresh():  # untimed: a new model, optimizer and step function each round
        trainers.append(trainer_for(case, fresh=True))
        return (trainers[-1],), {}

    timed_rounds(benchmark, bench_state, case.device, lambda trainer: trainer.compile(),
                 setup=fresh, rounds=case.rounds, warmup_rounds=0)
    assert all(t.compile_seconds and t.compile_seconds > 0 for t in trainers)
    record(benchmark, case, trainers[-1], state=bench_state,
           compile_seconds=median_seconds(benchmark))
    for trainer in trainers:
        trainer.close()  # fresh trainers are this case's alone
