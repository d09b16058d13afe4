"""Inference: offline throughput over the 10,000 test images at several batch sizes."""

from __future__ import annotations

import math
import time

from bench.measure import check_predictions, median_seconds, record

SUITE = "inference"
MIN_TIMED_SECONDS = 0.5
MAX_ROUNDS = 200


def test_inference_throughput(benchmark, case, trainer_for, bench_state, dataset):
    trainer = trainer_for(case, batch_size=min(128, len(dataset.x_train)))
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
    predictions = benchmark.pedantic(trainer.predict_all, args=("test", case.batch_size),
                                     rounds=rounds, warmup_rounds=1)
    count = len(dataset.x_test)
    check_predictions(predictions, count)
    seconds = median_seconds(benchmark)
    gflops = trainer.flops_per_sample * count / seconds / 1e9
    record(benchmark, case, trainer,
           samples_per_second=count / seconds,
           seconds_per_batch=seconds * case.batch_size / count,
           gflops=gflops, peak_fraction=gflops / bench_state.gflops(case.device),
           compile_seconds=compile_seconds)
