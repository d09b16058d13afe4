"""Inference: offline throughput over the 10,000 test images at several batch sizes.

The model timed has trained (see the ``trained_for`` fixture), and the predictions of the
timed passes must reach the case's accuracy bar: a broken model cannot win a table. A
round is as many passes over the test set as last the round target (``calls_per_round``;
one where a pass is longer); the figures are per pass.
"""

from __future__ import annotations

import time

from bench.harness.cases import MIN_ACCURACY
from bench.measure.rounds import check_predictions, median_seconds, record, size_round, timed_rounds

SUITE = "inference"


def test_inference_throughput(benchmark, case, trained_for, bench_state, dataset):
    trainer = trained_for(case)
    begin = time.perf_counter()
    trainer.predict_all("test", case.batch_size)  # trace and compile this batch size
    compile_seconds = time.perf_counter() - begin
    outputs = []

    def passes(n: int):
        for _ in range(n):
            outputs.append(trainer.predict_all("test", case.batch_size))
        return outputs[-1]

    def timed_passes(n: int) -> float:
        begin = time.perf_counter()
        passes(n)
        return time.perf_counter() - begin

    target = bench_state.round_seconds
    calls, _ = size_round(timed_passes, target)  # its last run is the warm-up round
    outputs.clear()
    trainer.reset_device_peak()
    predictions = timed_rounds(benchmark, bench_state, case.device, passes, args=(calls,),
                               warmup_rounds=0, round_seconds=target, per_round=calls)
    accuracy = check_predictions(predictions, dataset.y_test, MIN_ACCURACY[case.model], case.id)
    count = len(dataset.x_test)
    seconds = median_seconds(benchmark)  # one pass over the test set
    gflops = trainer.flops_per_sample * count / seconds / 1e9
    record(benchmark, case, trainer, state=bench_state, energy_seconds=seconds,
           samples_per_second=count / seconds,
           seconds_per_batch=seconds * case.batch_size / count, calls_per_round=calls,
           gflops=gflops, compile_seconds=compile_seconds, test_accuracy=accuracy,
           epochs_trained=trainer.bench_epochs_trained)
