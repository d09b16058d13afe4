"""Reference loops the compiled train step is measured against, in the same run.

- keras-fit: ``model.fit`` with ``steps_per_execution`` set to a whole epoch and XLA as
  the case says: the best Keras offers out of the box. It runs on whichever Keras
  backend is active; with torch, ``jit_compile`` means ``torch.compile`` and Keras
  allows one step per execution only.
- tutorial-eager: the tutorial's loop (``tf.data`` map/batch/shuffle, an eager
  ``GradientTape`` step per batch), timed over a fixed number of steps.
Both train the same model with Adam 1e-3 on the same data; times are per epoch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.conftest import BACKEND
from bench.measure.rounds import check_finite_and_falling, median_seconds, record, timed_rounds

SUITE = "baseline"


def _fit_rounds(case, dataset):
    import keras

    from fashion_core import models
    from fashion_core.backends.keras_common import set_random_seed

    set_random_seed(0)  # keras.utils.set_random_seed would import TensorFlow on any backend
    model = models.build(case.model)
    steps = math.ceil(len(dataset.x_train) / case.batch_size)
    per_execution = 1 if keras.config.backend() == "torch" else steps  # torch refuses more
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=per_execution, jit_compile=case.xla)
    x = np.asarray(models.preprocess(dataset.x_train, case.model, np), dtype=np.float32)
    y = dataset.y_train.astype(np.int32)
    losses = []

    def epoch():
        history = model.fit(x, y, batch_size=case.batch_size, epochs=1, shuffle=True,
                            verbose=0)
        losses.append(float(history.history["loss"][-1]))

    return epoch, losses, steps


def _tutorial_rounds(case, dataset):
    if BACKEND != "tensorflow":
        pytest.skip("the tutorial's loop is TensorFlow code")
    import keras
    import tensorflow as tf

    from fashion_core import models

    keras.utils.set_random_seed(0)
    model = models.build(case.model)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)

    def processing(x, y):  # as the tutorial: scale, cast
        return tf.cast(x, tf.float32) / 255.0, tf.cast(y, tf.int32)

    y = tf.one_hot(dataset.y_train, depth=10)
    ds = (tf.data.Dataset.from_tensor_slices((dataset.x_train, y)).map(processing)
          .batch(case.batch_size).shuffle(10000))
    batches = iter(ds.repeat())
    losses = []

    def steps():
        total = 0.0
        for _ in range(case.steps):
            x, y_batch = next(batches)
            x = tf.reshape(x, [-1, 28 * 28])
            with tf.GradientTape() as tape:
                logits = model(x)
                loss = tf.reduce_mean(tf.losses.categorical_crossentropy(
                    y_batch, logits, from_logits=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            total += float(loss)  # the tutorial prints losses: a read-back every step
        losses.append(total / case.steps)

    return steps, losses, math.ceil(len(dataset.x_train) / case.batch_size)


def test_baseline_epoch(benchmark, case, dataset, bench_state):
    from fashion_core import models
    from fashion_core.host import cpu_model

    if case.device != "cpu":
        pytest.skip("baselines are measured on the CPU only")
    if case.variant == "keras-fit":
        run, losses, steps_per_epoch = _fit_rounds(case, dataset)
        steps = steps_per_epoch
    else:
        run, losses, steps_per_epoch = _tutorial_rounds(case, dataset)
        steps = case.steps
    timed_rounds(benchmark, bench_state, case.device, run, rounds=case.rounds, warmup_rounds=1)
    check_finite_and_falling(losses, case.id)
    seconds = median_seconds(benchmark)
    seconds_per_epoch = seconds * steps_per_epoch / steps
    n = len(dataset.x_train)
    gflops = models.train_flops_per_sample(models.build(case.model)) * n / seconds_per_epoch / 1e9
    record(benchmark, case, state=bench_state, energy_seconds=seconds_per_epoch,
           samples_per_second=n / seconds_per_epoch,
           seconds_per_epoch=seconds_per_epoch, steps_per_round=steps, gflops=gflops,
           loss_first=losses[0], loss_last=losses[-1], device_kind="CPU",
           device_name=cpu_model(), device_peak_bytes=None)
