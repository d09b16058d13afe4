"""Inference: offline throughput over the 10,000 test images at several batch sizes.

The model timed has trained (see the ``trained_for`` fixture), and the predictions of the
timed passes must reach the case's accuracy bar: a broken model cannot win a table.
"""

from __future__ import annotations

import math
import time

from bench.cases import MIN_ACCURACY
from bench.measure import check_predictions, median_seconds, record, timed_rounds

SUITE = "inference"
MIN_TIMED_SECONDS = 0.5
MAX_ROUNDS = 200


def test_inference_throughput(benchmark, case, trained_for, bench_state, dataset):
    trainer = trained_for(case)
    begin = time.perf_counter()
    trainer.predict_all("test", case.batch_size)  # trace and compile this batch size
    compile_seconds = time.perf_counter() - begin
    begin = time.perf_counter()
    trainer.predict_all("test", case.batch_size)  # untimed: sizes the number of rounds
    once = time.perf_counter() - begin
    # A pass can take only milliseconds; enough rounds for half a second of timing keep
    # one scheduler hiccup from setting the median (pytest-benchmark's min_time idea).
    rounds = min(MAX_ROUNDS, max(case.rounds, math.ceil(MIN_TIMED_SECONDS / once)))
    trainer.reset_device_peak()
    predictions = timed_rounds(benchmark, bench_state, case.device, trainer.predict_all,
                               args=("test", case.batch_size), rounds=rounds, warmup_rounds=1)
    accuracy = check_predictions(predictions, dataset.y_test, MIN_ACCURACY[case.model], case.id)
    count = len(dataset.x_test)
    seconds = median_seconds(benchmark)
    gflops = trainer.flops_per_sample * count / seconds / 1e9
    record(benchmark, case, trainer, state=bench_state, energy_seconds=seconds,
           samples_per_second=count / seconds,
           seconds_per_batch=seconds * case.batch_size / count,
           gflops=gflops, compile_seconds=compile_seconds, test_accuracy=accuracy,
           epochs_trained=trainer.bench_epochs_trained)
