"""Data-parallel training with TensorFlow's own engine, ``tf.distribute``.

- ``mirrored``: ``MirroredStrategy`` over N devices of one process: the first N GPUs
  where the config's device is a GPU, or N logical CPU devices where it is the CPU (for
  testing the path; they share the same cores, so they show overhead, not speed-up).
  "auto" is the GPUs where there are any, else the CPU;
- ``multiworker``: ``MultiWorkerMirroredStrategy`` across processes or hosts, each
  started with its own ``TF_CONFIG`` (see the README for an example). TensorFlow allows
  one per process (its collective ops are configured once), so it is created on first
  use and reused; it runs on the GPUs or on the CPU, whichever the first config asked
  for, and a later config asking for the other is refused (:class:`ScaleOutError`).

``config.batch_size`` is the batch of one replica; the global batch is that times the
replicas. Each epoch's sample order comes from the same seeded generator as single-device
training, so N replicas at batch B/N see the same global batches as one device at
batch B. Batches are fed by ``tf.data`` through ``experimental_distribute_dataset``;
an epoch is ``samples // global batch`` full steps (no partial step, which would
leave replicas unevenly loaded). The step runs without XLA: collectives inside
XLA clusters are not available on every device kind.

TensorFlow-only by nature: this module imports TensorFlow.
"""

from __future__ import annotations

import os

from fashion_core.backends import tensorflow as tfb

tf = tfb.tf
keras = tfb.keras

from fashion_core import models  # noqa: E402
from fashion_core.backends import DeviceInfo, parse_device  # noqa: E402
from fashion_core.backends.base import BaseTrainer, StepStats  # noqa: E402
from fashion_core.backends.keras_common import (  # noqa: E402
    make_optimizer,
    per_sample_losses,
    precision_policy,
)
from fashion_core.config import ConfigError, TrainConfig, tf_config  # noqa: E402
from fashion_core.data import Dataset  # noqa: E402
from fashion_core.host import cpu_model  # noqa: E402

STRATEGIES = ("mirrored", "multiworker")


class ScaleOutError(RuntimeError):
    """A strategy could not be set up as asked; the message says why and what to do."""


class OnePerProcess(ScaleOutError):
    """This process already has a multi-worker strategy on the other kind of device
    (TensorFlow allows one a process): that run needs a process of its own."""


def ensure_logical_cpus(count: int) -> None:
    """Split the CPU into ``count`` logical devices (only possible before TF starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)  # does not start TF
    if configured and len(configured) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have >= count:
            return
        raise ScaleOutError(
            f"TensorFlow is already running with {have} logical CPU device(s); {count} "
            "must be configured before its first operation (start a fresh process)") from None


def device_kind(spec: str, gpu_count: int | None = None) -> str:
    """"CPU" or "GPU": the kind of device a config's ``device`` asks the replicas to be.

    "cpu" is the CPU, "gpu"/"gpu:N" the GPUs, "auto" the GPUs where there are any
    (``gpu_count``: how many; TensorFlow is asked where it is None).
    """
    name = parse_device(spec)
    if name == "cpu":
        return "CPU"
    if name.startswith("gpu"):
        return "GPU"
    if gpu_count is None:
        gpu_count = len(tf.config.list_physical_devices("GPU"))
    return "GPU" if gpu_count else "CPU"


class _CpuOnlyResolver(tf.distribute.cluster_resolver.TFConfigClusterResolver):
    """TF_CONFIG's cluster, reporting no accelerators: a multi-worker strategy over
    it runs on each worker's CPU even where the worker has GPUs."""

    def num_accelerators(self, *args, **kwargs) -> dict:
        return {}


# The process's one MultiWorkerMirroredStrategy: (TF_CONFIG, device kind, strategy).
_multiworker: dict = {}


def _multiworker_strategy(kind: str) -> tf.distribute.Strategy:
    try:
        tf_config(required=True)
    except ConfigError as e:
        raise ScaleOutError(str(e)) from None
    text = os.environ["TF_CONFIG"]
    if _multiworker:
        if _multiworker["tf_config"] != text:
            raise ScaleOutError("TF_CONFIG changed after this process created its "
                                "multi-worker strategy; TensorFlow allows one a process "
                                "(start a fresh process)")
        if _multiworker["kind"] != kind:
            raise OnePerProcess(
                f"this process's multi-worker strategy runs on the {_multiworker['kind']}; "
                f"TensorFlow allows one a process, so a {kind} multi-worker run needs a "
                "process of its own")
        return _multiworker["strategy"]
    resolver = _CpuOnlyResolver() if kind == "CPU" else None
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    _multiworker.update(tf_config=text, kind=kind, strategy=strategy)
    return strategy


def make_strategy(kind: str, replicas: int | None = None,
                  device: str = "auto") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy of ``kind`` on ``device``'s kind of device (see the
    module docstring); the multi-worker one is made once a process and reused."""
    gpus = tf.config.list_physical_devices("GPU")
    on = device_kind(device, len(gpus))
    if kind == "multiworker":
        return _multiworker_strategy(on)
    if kind != "mirrored":
        raise ScaleOutError(f"unknown strategy {kind!r}; choose one of: {', '.join(STRATEGIES)}")
    replicas = replicas or 1
    if on == "GPU":
        if replicas > len(gpus):
            raise ScaleOutError(f"{replicas} replicas asked for, but only {len(gpus)} GPU(s)")
        devices = [f"/GPU:{i}" for i in range(replicas)]
        cross = None  # NCCL all-reduce
    else:
        ensure_logical_cpus(replicas)
        devices = [f"/CPU:{i}" for i in range(replicas)]
        # NCCL all-reduce needs GPUs: reduce on the host.
        cross = tf.distribute.ReductionToOneDevice(reduce_to_device="/CPU:0")
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)


class DistributedTrainer(BaseTrainer):
    """The Trainer interface (see :mod:`fashion_core.backends.base`) over a strategy."""

    backend = tfb.NAME

    def __init__(self, config: TrainConfig, dataset: Dataset,
                 strategy: tf.distribute.Strategy, strategy_name: str = "mirrored") -> None:
        super().__init__(config, dataset)
        self.strategy = strategy
        self.strategy_name = strategy_name
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch = config.batch_size * self.replicas
        self.steps_per_epoch = self.n_train // self.global_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"global batch {self.global_batch} ({config.batch_size} x "
                              f"{self.replicas} replicas) is larger than the {self.n_train} "
                              "training samples")
        self.samples_per_epoch = self.steps_per_epoch * self.global_batch
        self.jit = False
        # What the strategy runs on: its first replica's device ("/job:worker/.../GPU:0").
        kind = "GPU" if "GPU" in strategy.extended.worker_devices[0].upper() else "CPU"
        self.device = DeviceInfo(f"{kind.lower()}x{self.replicas}", kind,
                                 cpu_model() if kind == "CPU" else
                                 tfb.list_devices()[1].model)
        keras.utils.set_random_seed(config.seed)
        with precision_policy(config.precision), strategy.scope():
            self._model = models.build(config.model)
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self._model.trainable_variables)
        self._test_images = tf.constant(dataset.x_test)
        self._iterator = None
        self._steps_fn = tf.function(self._steps)
        self._predict_fn = tf.function(self._predict_batch)

    # -- training ------------------------------------------------------------------------
    def _replica_step(self, images, labels):
        x = models.preprocess(images, self.config.model, keras.ops)
        variables = self._model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self._model(x, training=True)
            ce, mse = per_sample_losses(logits, labels)
            # Keras's optimizer sums gradients over replicas: divide by the global batch.
            loss = tf.reduce_sum(ce) / self.global_batch
            scaled = (self.optimizer.scale_loss(loss)
                      if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                      else loss)
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return tf.reduce_sum(ce), tf.reduce_sum(mse)

    def _steps(self, iterator, count):
        loss_sum, mse_sum, bad = tf.constant(0.0), tf.constant(0.0), tf.constant(-1)
        for step in tf.range(count):
            images, labels = next(iterator)
            ce, mse = self.strategy.run(self._replica_step, args=(images, labels))
            ce = self.strategy.reduce(tf.distribute.ReduceOp.SUM, ce, axis=None)
            mse = self.strategy.reduce(tf.distribute.ReduceOp.SUM, mse, axis=None)
            loss_sum += ce
            mse_sum += mse
            bad = tf.where(tf.logical_and(bad < 0, tf.logical_not(tf.math.is_finite(ce))),
                           step, bad)
            if bad >= 0:
                break
        return loss_sum, mse_sum, bad

    def set_order(self, order) -> None:
        order = self.padded_order(order)[: self.n_train]
        ds = tf.data.Dataset.from_tensor_slices(
            (self.dataset.x_train[order], self.dataset.y_train[order].astype("int32")))
        ds = ds.batch(self.global_batch, drop_remainder=True).prefetch(2)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        self._iterator = iter(self.strategy.experimental_distribute_dataset(
            ds.with_options(options)))

    def run_steps(self, start: int, count: int) -> StepStats:
        loss_sum, mse_sum, bad = self._steps_fn(self._iterator, tf.constant(count))
        bad = int(bad)  # the read-back waits for every replica
        done = count if bad < 0 else bad + 1
        return StepStats(float(loss_sum), float(mse_sum), done * self.global_batch,
                         bad if bad < 0 else start + bad)

    # -- inference (on the first replica's copy of the weights) -------------------------
    def _predict_batch(self, images):
        logits = self._model(models.preprocess(images, self.config.model, keras.ops),
                             training=False)
        return tf.argmax(tf.cast(logits, tf.float32), axis=-1, output_type=tf.int32)

    def predict_all(self, which: str = "test", batch_size: int | None = None):
        import numpy as np

        batch_size = batch_size or self.config.eval_batch_size
        images = self._test_images if which == "test" else tf.constant(self.dataset.x_train)
        parts = [self._predict_fn(images[i:i + batch_size]).numpy()
                 for i in range(0, int(images.shape[0]), batch_size)]
        return np.concatenate(parts)

    def predict_batch(self, images):
        return self._model(models.preprocess(tf.constant(images), self.config.model,
                                             keras.ops), training=False).numpy()


def make_trainer(config: TrainConfig, dataset: Dataset, strategy: str,
                 replicas: int | None = None) -> DistributedTrainer:
    """A DistributedTrainer over a strategy of kind ``strategy`` on ``config.device``'s
    kind of device (a fresh mirrored one; the process's one multi-worker one)."""
    return DistributedTrainer(config, dataset,
                              make_strategy(strategy, replicas, config.device), strategy)
