"""Data-parallel scaling with tf.distribute: throughput per replica count, accuracy beside it.

Each round is one epoch (``samples // global batch`` steps); after the timed rounds the
test accuracy shows the training is still right. Scaling efficiency (throughput with N
replicas over N times that with one) is computed by the report.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.conftest import BACKEND
from bench.measure.rounds import check_finite_and_falling, median_seconds, record, timed_rounds

SUITE = "scaling"


def test_scaling_epoch(benchmark, case, dataset, bench_state):
    if BACKEND != "tensorflow":
        pytest.skip("tf.distribute is TensorFlow's")
    from fashion_core.backends import tf_distributed as distributed
    from fashion_core.config import TrainConfig

    # The case's device decides the replicas' kind: cpu-...-r2 runs on two logical CPU
    # devices even on a GPU host, gpu0-...-r2 on two GPUs.
    config = TrainConfig(model=case.model, batch_size=case.batch_size, precision=case.policy,
                         device=case.device, jit=case.xla, seed=0)
    try:
        trainer = distributed.make_trainer(config, dataset, case.strategy, case.replicas)
    except distributed.OnePerProcess as error:
        pytest.skip(str(error))  # the other device's multi-worker case ran in this process
    try:
        _run(benchmark, case, trainer, bench_state)
    finally:
        trainer.close()  # the next case must not inherit its memory


def _run(benchmark, case, trainer, bench_state):
    compile_seconds = trainer.compile()
    rng = np.random.default_rng(0)
    rounds = []

    timed_rounds(benchmark, bench_state, case.device,
                 lambda: rounds.append(trainer.run_steps(0, trainer.steps_per_epoch)),
                 setup=lambda: trainer.set_order(rng.permutation(trainer.n_train)),
                 rounds=case.rounds, warmup_rounds=1)
    assert all(s.bad_step < 0 for s in rounds), "a step produced a NaN/inf loss"
    losses = [s.loss_sum / s.samples for s in rounds]
    check_finite_and_falling(losses, case.id)
    seconds = median_seconds(benchmark)
    record(benchmark, case, trainer, state=bench_state, energy_seconds=seconds,
           samples_per_second=trainer.samples_per_epoch / seconds,
           seconds_per_epoch=seconds, per_replica_batch=case.batch_size,
           global_batch=trainer.global_batch, test_accuracy=trainer.evaluate(),
           epochs=case.rounds + 1, compile_seconds=compile_seconds,
           loss_first=losses[0], loss_last=losses[-1])
