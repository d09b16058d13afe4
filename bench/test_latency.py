"""Single-sample latency, MLPerf's "single stream": one image in, its logits back on the host."""

from __future__ import annotations

import numpy as np

from bench.measure import record, round_times

SUITE = "latency"
CALLS = 300  # timed single-sample calls; p99 rests on the slowest three


def test_single_sample_latency(benchmark, case, trainer_for, dataset):
    trainer = trainer_for(case, batch_size=min(128, len(dataset.x_train)))
    images = dataset.x_test
    position = iter(range(10**9))

    def next_image():  # untimed: a different image each call, already on the host
        i = next(position) % len(images)
        return (images[i:i + 1],), {}

    logits = benchmark.pedantic(trainer.predict_batch, setup=next_image,
                                rounds=CALLS, warmup_rounds=20)
    assert logits.shape == (1, 10) and np.all(np.isfinite(logits)), logits
    times_ms = np.array(round_times(benchmark)) * 1e3
    p50, p90, p99 = np.percentile(times_ms, [50, 90, 99])
    record(benchmark, case, trainer, latency_p50_ms=float(p50), latency_p90_ms=float(p90),
           latency_p99_ms=float(p99), samples_per_second=1e3 / float(p50))
