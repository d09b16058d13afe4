"""TensorFlow backend: the train step compiled once with ``tf.function`` (XLA on or off).

Speed comes from three choices (measured on a 2-core CPU, MLP, batch 128: 0.22 s an
epoch with XLA, against about 2 s for Keras ``fit``):

- the whole dataset lives on the device as uint8 (47 MB); a step gathers its batch by
  index and scales it there, so no input pipeline runs on the host;
- a span of steps (a whole epoch by default) runs inside one compiled ``tf.while_loop``:
  one host round-trip per span instead of one per step;
- the epoch's last, partial batch is padded to full size and masked out of the loss, so
  every step has the same static shapes and XLA compiles exactly one program.

The dataset is uploaded once per device per process and shared by every trainer there
(:func:`fashion_core.backends.device_data.shared_device_data`). On a GPU, TensorFlow is told to
grow its memory as needed (:func:`enable_memory_growth`) instead of taking nearly all of
it at start, so several trainers share one process and the device-memory figures are the
bytes really used.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fashion_core import models, nvml  # noqa: E402
from fashion_core.backends import DeviceInfo, resolve_device  # noqa: E402
from fashion_core.backends.base import BaseTrainer, DeviceMemory, StepStats  # noqa: E402
from fashion_core.backends.device_data import shared_device_data  # noqa: E402
from fashion_core.backends.keras_common import (  # noqa: E402
    make_optimizer,
    per_sample_losses,
    precision_policy,
)
from fashion_core.calibration import (  # noqa: E402
    CalibrationUnsupported,
    best_matmul_gflops,
    calibration_sizes,
    check_calibration_dtype,
)
from fashion_core.config import TrainConfig  # noqa: E402
from fashion_core.data import Dataset  # noqa: E402
from fashion_core.host import cpu_model  # noqa: E402

NAME = "tensorflow"


def enable_memory_growth(config=None, environ=None) -> list[str]:
    """Let TensorFlow take GPU memory as it needs it, not nearly all of it at start.

    Without it TensorFlow reserves almost the whole GPU on its first operation there, so
    a second framework or process finds none, and nothing tells the bytes used from the
    bytes reserved. It must happen before TensorFlow's first GPU operation, so this
    module does it on import. A user's explicit ``TF_FORCE_GPU_ALLOW_GROWTH`` (which
    TensorFlow obeys over this setting) is left alone, and so are GPUs split into
    logical devices (which take a fixed memory limit instead).

    Returns the GPUs growth was turned on for. ``config``/``environ`` stand in for
    ``tf.config`` and ``os.environ`` in tests.
    """
    config = config if config is not None else tf.config
    environ = environ if environ is not None else os.environ
    if environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").strip():
        return []  # the user decided; TensorFlow reads the variable itself
    enabled = []
    for gpu in config.list_physical_devices("GPU"):
        try:
            config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            # RuntimeError: TensorFlow's GPUs are already initialised (too late to
            # change); ValueError: the GPU is split into logical devices.
            continue
        enabled.append(gpu.name)
    return enabled


enable_memory_growth()


def versions() -> dict:
    """TensorFlow and Keras versions, and the CUDA/cuDNN TensorFlow was built with."""
    build = tf.sysconfig.get_build_info()
    return {"backend": NAME, "tensorflow": tf.__version__, "keras": keras.__version__,
            "cuda": build.get("cuda_version"), "cudnn": build.get("cudnn_version")}


def list_devices() -> list[DeviceInfo]:
    """The CPU and every GPU TensorFlow sees, named cpu, gpu:0, gpu:1, ..."""
    devices = [DeviceInfo("cpu", "CPU", cpu_model())]
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        devices.append(DeviceInfo(
            f"gpu:{index}", "GPU", details.get("device_name", gpu.name),
            memory_bytes=nvml.total_memory(index),  # TensorFlow does not say
            compute_capability=".".join(map(str, capability)) if capability else None))
    return devices


def apply_outside_replica(optimizer, grads, variables) -> None:
    """``optimizer.apply(grads, variables)`` from the cross-replica context.

    Called from a replica (as every step of a ``tf.function`` is, under TensorFlow's
    default strategy), Keras first sums the gradients over the replicas with
    ``ReplicaContext.all_reduce``, which registers a ``custom_gradient`` in TensorFlow's
    global gradient registry; that entry keeps the traced graph, and with it the model's
    variables and the optimizer's slots, alive for the rest of the process (about 7 MB a
    trainer for the MLP, 17 MB with XLA). With one replica the sum is the gradient
    itself, so applying from the cross-replica context changes no number and frees the
    trainer when it is dropped.
    """
    replica = tf.distribute.get_replica_context()
    if (replica is None or tf.distribute.has_strategy()
            or isinstance(optimizer, keras.optimizers.LossScaleOptimizer)):
        # Already cross-replica, or a real strategy; Keras's loss-scale optimizer
        # refuses the cross-replica context (float16 keeps the registry entry).
        optimizer.apply(grads, variables)
        return
    replica.merge_call(lambda strategy: optimizer.apply(grads, variables))


def tf_device_name(name: str) -> str:
    """'cpu' -> '/CPU:0', 'gpu:1' -> '/GPU:1'."""
    return "/CPU:0" if name == "cpu" else "/GPU:" + name.split(":")[1]


class Trainer(BaseTrainer):
    """A model, its optimizer and the dataset, all on one TensorFlow device."""

    backend = NAME

    def __init__(self, config: TrainConfig, dataset: Dataset) -> None:
        super().__init__(config, dataset)
        self.device = resolve_device(config.device, list_devices())
        self.tf_device = tf_device_name(self.device.name)
        self.jit = config.resolve_jit(self.device.kind)
        keras.utils.set_random_seed(config.seed)
        with precision_policy(config.precision), tf.device(self.tf_device):
            self._model = models.build(config.model)
            self.optimizer = make_optimizer(config)
            self.optimizer.build(self._model.trainable_variables)
            self._order = tf.zeros([self.padded_size], tf.int32)
        arrays = shared_device_data(dataset, f"{NAME}:{self.device.name}", self._upload)
        self._images = {"train": arrays["x_train"], "test": arrays["x_test"]}
        self._labels = arrays["y_train"]
        # The one place the step is compiled; XLA on or off by the config.
        self._steps_fn = tf.function(self._steps, jit_compile=self.jit)
        self._predict_fns: dict[int, tf.types.experimental.PolymorphicFunction] = {}
        self._logits_fn = tf.function(self._logits, jit_compile=self.jit,
                                      reduce_retracing=True)

    def _upload(self, dataset: Dataset) -> dict:
        """The dataset's arrays on this trainer's device (see shared_device_data)."""
        with tf.device(self.tf_device):
            return {"x_train": tf.constant(dataset.x_train),
                    "x_test": tf.constant(dataset.x_test),
                    "y_train": tf.constant(dataset.y_train.astype(np.int32))}

    # -- training ------------------------------------------------------------------------
    def _train_step(self, images, labels, real):
        """One optimizer step on a (possibly padded) batch; returns mean CE and MSE.

        ``real`` is True for the batch's real samples and False for padding. Padding is
        masked with selects, never a multiply by 0: its images are zeroed and its losses
        replaced by 0, so no padded row can put 0 x inf = NaN into the loss or the
        gradient; the step is exactly that of the real samples alone.
        """
        images = tf.where(real[:, None, None], images, tf.zeros_like(images))
        x = models.preprocess(images, self.config.model, keras.ops)
        variables = self._model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self._model(x, training=True)
            ce, mse = per_sample_losses(logits, labels)
            count = tf.reduce_sum(tf.cast(real, tf.float32))
            loss = tf.reduce_sum(tf.where(real, ce, 0.0)) / count
            scaled = (self.optimizer.scale_loss(loss)
                      if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
                      else loss)
        grads = tape.gradient(scaled, variables)
        apply_outside_replica(self.optimizer, grads, variables)
        return loss, tf.reduce_sum(tf.where(real, mse, 0.0)) / count, count

    def _steps(self, order, start, count):
        """Steps start .. start+count-1 in one while-loop; stops at the first NaN/inf loss."""
        batch = self.batch_size
        order = tf.reshape(order, [self.steps_per_epoch, batch])
        positions = tf.range(batch)

        def body(step, loss_sum, mse_sum, samples, bad):
            index = order[step]
            # Padding at the end of the epoch's order is masked out of the step.
            real = step * batch + positions < self.n_train
            images = tf.gather(self._images["train"], index)
            labels = tf.gather(self._labels, index)
            loss, mse, n = self._train_step(images, labels, real)
            bad = tf.where(tf.math.is_finite(loss), bad, step)
            return step + 1, loss_sum + loss * n, mse_sum + mse * n, samples + n, bad

        def cond(step, loss_sum, mse_sum, samples, bad):
            return tf.logical_and(step < start + count, bad < 0)

        zero = tf.constant(0.0)
        _, loss_sum, mse_sum, samples, bad = tf.while_loop(
            cond, body, (start, zero, zero, zero, tf.constant(-1)))
        return tf.stack([loss_sum, mse_sum, samples, tf.cast(bad, tf.float32)])

    def set_order(self, order: np.ndarray) -> None:
        with tf.device(self.tf_device):
            self._order = tf.constant(self.padded_order(order))

    def run_steps(self, start: int, count: int) -> StepStats:
        with tf.device(self.tf_device):
            result = self._steps_fn(self._order, tf.constant(start, tf.int32),
                                    tf.constant(count, tf.int32))
        loss_sum, mse_sum, samples, bad = result.numpy()  # the read-back syncs the device
        return StepStats(float(loss_sum), float(mse_sum), int(samples), int(bad))

    # -- inference -----------------------------------------------------------------------
    def _logits(self, images):
        return tf.cast(self._model(models.preprocess(images, self.config.model, keras.ops),
                                   training=False), tf.float32)

    def _predict_fn(self, batch_size: int):
        """A compiled function predicting a whole image set: full batches in a loop, then
        the remainder as one smaller batch, so no padding work is counted as throughput."""
        if batch_size not in self._predict_fns:
            def predict(images):
                n = images.shape[0]
                full = (n // batch_size) * batch_size
                classes = []
                if full:
                    batches = tf.reshape(images[:full], [-1, batch_size, *images.shape[1:]])
                    per_batch = tf.map_fn(
                        lambda b: tf.argmax(self._logits(b), axis=-1, output_type=tf.int32),
                        batches, fn_output_signature=tf.int32)
                    classes.append(tf.reshape(per_batch, [-1]))
                if full < n:
                    classes.append(tf.argmax(self._logits(images[full:]), axis=-1,
                                             output_type=tf.int32))
                return tf.concat(classes, axis=0)

            self._predict_fns[batch_size] = tf.function(predict, jit_compile=self.jit)
        return self._predict_fns[batch_size]

    def predict_all(self, which: str = "test", batch_size: int | None = None) -> np.ndarray:
        batch_size = batch_size or self.config.eval_batch_size
        with tf.device(self.tf_device):
            return self._predict_fn(batch_size)(self._images[which]).numpy()

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        with tf.device(self.tf_device):
            return self._logits_fn(tf.constant(images)).numpy()

    # -- memory --------------------------------------------------------------------------
    def device_memory(self) -> DeviceMemory:
        """TensorFlow's allocator figures: its peak is reset by :meth:`reset_device_peak`,
        so the peak is the window's own."""
        if self.device.kind != "GPU":
            return DeviceMemory()
        info = tf.config.experimental.get_memory_info(self.tf_device.lstrip("/"))
        return DeviceMemory(int(info["peak"]), getattr(self, "_baseline_bytes", None),
                            "window")

    def reset_device_peak(self) -> None:
        if self.device.kind == "GPU":
            name = self.tf_device.lstrip("/")
            tf.config.experimental.reset_memory_stats(name)
            self._baseline_bytes = int(tf.config.experimental.get_memory_info(name)["current"])


_TF_DTYPES = {"float32": tf.float32, "bfloat16": tf.bfloat16, "float16": tf.float16}


def matmul_gflops(device: str, dtype: str = "float32", size: int | None = None,
                  repeats: int = 10) -> float:
    """The device's matmul rate in GFLOP/s in ``dtype`` (see :func:`best_matmul_gflops`).

    ``dtype`` is "float32" (TensorFlow's default precision: TF32 on NVIDIA GPUs since
    Ampere, as the models run), "bfloat16" or "float16": both inputs and the product in
    that dtype, as the mixed-precision models' layers compute. The calibration figure
    the benchmarks divide by ("share of measured peak"); sizes as
    :func:`calibration_sizes` gives, or ``size`` alone. Raises
    :class:`~fashion_core.calibration.CalibrationUnsupported` where TensorFlow has no
    such matmul on the device.
    """
    tf_dtype = _TF_DTYPES[check_calibration_dtype(dtype)]
    name = tf_device_name(device)
    product = tf.function(
        lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32)))

    def make_product(n: int):
        with tf.device(name):
            a = tf.cast(tf.random.stateless_normal([n, n], seed=[1, 2]), tf_dtype)
            b = tf.cast(tf.random.stateless_normal([n, n], seed=[3, 4]), tf_dtype)

        def run() -> float:
            with tf.device(name):
                return float(product(a, b))

        return run

    try:
        return best_matmul_gflops(make_product,
                                  (size,) if size else calibration_sizes(device, dtype),
                                  repeats)
    except CalibrationUnsupported as error:
        raise CalibrationUnsupported(f"TensorFlow has no {dtype} matmul on {device}: "
                                     f"{error}") from error
