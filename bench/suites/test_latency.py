"""Single-sample latency, MLPerf's "single stream": one image in, its logits back on the host.

The model has trained (``trained_for``), and the classes of the timed calls must reach the
case's accuracy bar on the images they were given.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bench.harness.cases import MIN_ACCURACY
from bench.measure.rounds import check_predictions, record, round_times, timed_rounds

SUITE = "latency"
MIN_CALLS = 300  # timed single-sample calls at the least: p99 rests on the slowest three
MAX_CALLS_PER_ROUND_LIMIT = 100  # the most calls: this many times --bench-max-rounds


def test_single_sample_latency(benchmark, case, trained_for, bench_state, dataset):
    trainer = trained_for(case)
    images = dataset.x_test
    position = iter(range(10**9))
    given: list[int] = []  # the image index of each call, in order
    outputs: list[np.ndarray] = []

    def next_image():  # untimed: a different image each call, already on the host
        i = next(position) % len(images)
        given.append(i)
        return (images[i:i + 1],), {}

    def predict(batch):
        logits = trainer.predict_batch(batch)
        outputs.append(logits)
        return logits

    # A round is one call (the percentiles are of single calls); calls go on until the
    # median is known as the session's rule asks, at least MIN_CALLS of them.
    rule = bench_state.stopping
    rule = dataclasses.replace(rule, min_rounds=max(MIN_CALLS, rule.min_rounds),
                               max_rounds=max(MIN_CALLS,
                                              MAX_CALLS_PER_ROUND_LIMIT * rule.max_rounds))
    warmup = 20
    timed_rounds(benchmark, bench_state, case.device, predict, setup=next_image, rule=rule,
                 warmup_rounds=warmup)
    logits = np.concatenate(outputs[warmup:])
    calls = len(round_times(benchmark))
    assert logits.shape == (calls, 10) and np.all(np.isfinite(logits)), logits.shape
    accuracy = check_predictions(np.argmax(logits, axis=1), dataset.y_test[given[warmup:]],
                                 MIN_ACCURACY[case.model], case.id)
    times_ms = np.array(round_times(benchmark)) * 1e3
    p50, p90, p99 = np.percentile(times_ms, [50, 90, 99])
    record(benchmark, case, trainer, state=bench_state, energy_seconds=float(p50) / 1e3,
           latency_p50_ms=float(p50), latency_p90_ms=float(p90), latency_p99_ms=float(p99),
           samples_per_second=1e3 / float(p50), test_accuracy=accuracy, calls_per_round=1,
           epochs_trained=trainer.bench_epochs_trained)
