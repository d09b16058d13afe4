"""Time to accuracy (MLPerf Training's measure): wall time, compile included, to a target."""

from __future__ import annotations

import pytest

from bench.measure import record, timed_rounds

SUITE = "tta"


def test_time_to_accuracy(benchmark, case, dataset, bench_state):
    from fashion_core import train
    from fashion_core.config import TrainConfig

    target, cap = case.target
    config = TrainConfig(model=case.model, epochs=cap, batch_size=case.batch_size,
                         precision=case.policy, device=case.device, jit=case.xla)
    results = []

    def run():  # builds and compiles the trainer inside the timed region
        results.append(train.train(config, dataset, target_accuracy=target,
                                   stop_at_target=True))

    timed_rounds(benchmark, bench_state, case.device, run, rounds=case.rounds, warmup_rounds=0)
    result = results[-1]
    if result.time_to_accuracy is None:
        pytest.fail(f"did not reach test accuracy {target} within {cap} epochs "
                    f"(last {result.test_accuracy:.4f})")
    record(benchmark, case, state=bench_state, target_accuracy=target, reached=True,
           epochs=len(result.epochs),
           seconds_to_accuracy=result.time_to_accuracy, final_accuracy=result.test_accuracy,
           compile_seconds=result.compile_seconds, device_kind=result.device.split(":")[0].upper(),
           device_name=result.device_model)
