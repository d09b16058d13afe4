"""Time to accuracy (MLPerf Training's measure): wall time, compile included, to a target."""

from __future__ import annotations

import time

import pytest

from bench.measure.rounds import record, timed_rounds

SUITE = "tta"


def test_time_to_accuracy(benchmark, case, dataset, bench_state):
    from fashion_core import train
    from fashion_core.config import TrainConfig

    target, cap = case.target
    config = TrainConfig(model=case.model, epochs=cap, batch_size=case.batch_size,
                         precision=case.policy, device=case.device, jit=case.xla)
    results = []
    # Under a budget, training stops once the case's share is spent (an epoch more
    # would pass it): the row says it stopped on the budget, not that it failed.
    allowance = bench_state.allowance()
    started = bench_state.case_started or time.perf_counter()
    spent = []

    def out_of_time(epoch) -> bool:
        over = allowance is not None and (
            time.perf_counter() - started + epoch.seconds > allowance)
        spent.append(over)
        return over

    def run():  # builds and compiles the trainer inside the timed region
        results.append(train.train(config, dataset, target_accuracy=target,
                                   stop_at_target=True, stop_when=out_of_time))

    timed_rounds(benchmark, bench_state, case.device, run, rounds=case.rounds, warmup_rounds=0)
    result = results[-1]
    reached = result.time_to_accuracy is not None
    if not reached and any(spent):
        benchmark.extra_info["stop_reason"] = "budget"
    elif not reached:
        pytest.fail(f"did not reach test accuracy {target} within {cap} epochs "
                    f"(last {result.test_accuracy:.4f})")
    record(benchmark, case, state=bench_state, target_accuracy=target, reached=reached,
           epochs=len(result.epochs),
           seconds_to_accuracy=result.time_to_accuracy, final_accuracy=result.test_accuracy,
           compile_seconds=result.compile_seconds, device_kind=result.device.split(":")[0].upper(),
           device_name=result.device_model)
